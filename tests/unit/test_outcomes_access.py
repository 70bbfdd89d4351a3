"""Who may read the outcomes report (api/access.py ``may_read_outcomes``), and that a
commissioner reads nothing else."""

from __future__ import annotations

import pytest

from alerts.teams import ROLES
from api.access import (
    CLINICAL_ROLES,
    Kind,
    PatientRef,
    Principal,
    may_act_on_alert,
    may_read_outcomes,
    may_read_patient,
    may_read_queue,
)


def staff(*roles: str) -> Principal:
    return Principal(Kind.STAFF, "s1", "Staff", "deal", frozenset(roles))


@pytest.mark.parametrize("role", ROLES)
def test_every_role_s_outcomes_decision(role: str) -> None:
    expected = role in CLINICAL_ROLES or role in {"commissioner", "team_lead"}
    assert may_read_outcomes(staff(role)).allowed is expected


def test_a_patient_never_reads_the_outcomes_report() -> None:
    patient = Principal(Kind.PATIENT, "9434765919", "P", "deal", patient_id=1)
    decision = may_read_outcomes(patient)
    assert not decision.allowed
    assert decision.reason == "patients do not see the outcomes report"


def test_a_commissioner_reads_no_patient_no_queue_and_acts_on_no_alert() -> None:
    commissioner = staff("commissioner")
    assert may_read_outcomes(commissioner).reason == "role commissioner"
    patient = PatientRef(1, "deal", frozenset({"deal"}))
    assert not may_read_patient(commissioner, patient).allowed
    assert not may_read_queue(commissioner, "deal").allowed
    assert not may_act_on_alert(commissioner, frozenset({"deal"}), patient).allowed
    assert "commissioner" not in CLINICAL_ROLES
