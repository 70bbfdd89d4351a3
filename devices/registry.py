"""Registry of patients, devices and device↔patient bindings (PostgreSQL adapter)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from devices.credentials import RESERVED_PREFIX, hash_password, is_reserved_name
from devices.payload import DEVICE_ID
from homeward.db.connect import wrap_exceptions
from homeward.db.queries import load_queries
from homeward.errors import NotFound, ValidationError
from homeward.nhs import normalise_nhs_number

Q = load_queries(Path(__file__).with_name("registry.sql"))

CONDITIONS = ("heart_failure", "copd", "hypertension", "type2_diabetes", "post_discharge")

Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Patient:
    patient_id: int
    nhs_number: str
    display_name: str
    team_id: str | None
    conditions: list[str]
    practice: str | None
    care_coordinator: str | None
    created: bool


@dataclass(frozen=True, slots=True)
class Binding:
    device_id: str
    patient_id: int
    valid_from: datetime
    closed_previous: int | None


def add_patient(
    conn: Conn,
    *,
    nhs_number: str,
    name: str,
    team: str | None = None,
    conditions: Sequence[str] = (),
    practice: str | None = None,
    care_coordinator: str | None = None,
) -> Patient:
    """Create a patient, or update name/team and add conditions when the number exists."""
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise ValidationError(
            f"unknown condition {', '.join(unknown)}; known: {', '.join(CONDITIONS)}"
        )
    if not name.strip():
        raise ValidationError("a patient needs a name")
    number = normalise_nhs_number(nhs_number)
    team = _responsible_team(conn, number, team, practice)
    params = {
        "nhs_number": number,
        "display_name": name.strip(),
        "team_id": team,
        "conditions": sorted(set(conditions)),
        "practice": practice,
        "care_coordinator": care_coordinator,
    }
    with wrap_exceptions(), conn.cursor(row_factory=class_row(Patient)) as cur:
        patient = cur.execute(Q["insert_patient"], params).fetchone()
    assert patient is not None
    return patient


def _responsible_team(conn: Conn, nhs_number: str, team: str | None, practice: str | None) -> str:
    """The team the patient's alerts go to: the one given, or the team whose GP practices
    include the patient's practice, or (re-enrolling) the team they have. Refused when
    there is none or it is not a team of the organisation in force: an orphan patient's
    alerts would reach no queue and never escalate."""
    with wrap_exceptions():
        known = [str(t) for (t,) in conn.execute(Q["known_teams"]).fetchall()]
        if team is None and practice is not None:
            rows = conn.execute(Q["team_of_practice"], {"practice": practice}).fetchall()
            team = str(rows[0][0]) if len(rows) == 1 else None
        if team is None:
            row = conn.execute(Q["patient_team"], {"nhs_number": nhs_number}).fetchone()
            if row is not None and row[0] is not None:
                return str(row[0])  # re-enrolled: keeps the team it has
    listed = ", ".join(known) if known else "none — load one with homeward teams load FILE"
    if team is None:
        raise ValidationError(
            f"a patient needs a responsible team (--team, or a --practice of a team); "
            f"teams in force: {listed}"
        )
    if team not in known:
        raise ValidationError(
            f"unknown team {team!r}: not in the organisation in force; teams: {listed}"
        )
    return team


def patient_by_nhs(conn: Conn, nhs_number: str) -> Patient:
    with wrap_exceptions(), conn.cursor(row_factory=class_row(Patient)) as cur:
        patient = cur.execute(
            Q["patient_by_nhs"], {"nhs_number": normalise_nhs_number(nhs_number)}
        ).fetchone()
    if patient is None:
        raise NotFound(f"no patient with NHS number {nhs_number}")
    return patient


def check_device_id(device_id: str) -> None:
    """A device id is its broker username, client id and topic level: refuse any other."""
    if not DEVICE_ID.fullmatch(device_id):
        raise ValidationError(
            f"device id {device_id[:80]!r} must be 1-64 characters from A-Z a-z 0-9 . _ -"
        )
    if is_reserved_name(device_id):
        raise ValidationError(
            f"device id {device_id!r} is reserved: names starting {RESERVED_PREFIX!r} belong "
            "to Homeward's service accounts and client ids"
        )


def add_device(
    conn: Conn,
    device_id: str,
    *,
    patient_nhs_number: str,
    password: str | None = None,
    kind: str | None = None,
    valid_from: datetime | None = None,
) -> Binding:
    """Register a device (idempotent) and bind it to a patient from ``valid_from``.

    A device already bound to someone else is unbound at ``valid_from`` first. A device
    bound for the first time is bound without a start (``-infinity``), so readings it
    buffered before it was registered still belong to its patient.
    """
    check_device_id(device_id)
    patient = patient_by_nhs(conn, patient_nhs_number)
    at = valid_from or datetime.now(UTC)
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            Q["upsert_device"],
            {
                "device_id": device_id,
                "kind": kind,
                "password_hash": hash_password(password) if password else None,
            },
        )
        current = cur.execute(Q["current_binding"], {"device_id": device_id, "at": at}).fetchone()
        if current is not None and current["patient_id"] == patient.patient_id:
            return Binding(device_id, patient.patient_id, current["valid_from"], None)
        closed = None
        if current is not None:
            cur.execute(Q["close_binding"], {"binding_id": current["binding_id"], "at": at})
            closed = int(current["patient_id"])
        seen = cur.execute(Q["has_bindings"], {"device_id": device_id}).fetchone()
        first = not (seen and seen["exists"])
        start = datetime.min.replace(tzinfo=UTC) if first else at
        cur.execute(
            Q["insert_binding"],
            {"device_id": device_id, "patient_id": patient.patient_id, "valid_from": start},
        )
    return Binding(device_id, patient.patient_id, start, closed)


def list_patients(conn: Conn) -> list[Patient]:
    with wrap_exceptions(), conn.cursor(row_factory=class_row(Patient)) as cur:
        return cur.execute(Q["list_patients"]).fetchall()


def list_devices(conn: Conn) -> list[dict[str, Any]]:
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(Q["list_devices"]).fetchall()


def list_quarantine(
    conn: Conn, *, limit: int = 50, reason: str | None = None, device_id: str | None = None
) -> list[dict[str, Any]]:
    with wrap_exceptions(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            Q["list_quarantine"], {"limit": limit, "reason": reason, "device_id": device_id}
        ).fetchall()


def device_credentials(conn: Conn) -> list[tuple[str, str]]:
    with wrap_exceptions():
        rows = conn.execute(Q["device_credentials"]).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]
