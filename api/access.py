"""Who may read what through the HTTP API: pure decisions, no I/O.

A bearer token speaks for one staff member or one patient (api/tokens.py). The rules
(docs/api.md):

* a **patient** reads their own readings, alerts and identity, nothing else, and never
  the team's queue;
* a **staff member** with a clinical role reads the queue of their own team (with the
  alerts of the teams it covers out of hours), and the data of a patient whose team is
  theirs, or who has an unresolved alert with their team or with a team they cover out
  of hours (the locality's rapid response takes the neighbourhood teams' alerts at
  night);
* a role without clinical access (``social_worker``) reads no clinical data through the
  API until information governance agrees what it should see;
* the **outcomes report** (aggregate figures, never a patient: api/outcomes.py) is for a
  ``commissioner``, a ``team_lead`` or clinical staff; not for a patient, nor for a role
  without clinical access;
* acting on an alert (acknowledge, resolve, snooze, note) takes clinical staff of the
  alert's team, of its out-of-hours cover, or of the patient's team; a patient never
  acts on one;
* a late reading's review is listed with the team's queue (the same decision) and
  closed by clinical staff of the patient's team.

Every decision, granted or refused, is written to ``audit_log`` by the caller.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256

CLINICAL_ROLES = frozenset(
    {
        "monitoring_nurse",
        "community_matron",
        "district_nurse",
        "gp",
        "rapid_response",
        "team_lead",
        "care_coordinator",
    }
)
# Who may change a patient's thresholds: the clinicians who prescribe (docs/web.md).
PRESCRIBING_ROLES = frozenset({"gp", "community_matron"})
OUTCOMES_ROLES = frozenset({"commissioner", "team_lead"})
TOKEN_PREFIX = "hw_"  # makes a leaked token easy to recognise (secret scanners)


class Kind(StrEnum):
    STAFF = "staff"
    PATIENT = "patient"


@dataclass(frozen=True, slots=True)
class Principal:
    """The person a valid token speaks for."""

    kind: Kind
    subject: str  # staff id, or the patient's NHS number
    name: str
    team_id: str | None  # the staff member's team, or the patient's
    roles: frozenset[str] = frozenset()
    patient_id: int | None = None  # patients only

    @property
    def actor(self) -> str:
        return f"{self.kind.value}:{self.subject}"

    @property
    def role(self) -> str:
        return "patient" if self.kind is Kind.PATIENT else ",".join(sorted(self.roles))

    @property
    def clinical(self) -> bool:
        return self.kind is Kind.STAFF and bool(self.roles & CLINICAL_ROLES)


@dataclass(frozen=True, slots=True)
class PatientRef:
    """What the access decision needs to know of a patient."""

    patient_id: int
    team_id: str | None
    # teams holding an unresolved alert of theirs, with those teams' out-of-hours cover
    alert_teams: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


def may_read_patient(who: Principal, patient: PatientRef) -> Decision:
    if who.kind is Kind.PATIENT:
        if who.patient_id == patient.patient_id:
            return Decision(True, "own record")
        return Decision(False, "a patient sees only their own record")
    if not who.clinical:
        return Decision(False, f"role {who.role} has no clinical access")
    if who.team_id is not None and who.team_id == patient.team_id:
        return Decision(True, "patient of the team")
    if who.team_id is not None and who.team_id in patient.alert_teams:
        return Decision(True, "an unresolved alert of the patient is with the team")
    return Decision(False, "not a patient of the team")


def may_read_queue(who: Principal, team_id: str) -> Decision:
    if who.kind is Kind.PATIENT:
        return Decision(False, "patients do not see the team's queue")
    if not who.clinical:
        return Decision(False, f"role {who.role} has no clinical access")
    if who.team_id != team_id:
        return Decision(False, "another team's queue")
    return Decision(True, "own team")


def may_act_on_alert(who: Principal, alert_teams: frozenset[str], patient: PatientRef) -> Decision:
    """Acknowledge, resolve, snooze or annotate: clinical staff of the alert's team or of
    its out-of-hours cover (``alert_teams``), or of the patient's own team."""
    if who.kind is Kind.PATIENT:
        return Decision(False, "patients do not act on alerts")
    if not who.clinical:
        return Decision(False, f"role {who.role} has no clinical access")
    if who.team_id is not None and who.team_id in alert_teams:
        return Decision(True, "the alert is with the team")
    if who.team_id is not None and who.team_id == patient.team_id:
        return Decision(True, "patient of the team")
    return Decision(False, "neither the alert nor the patient is the team's")


def may_close_late_review(who: Principal, patient: PatientRef) -> Decision:
    """Close a late reading's review: clinical staff of the patient's own team (a late
    reading is history, not an alert, so no out-of-hours cover holds it)."""
    if who.kind is Kind.PATIENT:
        return Decision(False, "patients do not close reviews")
    if not who.clinical:
        return Decision(False, f"role {who.role} has no clinical access")
    if who.team_id is not None and who.team_id == patient.team_id:
        return Decision(True, "patient of the team")
    return Decision(False, "not a patient of the team")


def may_change_rules(who: Principal, patient: PatientRef) -> Decision:
    """Change a patient's thresholds: a prescribing clinician (GP, community matron) who
    may read the patient's record."""
    read = may_read_patient(who, patient)
    if not read.allowed or who.kind is Kind.PATIENT:
        return Decision(False, read.reason if not read.allowed else "patients do not")
    if not who.roles & PRESCRIBING_ROLES:
        return Decision(False, f"role {who.role} does not prescribe")
    return Decision(True, read.reason)


def may_read_outcomes(who: Principal) -> Decision:
    """The aggregate outcomes report: commissioners, team leads and clinical staff."""
    if who.kind is Kind.PATIENT:
        return Decision(False, "patients do not see the outcomes report")
    if found := who.roles & OUTCOMES_ROLES:
        return Decision(True, f"role {','.join(sorted(found))}")
    if who.clinical:
        return Decision(True, "clinical staff")
    return Decision(False, f"role {who.role} does not read the outcomes report")


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What is stored and looked up: SHA-256 of the token (a random 256-bit secret needs
    no slow hash; a database copy still grants nothing)."""
    return sha256(token.encode("utf-8")).digest()


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or ``None``."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None
    return token
