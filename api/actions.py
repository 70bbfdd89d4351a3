"""A nurse's actions on an alert over HTTP: acknowledge, resolve with an outcome, snooze
with a reason, add a note. The person acting is the token's, never the request's; the
alert's state machine (alerts/lifecycle.py) decides, under the alert's row lock, so a
second or concurrent acknowledgement is refused (409), not applied twice. Every attempt,
applied or refused, is audited in the request's transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from alerts.lifecycle import MAX_NOTE_CHARS, Acknowledge, AddNote, Command, Outcome, Resolve, Snooze
from alerts.lifecycle_store import apply_command
from api.access import Decision, PatientRef, may_act_on_alert
from api.views import CONN, PRINCIPAL, Q, Refused, audit, json_response
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


class NoteBody(_Body):
    text: str = Field(min_length=1, max_length=MAX_NOTE_CHARS)


def _acknowledge(_: AcknowledgeBody, by: str, now: datetime) -> Command:
    return Acknowledge(by, now)


def _resolve(body: ResolveBody, by: str, now: datetime) -> Command:
    return Resolve(by, now, body.outcome.value, body.note)


def _snooze(body: SnoozeBody, by: str, now: datetime) -> Command:
    return Snooze(by, now, now + timedelta(minutes=body.minutes), body.reason)


def _note(body: NoteBody, by: str, now: datetime) -> Command:
    return AddNote(by, now, body.text)


ACTIONS: dict[str, tuple[type[_Body], Callable[[Any, str, datetime], Command]]] = {
    "acknowledge": (AcknowledgeBody, _acknowledge),
    "resolve": (ResolveBody, _resolve),
    "snooze": (SnoozeBody, _snooze),
    "notes": (NoteBody, _note),
}


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError("the body must be a JSON object")
    return data


def handler(name: str) -> Callable[[web.Request], Any]:
    model, make_command = ACTIONS[name]
    action = f"{name}_alert" if name != "notes" else "note_alert"

    async def act(request: web.Request) -> web.Response:
        who, conn = request[PRINCIPAL], request[CONN]
        body = model.model_validate(await _body(request))  # 400 before anything is read
        alert_id = int(request.match_info["alert_id"])
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

        if ref is None or not decision.allowed:
            await record(False, 404)
            raise Refused("no such alert among those you may act on", 404)
        now = datetime.now(UTC)
        try:
            result = await apply_command(conn, alert_id, make_command(body, who.subject, now), now)
        except (Conflict, ValidationError) as exc:  # refused by the state machine
            status = 409 if isinstance(exc, Conflict) else 400
            await record(True, status, refused=str(exc))
            raise Refused(str(exc), status) from exc
        await record(True, 200, event=result.event)
        return json_response(
            {
                "alert_id": alert_id,
                "event": result.event,
                "by": result.actor,
                **{k: v for k, v in result.changes.items() if v is not None},
            }
        )

    act.__name__ = action
    return act
