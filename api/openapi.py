"""The API's OpenAPI 3.1 document, built from the route table and the same pydantic
models that validate each request, so it cannot drift from what the server accepts.
Served at ``GET /api/v1/openapi.json`` (no token needed: it holds no patient data)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

import homeward

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]  # the one in api/
_REF = "#/components/schemas/{model}"
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "nhs_number": {
        "description": "Ten digits (spaces or hyphens in the 3-3-4 grouping allowed)",
        "schema": {"type": "string", "pattern": "^[0-9][0-9 -]{8,11}[0-9]$"},
    },
    "alert_id": {"schema": {"type": "integer", "minimum": 1}},
    "review_id": {"schema": {"type": "integer", "minimum": 1}},
}
_RESPONSES = {
    200: "OK",
    400: "Invalid parameters or body: the error names each problem",
    401: "No valid bearer token (missing, unknown, expired or revoked)",
    403: "Not allowed for this caller (another team's queue, no clinical role)",
    404: "Not found among what the caller may see or act on",
    409: "Refused by the alert's state (already acknowledged, already resolved)",
    413: "The request body is larger than the API takes (64 KiB)",
    503: "The database is unavailable; try again",
}
# Every error is one of these (api/problems.py): RFC 9457 with the API's own fields.
_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "error"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "error": {"type": "string", "description": "the same text as detail"},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["parameter", "problem"],
                "properties": {
                    "parameter": {"type": ["string", "null"]},
                    "problem": {"type": "string"},
                },
            },
        },
    },
}


def _response(status: int) -> dict[str, Any]:
    if status < 300:
        content = {"application/json": {"schema": {"type": "object"}}}
    else:
        content = {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}}
    return {"description": _RESPONSES[status], "content": content}


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # aiohttp form; ``{name}`` or ``{name:regex}`` for path parameters
    handler: Handler
    summary: str
    action: str  # what the audit log calls a request to it (read_readings, …)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    statuses: tuple[int, ...] = (200, 400, 401, 503)

    @property
    def openapi_path(self) -> str:
        parts = [
            "{" + p[1:-1].split(":", 1)[0] + "}" if p.startswith("{") else p
            for p in self.path.split("/")
        ]
        return "/".join(parts)

    @property
    def path_parameters(self) -> list[str]:
        return [p[1:-1] for p in self.openapi_path.split("/") if p.startswith("{")]


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template=_REF)
    schemas.update(schema.pop("$defs", {}))
    return schema


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Problem": _PROBLEM}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, **_PATH_PARAMETERS[name]}
            for name in op.path_parameters
        ]
        if op.query is not None:
            query = _schema(op.query, schemas)
            required = set(query.get("required", ()))
            parameters += [
                {"name": name, "in": "query", "required": name in required, "schema": prop}
                for name, prop in query["properties"].items()
            ]
        spec: dict[str, Any] = {
            "summary": op.summary,
            "operationId": op.handler.__name__,
            "parameters": parameters,
            "responses": {str(s): _response(s) for s in op.statuses},
        }
        if op.body is not None:
            body = schemas[op.body.__name__] = _schema(op.body, schemas)
            spec["requestBody"] = {
                "required": bool(body.get("required")),  # acknowledge takes no body
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}
                },
            }
        paths.setdefault(op.openapi_path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Homeward",
            "version": homeward.__version__,
            "description": "Remote monitoring for integrated community care (docs/api.md).",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
