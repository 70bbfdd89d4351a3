"""A nurse's actions on an alert over HTTP: acknowledge, resolve with an outcome, snooze
with a reason, end a snooze early (unsnooze), add a note. The person acting is the
token's, never the request's; the alert's state machine (alerts/lifecycle.py) decides,
under the alert's row lock, so a second or concurrent acknowledgement is refused (409),
not applied twice. Every attempt, applied or refused — by whom may act, by the body (a
field the action does not take, a repeated key, a number given as text, too large a
body) or by the alert's state — is audited in the request's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from alerts.alert import MAX_NOTE_CHARS, Outcome
from alerts.commands import Acknowledge, AddNote, Resolve, Snooze, Unsnooze
from alerts.commands import PersonCommand as Command
from alerts.lifecycle_store import apply_command
from api.access import Decision, PatientRef, Principal, may_act_on_alert
from api.strict import MAX_BODY_BYTES, parse_body
from api.views import (
    CONN,
    PRINCIPAL,
    Q,
    Refused,
    audit,
    json_response,
    printable,
    problems_of,
    read_body,
)
from homeward.errors import Conflict, ValidationError


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class AcknowledgeBody(_Body):
    pass


class ResolveBody(_Body):
    outcome: Outcome
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class SnoozeBody(_Body):
    minutes: float = Field(gt=0, le=72 * 60)  # the priority's own limit applies too
    reason: str = Field(min_length=3, max_length=500)


class UnsnoozeBody(_Body):
    pass


class NoteBody(_Body):
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)


def _acknowledge(_: AcknowledgeBody, by: str, now: datetime) -> Command:
    return Acknowledge(by, now)


def _resolve(body: ResolveBody, by: str, now: datetime) -> Command:
    return Resolve(by, now, body.outcome.value, body.note)


def _snooze(body: SnoozeBody, by: str, now: datetime) -> Command:
    return Snooze(by, now, now + timedelta(minutes=body.minutes), body.reason)


def _unsnooze(_: UnsnoozeBody, by: str, now: datetime) -> Command:
    return Unsnooze(by, now)


def _note(body: NoteBody, by: str, now: datetime) -> Command:
    return AddNote(by, now, body.text)


ACTIONS: dict[str, tuple[type[_Body], Callable[[Any, str, datetime], Command]]] = {
    "acknowledge": (AcknowledgeBody, _acknowledge),
    "resolve": (ResolveBody, _resolve),
    "snooze": (SnoozeBody, _snooze),
    "unsnooze": (UnsnoozeBody, _unsnooze),
    "notes": (NoteBody, _note),
}


async def _read(request: web.Request, model: type[_Body]) -> tuple[Any, list[str]]:
    """The body as ``model`` and the fields it named. Strict (api/strict.py): one JSON
    object, no repeated key, no NUL; numbers only as JSON numbers, no field the action
    does not take. Too large a body (over MAX_BODY_BYTES) is a 413."""
    raw = await read_body(request)
    data = parse_body(raw)
    fields = sorted(data)
    return model.model_validate_json(raw if data else b"{}", strict=True), fields


def action_name(name: str) -> str:
    """What the audit log calls an action: ``acknowledge_alert``, ``note_alert``, …"""
    return f"{name}_alert" if name != "notes" else "note_alert"


BodyReader = Callable[[type[_Body]], Awaitable[tuple[Any, list[str]]]]


async def perform(
    who: Principal,
    conn: psycopg.AsyncConnection[Any],
    name: str,
    alert_id: int,
    read_body: BodyReader,
) -> dict[str, Any]:
    """Apply action ``name`` to an alert for ``who``, the body read by ``read_body`` only
    once ``who`` may act; every attempt audited. ``Refused``: 404 for an alert the caller
    may not act on, 400/413 for the body, 409 or 400 from the state machine. Shared by
    the API (a strict JSON body) and the web app's forms (web/pages.py)."""
    model, make_command = ACTIONS[name]
    action = action_name(name)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(Q["alert_ref"], {"alert_id": alert_id})
        ref = await cur.fetchone()
    if ref is None:
        decision = Decision(False, "no such alert")
    else:
        patient = PatientRef(ref["patient_id"], ref["team_id"])
        decision = may_act_on_alert(who, frozenset(ref["alert_teams"]), patient)
    detail: dict[str, Any] = {"alert_id": alert_id, "reason": decision.reason}

    async def record(allowed: bool, status: int, **more: Any) -> None:
        await audit(
            conn,
            who,
            action,
            allowed=allowed,
            status=status,
            patient_id=ref["patient_id"] if ref else None,
            team_id=ref["alert_team"] if ref else None,
            detail={**detail, **more},
        )

    # Who may act is decided first: a caller who may not gets the same 404 whatever
    # the body, so neither the alert's existence nor its state can be probed.
    if ref is None or not decision.allowed:
        await record(False, 404)
        raise Refused("no such alert among those you may act on", 404)
    try:
        body, fields = await read_body(model)
    except web.HTTPRequestEntityTooLarge as exc:
        await record(True, 413, refused="body too large", limit_bytes=MAX_BODY_BYTES)
        message = f"the request body is too large: at most {MAX_BODY_BYTES} bytes"
        raise Refused(message, 413) from exc
    except ValidationError as exc:
        await record(True, 400, refused=printable(str(exc)))
        raise Refused(str(exc), 400) from exc
    except PydanticValidationError as exc:
        problems = problems_of(exc)
        # the fields a body named that the action does not take (``by``, ``state``,
        # ``team``, ``priority``…): a mass-assignment attempt is on the record
        unknown = [
            ".".join(str(p) for p in e["loc"])
            for e in exc.errors(include_url=False, include_input=False)
            if e["type"] == "extra_forbidden"
        ]
        await record(True, 400, refused="invalid body", problems=problems, fields=unknown)
        raise Refused("invalid body", 400, problems=problems) from exc
    now = datetime.now(UTC)
    try:
        result = await apply_command(conn, alert_id, make_command(body, who.subject, now), now)
    except (Conflict, ValidationError) as exc:  # refused by the state machine
        status = 409 if isinstance(exc, Conflict) else 400
        await record(True, status, refused=str(exc), fields=fields)
        raise Refused(str(exc), status) from exc
    await record(True, 200, event=result.event, fields=fields)
    return {
        "alert_id": alert_id,
        "event": result.event,
        "by": result.actor,
        **{k: v for k, v in result.changes.items() if v is not None},
    }


def handler(name: str) -> Callable[[web.Request], Any]:
    async def act(request: web.Request) -> web.Response:
        alert_id = int(request.match_info["alert_id"])

        async def read_body(model: type[_Body]) -> tuple[Any, list[str]]:
            return await _read(request, model)

        result = await perform(request[PRINCIPAL], request[CONN], name, alert_id, read_body)
        return json_response(result)

    act.__name__ = action_name(name)
    return act
