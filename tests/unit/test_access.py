"""Who may read what (api/access.py): every kind of caller against every kind of patient."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.teams import ROLES
from api.access import (
    CLINICAL_ROLES,
    Kind,
    PatientRef,
    Principal,
    bearer_token,
    may_act_on_alert,
    may_read_patient,
    may_read_queue,
    new_token,
    token_digest,
)

DEAL_PATIENT = PatientRef(1, "deal")
DEAL_PATIENT_WITH_RAPID_RESPONSE_ALERT = PatientRef(2, "deal", frozenset({"skc-rr"}))
UNTEAMED = PatientRef(3, None)


def staff(team: str | None, *roles: str) -> Principal:
    return Principal(Kind.STAFF, "s1", "Staff", team, frozenset(roles))


PATIENT_1 = Principal(Kind.PATIENT, "9434765919", "Pat", "deal", patient_id=1)


@pytest.mark.parametrize(
    ("who", "patient", "allowed"),
    [
        (PATIENT_1, DEAL_PATIENT, True),  # own record
        (PATIENT_1, DEAL_PATIENT_WITH_RAPID_RESPONSE_ALERT, False),  # same team, not theirs
        (staff("deal", "monitoring_nurse"), DEAL_PATIENT, True),
        (staff("dover", "monitoring_nurse"), DEAL_PATIENT, False),
        (staff("skc-rr", "rapid_response"), DEAL_PATIENT, False),
        (staff("skc-rr", "rapid_response"), DEAL_PATIENT_WITH_RAPID_RESPONSE_ALERT, True),
        (staff("deal", "social_worker"), DEAL_PATIENT, False),  # no clinical access
        (staff("deal", "social_worker", "gp"), DEAL_PATIENT, True),  # one clinical role is enough
        (staff(None, "gp"), UNTEAMED, False),  # no team on either side is not a match
        (staff("deal", "gp"), UNTEAMED, False),
    ],
)
def test_patient_access(who: Principal, patient: PatientRef, allowed: bool) -> None:
    decision = may_read_patient(who, patient)
    assert decision.allowed is allowed
    assert decision.reason


@pytest.mark.parametrize(
    ("who", "team", "allowed"),
    [
        (PATIENT_1, "deal", False),
        (staff("deal", "monitoring_nurse"), "deal", True),
        (staff("deal", "monitoring_nurse"), "dover", False),
        (staff("deal", "social_worker"), "deal", False),
    ],
)
def test_queue_access(who: Principal, team: str, allowed: bool) -> None:
    assert may_read_queue(who, team).allowed is allowed


DEAL_ALERT = frozenset({"deal", "skc-rr"})  # an alert of Deal's, and Deal's out-of-hours cover


@pytest.mark.parametrize(
    ("who", "alert_teams", "patient", "allowed"),
    [
        (PATIENT_1, DEAL_ALERT, DEAL_PATIENT, False),  # a patient never acts on an alert
        (staff("deal", "monitoring_nurse"), DEAL_ALERT, DEAL_PATIENT, True),
        (
            staff("deal", "monitoring_nurse"),
            frozenset({"dover"}),
            DEAL_PATIENT,
            True,
        ),  # own patient
        (staff("skc-rr", "rapid_response"), DEAL_ALERT, DEAL_PATIENT, True),  # out of hours
        (staff("skc-rr", "rapid_response"), frozenset({"deal"}), DEAL_PATIENT, False),
        (staff("dover", "gp"), DEAL_ALERT, DEAL_PATIENT, False),
        (staff("deal", "social_worker"), DEAL_ALERT, DEAL_PATIENT, False),
        (staff(None, "gp"), frozenset(), UNTEAMED, False),
    ],
)
def test_acting_on_an_alert(
    who: Principal, alert_teams: frozenset[str], patient: PatientRef, allowed: bool
) -> None:
    assert may_act_on_alert(who, alert_teams, patient).allowed is allowed


def test_every_role_but_social_workers_and_commissioners_has_clinical_access() -> None:
    assert set(ROLES) - CLINICAL_ROLES == {"social_worker", "commissioner"}
    assert set(ROLES) >= CLINICAL_ROLES  # no role is granted that the teams file cannot hold


@given(
    st.sampled_from(ROLES), st.sampled_from(["deal", "dover"]), st.sampled_from(["deal", "dover"])
)
def test_staff_never_read_another_teams_patient_without_its_alert(
    role: str, mine: str, theirs: str
) -> None:
    decision = may_read_patient(staff(mine, role), PatientRef(9, theirs))
    assert decision.allowed is (mine == theirs and role in CLINICAL_ROLES)


def test_tokens_are_random_and_only_their_digest_is_kept() -> None:
    a, b = new_token(), new_token()
    assert a != b
    assert a.startswith("hw_")
    assert len(a) >= 40
    assert token_digest(a) != token_digest(b)
    assert len(token_digest(a)) == 32


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer hw_abc", "hw_abc"),
        ("bearer   hw_abc ", "hw_abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
        ("Bearer " + "x" * 201, None),
    ],
)
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@given(st.text(max_size=300))
def test_any_header_text_is_parsed_without_error(header: str) -> None:
    token = bearer_token(header)
    assert token is None or (0 < len(token) <= 200 and header.lower().startswith("bearer"))


def test_closing_a_late_review() -> None:
    from api.access import Kind, PatientRef, Principal, may_close_late_review

    patient = PatientRef(7, "deal", frozenset({"deal", "skc-rapid-response"}))
    nurse = Principal(Kind.STAFF, "deal.mn1", "N", "deal", frozenset({"monitoring_nurse"}))
    cover = Principal(Kind.STAFF, "rr1", "R", "skc-rapid-response", frozenset({"rapid_response"}))
    social = Principal(Kind.STAFF, "deal.sw1", "S", "deal", frozenset({"social_worker"}))
    own = Principal(Kind.PATIENT, "9434765919", "P", "deal", patient_id=7)
    assert may_close_late_review(nurse, patient).allowed
    assert not may_close_late_review(cover, patient).allowed  # history, not an alert
    assert not may_close_late_review(social, patient).allowed
    assert not may_close_late_review(own, patient).allowed
