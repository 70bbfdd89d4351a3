"""Late readings for review over HTTP: the team's list and a person closing one.

A reading that arrived after newer ones and would have breached a rule is stored as
history, never raised as a current alert; it waits in ``late_reviews`` for a person
(alerts/late_reviews.py). The list is the team's, like its queue (api/access.py
``may_read_queue``); closing takes clinical staff of the patient's team
(``may_close_late_review``), with an optional note. Each read and each attempt, allowed
or refused, is audited in the request's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from alerts.late_reviews import (
    MAX_NOTE_CHARS,
    close_review_async,
    list_reviews_async,
    review_state,
)
from api.access import Decision, PatientRef, may_close_late_review, may_read_queue
from api.params import QueueLimit, _Params
from api.strict import parse_body
from api.views import (
    CONN,
    PRINCIPAL,
    Refused,
    audit,
    json_response,
    printable,
    problems_of,
    read_body,
)
from homeward.errors import Conflict, ValidationError


class ReviewState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class LateReviewsQuery(_Params):
    state: ReviewState = ReviewState.OPEN
    limit: QueueLimit = 50


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
    note: str | None = Field(default=None, min_length=1, max_length=MAX_NOTE_CHARS)


async def late_reviews(request: web.Request) -> web.Response:
    """The team's late readings for review, oldest measurement first."""
    who, conn = request[PRINCIPAL], request[CONN]
    params = LateReviewsQuery.from_query(request.query)
    team = who.team_id
    decision = may_read_queue(who, team) if team else Decision(False, "no team")
    if not decision.allowed or team is None:
        await audit(
            conn,
            who,
            "read_late_reviews",
            allowed=False,
            status=403,
            team_id=team,
            detail={"reason": decision.reason},
        )
        raise Refused(f"not allowed: {decision.reason}", 403)
    rows = await list_reviews_async(conn, team=team, state=params.state, limit=params.limit)
    await audit(
        conn,
        who,
        "read_late_reviews",
        allowed=True,
        status=200,
        team_id=team,
        detail={"patients": sorted({r["patient_id"] for r in rows}), "state": params.state},
    )
    for r in rows:
        del r["patient_id"]
    return json_response({"team": team, "state": params.state, "late_reviews": rows})


async def close_late_review(request: web.Request) -> web.Response:
    """Close one review, with an optional note; the person is the token's."""
    who, conn = request[PRINCIPAL], request[CONN]
    review_id = int(request.match_info["review_id"])
    state = await review_state(conn, review_id)
    if state is None:
        decision = Decision(False, "no such late review")
    else:
        decision = may_close_late_review(who, PatientRef(state["patient_id"], state["team_id"]))

    async def record(allowed: bool, status: int, **more: Any) -> None:
        await audit(
            conn,
            who,
            "close_late_review",
            allowed=allowed,
            status=status,
            patient_id=state["patient_id"] if state else None,
            team_id=state["team_id"] if state else None,
            detail={"review_id": review_id, "reason": decision.reason, **more},
        )

    if state is None or not decision.allowed:
        await record(False, 404)
        raise Refused("no such late review among those you may close", 404)
    try:
        data = parse_body(await read_body(request))
        body = CloseBody.model_validate_json(orjson.dumps(data), strict=True)
    except web.HTTPRequestEntityTooLarge as exc:
        await record(True, 413, refused="body too large")
        raise Refused("the request body is too large", 413) from exc
    except ValidationError as exc:
        await record(True, 400, refused=printable(str(exc)))
        raise Refused(str(exc), 400) from exc
    except PydanticValidationError as exc:
        problems = problems_of(exc)
        await record(True, 400, refused="invalid body", problems=problems)
        raise Refused("invalid body", 400, problems=problems) from exc
    try:
        row = await close_review_async(
            conn, review_id, by=who.subject, note=body.note, now=datetime.now(UTC)
        )
    except Conflict as exc:
        await record(True, 409, refused=str(exc))
        raise Refused(str(exc), 409) from exc
    await record(True, 200)
    del row["patient_id"]
    return json_response(row)
