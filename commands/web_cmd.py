"""``homeward staff set-password`` and ``homeward patient set-password``: web app
sign-in (docs/web.md). The password is read from a hidden prompt, or from standard
input with ``--password-stdin`` for scripts; it is never an argument (shell history)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from commands.common import database
from homeward.db.connect import connect


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    assert isinstance(value, str)
    return value


@click.group()
def staff() -> None:
    """Staff members' web app sign-in (the staff themselves come from the teams file)."""


@staff.command("set-password")
@click.argument("staff_id")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def staff_set_password(ctx: click.Context, staff_id: str, password_stdin: bool) -> None:
    """Set a staff member's password (at least 12 characters); their sessions end."""
    from web.store import set_password

    password = _password(password_stdin)
    with database(ctx) as dsn, connect(dsn) as conn:
        set_password(conn, now=datetime.now(UTC), password=password, staff_id=staff_id)
    click.echo(f"password set for staff {staff_id}")


@click.command("set-password")
@click.argument("nhs_number")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def patient_set_password(ctx: click.Context, nhs_number: str, password_stdin: bool) -> None:
    """Set a patient's password for their own view (user name: their NHS number)."""
    from web.store import set_password

    password = _password(password_stdin)
    with database(ctx) as dsn, connect(dsn) as conn:
        set_password(conn, now=datetime.now(UTC), password=password, nhs_number=nhs_number)
    click.echo(f"password set for patient {nhs_number}")
