"""``homeward late-reviews``: late readings that would have breached a rule, for review."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from alerts.late_reviews import MAX_NOTE_CHARS, STATES, close_review, list_reviews
from commands.audit_trail import record_read
from commands.common import database
from commands.output import emit, emit_one
from homeward.db.connect import connect
from homeward.errors import Conflict, NotFound, ValidationError
from homeward.nhs import normalise_nhs_number


@click.group("late-reviews")
def late_reviews() -> None:
    """Late readings stored as history, waiting for a person to review them."""


@late_reviews.command("list")
@click.option("--team", default=None, help="The patients of this team only.")
@click.option("--patient", "nhs_number", default=None, help="One patient's (NHS number).")
@click.option("--state", type=click.Choice([*STATES, "all"]), default="open", show_default=True)
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def late_list(
    ctx: click.Context,
    team: str | None,
    nhs_number: str | None,
    state: str,
    limit: int,
    as_json: bool,
) -> None:
    """Oldest measurement first (audited: the actor is --actor or the OS user)."""
    number = normalise_nhs_number(nhs_number) if nhs_number else None
    with database(ctx) as dsn, connect(dsn) as conn:
        rows = list_reviews(
            conn, team=team, nhs_number=number, state=None if state == "all" else state, limit=limit
        )
        record_read(
            conn,
            ctx,
            "list_late_reviews",
            patient_ids=[r["patient_id"] for r in rows],
            detail={"team": team, "state": state, "reviews": [r["review_id"] for r in rows]},
        )
    for r in rows:
        del r["patient_id"]
    emit(rows, as_json=as_json, title="late readings for review")


@late_reviews.command("close")
@click.argument("review_id", type=int)
@click.option("--by", required=True, help="Who reviewed it (staff id).")
@click.option("--note", default=None, help="What was decided.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def late_close(
    ctx: click.Context, review_id: int, by: str, note: str | None, as_json: bool
) -> None:
    """Close a review (once: a closed review stays closed). Audited."""
    if note is not None and not 1 <= len(note.strip()) <= MAX_NOTE_CHARS:
        raise ValidationError(f"a note is 1 to {MAX_NOTE_CHARS} characters")
    with database(ctx) as dsn, connect(dsn) as conn:
        try:
            row = close_review(conn, review_id, by=by, note=note, now=datetime.now(UTC))
        except (NotFound, Conflict) as exc:  # refused: on the record all the same
            conn.rollback()
            detail = {"review_id": review_id, "by": by, "refused": str(exc)}
            record_read(conn, ctx, "close_late_review", detail=detail, allowed=False)
            conn.commit()
            raise
        record_read(
            conn,
            ctx,
            "close_late_review",
            patient_ids=[row.pop("patient_id")],
            detail={"review_id": review_id, "by": by},
        )
    emit_one(row, as_json=as_json)
