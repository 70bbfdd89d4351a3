"""``GET /api/v1/outcomes``: the commissioners' aggregate figures (docs/outcomes.md), with
small numbers suppressed; no patient identifier is ever part of the answer. The access
decision is api/access.py ``may_read_outcomes``; every request is audited, granted or
refused, in the request's transaction."""

from __future__ import annotations

from aiohttp import web

from alerts.outcomes import Period, suppress
from alerts.outcomes_store import outcomes_report
from api.access import may_read_outcomes
from api.params import GroupBy, OutcomesQuery
from api.views import CONN, PRINCIPAL, Refused, audit, json_response

ACTION = "read_outcomes"


async def outcomes(request: web.Request) -> web.Response:
    who, conn = request[PRINCIPAL], request[CONN]
    params = OutcomesQuery.from_query(request.query)
    decision = may_read_outcomes(who)
    detail = {
        "from": params.first.isoformat(),
        "to": params.last.isoformat(),
        "by": params.by.value,
        "reason": decision.reason,
    }
    if not decision.allowed:
        await audit(conn, who, ACTION, allowed=False, status=403, detail=detail)
        raise Refused(f"not allowed: {decision.reason}", 403)
    period = Period(params.first, params.last)
    by_team = params.by is GroupBy.TEAM
    result = suppress(await outcomes_report(conn, period, "team" if by_team else "locality"))
    await audit(conn, who, ACTION, allowed=True, status=200, detail=detail)
    return json_response(result)
