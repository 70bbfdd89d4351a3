"""The audit of the command line: every read of patient data, whatever the door.

The API audits each request (api/views.py); a command that prints patient data —
``alerts list``, ``patient list``, ``quarantine list`` (payloads), ``rules show`` and
the others below — writes the same kind of row to ``audit_log`` in the transaction of
its read: the actor (``cli:<name>`` from ``homeward --actor NAME`` or
``HOMEWARD_ACTOR``, else ``os:<user>``, the operating-system user), role
``command_line``, the action, the patient (or every patient shown, in
``detail.patients``) and the OS user beside any name given."""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from typing import Any

import click
import psycopg
from psycopg.types.json import Jsonb

from api.views import Q

ACTOR_KEY = "homeward.actor"
ROLE = "command_line"


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        import os

        return f"uid{os.getuid()}"


def actor(ctx: click.Context) -> str:
    given = ctx.find_root().meta.get(ACTOR_KEY)
    return f"cli:{given}" if given else f"os:{os_user()}"


def record_read(
    conn: psycopg.Connection[Any],
    ctx: click.Context,
    action: str,
    *,
    patient_ids: Iterable[int] = (),
    nhs_numbers: Iterable[str] = (),
    detail: dict[str, Any] | None = None,
    allowed: bool = True,
) -> None:
    """One audit row for a command's read (committed with the command's transaction)."""
    ids = set(patient_ids)
    numbers = sorted({n for n in nhs_numbers if n})
    if numbers:
        rows = conn.execute(
            "SELECT patient_id FROM patients WHERE nhs_number = ANY(%s)", (numbers,)
        ).fetchall()
        ids |= {int(str(r[0])) for r in rows}
    patients = sorted(ids)
    conn.execute(
        Q["audit"],
        {
            "actor": actor(ctx),
            "role": ROLE,
            "action": action,
            "patient_id": patients[0] if len(patients) == 1 else None,
            "team_id": None,
            "allowed": allowed,
            "status": 0,  # no HTTP status: the command ran
            "detail": Jsonb(
                {
                    "command": ctx.command_path,
                    "os_user": os_user(),
                    "patients": patients,
                    **(detail or {}),
                }
            ),
        },
    )
