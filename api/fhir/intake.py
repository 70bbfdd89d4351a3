"""Readings posted as FHIR: ``POST /fhir/Observation`` and a ``batch`` or ``transaction``
Bundle of them at ``POST /fhir``, as the HL7 Personal Health Device guide has gateways
send them. Each Observation becomes the v1 message it says (api/fhir/posted.py) and takes
the MQTT path (api/device_ingest.py): the device's own credential, the same validation,
quarantine, storage and rules, answered after the COMMIT. A body that is no Observation
is quarantined as it was sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from api import device_ingest
from api.fhir.posted import NotAnObservation, observation_body
from api.problems import problem
from ingest.http_source import Posted

Json = dict[str, Any]
_STATUS = {"stored": (201, "201 Created"), "duplicate": (200, "200 OK")}


def _outcome(severity: str, text: str) -> Json:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": "informational" if severity == "information" else "processing",
                "diagnostics": text,
            }
        ],
    }


async def _take(request: web.Request, device: str, body: bytes) -> tuple[int, Json]:
    """Store one posted Observation; its HTTP status and an OperationOutcome."""
    try:
        message = observation_body(body, device)
    except PermissionError as exc:
        await device_ingest.audit_device(request, f"device:{device}", 403, str(exc))
        raise device_ingest.Answer(problem(403, str(exc))) from exc
    except NotAnObservation as exc:
        kept = await device_ingest.deliver(request, device, body)  # quarantined as sent
        return 422, _outcome("error", f"{exc}; quarantined ({kept.reason})")
    posted: Posted = await device_ingest.deliver(request, device, message)
    if posted.verdict == "quarantined":
        return 422, _outcome("error", f"quarantined: {posted.reason}: {posted.detail}")
    status, _ = _STATUS[posted.verdict]
    return status, _outcome("information", f"{posted.verdict}: {posted.readings} reading(s)")


async def _entry(request: web.Request, device: str, entry: Any) -> tuple[int, Json]:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        return 422, _outcome("error", "only Observation entries are taken")
    return await _take(request, device, orjson.dumps(resource))


async def post_observation(request: web.Request) -> web.Response:
    try:
        device = await device_ingest.device_of(request, None)
        status, outcome = await _take(request, device, await request.read())
    except device_ingest.Answer as answer:
        return answer.response
    return web.Response(
        body=orjson.dumps(outcome), status=status, content_type="application/fhir+json"
    )


async def post_bundle(request: web.Request) -> web.Response:
    """A batch or transaction of Observations, each stored or quarantined on its own and
    answered in its entry (a transaction is not all-or-nothing here: docs/fhir.md)."""
    try:
        device = await device_ingest.device_of(request, None)
        try:
            bundle = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            bundle = None
        kind = bundle.get("type") if isinstance(bundle, dict) else None
        if (
            bundle is None
            or bundle.get("resourceType") != "Bundle"
            or kind not in ("batch", "transaction")
        ):
            return problem(400, "POST /fhir takes a Bundle of type batch or transaction")
        # Every entry is queued before any is awaited, so they share the same batches
        # (in the Bundle's order) instead of waiting for a COMMIT each.
        answers = await asyncio.gather(
            *(_entry(request, device, entry) for entry in bundle.get("entry") or [])
        )
        entries = [
            {"response": {"status": str(status), "outcome": outcome}} for status, outcome in answers
        ]
    except device_ingest.Answer as answer:
        return answer.response
    reply = {"resourceType": "Bundle", "type": f"{kind}-response", "entry": entries}
    return web.Response(body=orjson.dumps(reply), content_type="application/fhir+json")


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/Observation", post_observation, name="fhir_post_observation")
    app.router.add_post(prefix, post_bundle, name="fhir_post_bundle")
