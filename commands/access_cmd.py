"""``homeward token`` and ``homeward audit``: API access and who looked at what."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from api.tokens import (
    MAX_DAYS,
    issue_token,
    list_audit,
    list_dropped,
    list_tokens,
    revoke_token,
)
from commands.audit_trail import record_read
from commands.common import database
from commands.output import emit, emit_one
from homeward.db.connect import connect


@click.group()
def token() -> None:
    """Bearer tokens for the HTTP API (one per staff member or patient)."""


@token.command("issue")
@click.option("--staff", "staff_id", default=None, help="A staff id from the teams file.")
@click.option("--patient", "nhs_number", default=None, help="A patient's NHS number.")
@click.option("--days", default=30.0, show_default=True, type=click.FloatRange(0, MAX_DAYS))
@click.option("--label", default="", help="Where the token is used (shown in `token list`).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def token_issue(
    ctx: click.Context,
    staff_id: str | None,
    nhs_number: str | None,
    days: float,
    label: str,
    as_json: bool,
) -> None:
    """Issue a token; it is printed this once (only its hash is stored)."""
    with database(ctx) as dsn, connect(dsn) as conn:
        token_id, secret = issue_token(
            conn,
            now=datetime.now(UTC),
            staff_id=staff_id,
            nhs_number=nhs_number,
            days=days,
            label=label,
        )
    emit_one({"token_id": token_id, "token": secret, "days": days}, as_json=as_json)


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    """Every token issued: whose, until when, revoked or not (never the token itself)."""
    with database(ctx) as dsn, connect(dsn) as conn:
        rows = list_tokens(conn)
        patients = [r["subject"].removeprefix("patient:") for r in rows]
        record_read(conn, ctx, "list_tokens", nhs_numbers=[n for n in patients if n.isdigit()])
    emit(rows, as_json=as_json, title="API tokens")


@token.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def token_revoke(ctx: click.Context, token_id: int) -> None:
    """Revoke a token at once."""
    with database(ctx) as dsn, connect(dsn) as conn:
        revoke_token(conn, token_id, now=datetime.now(UTC))
    click.echo(f"token {token_id} revoked")


@click.group()
def audit() -> None:
    """The audit log of patient data accessed through the API."""


@audit.command("list")
@click.option("--patient", "nhs_number", default=None, help="Accesses to this patient's data.")
@click.option("--actor", default=None, help="staff:<id>, patient:<nhs number> or anonymous.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_list(
    ctx: click.Context, nhs_number: str | None, actor: str | None, limit: int, as_json: bool
) -> None:
    """Newest first; refused attempts included."""
    with database(ctx) as dsn, connect(dsn) as conn:
        rows = list_audit(conn, nhs_number=nhs_number, actor=actor, limit=limit)
        # who looked at whom is itself about patients: reading it is on the record
        record_read(
            conn,
            ctx,
            "list_audit",
            nhs_numbers=[r["nhs_number"] for r in rows if r["nhs_number"]],
            detail={"patient": nhs_number, "actor": actor},
        )
    emit(rows, as_json=as_json, title="audit log")


@audit.command("dropped")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_dropped(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Unauthenticated refusals past a client's limit: counted per address and minute."""
    with database(ctx) as dsn, connect(dsn) as conn:
        rows = list_dropped(conn, limit=limit)
    emit(rows, as_json=as_json, title="audit rows counted, not kept")
