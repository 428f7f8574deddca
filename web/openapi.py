"""The OpenAPI 3.1 document of the ingress, built at startup from a route table and the pydantic models.

ROUTES says, for each route of web/app.make_app, what it takes and answers; build_document() walks the
app's router and describes every route it finds (a route missing from ROUTES still appears, from its handler's
docstring). GET /api/openapi.json serves the document and GET /api/docs a page (web/static/api-docs.html) to read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from protocol.api import (
    ConversationView,
    EventAccepted,
    HealthData,
    JobView,
    TakeoverView,
    TaskCancelled,
    TaskDetail,
    TaskListQuery,
    TaskPage,
    TaskReceived,
    TaskStats,
)
from protocol.operator import PauseIn
from protocol.tianwang import CancelIn, Envelope, EventIn, TaskIn

REF = "#/components/schemas/{model}"
DOCS_PAGE = Path(__file__).resolve().parent / "static" / "api-docs.html"
DOCUMENT = web.AppKey("openapi_document", bytes)

# Tags, in the order the docs page shows them.
TAGS = [
    {"name": "Tianwang", "description": "The task centre's API (SPEC §1)."},
    {"name": "Operator", "description": "Conversations, jobs and events for the shop's operators (SPEC §8)."},
    {"name": "Files", "description": "Result files at the unguessable URLs customers are sent."},
    {"name": "Docs", "description": "This document and the page that shows it."},
    {"name": "Metrics", "description": "Figures for Prometheus."},
    {"name": "Console", "description": "The operators' console in a browser: a session cookie from /console/login "
                                       "and a CSRF token on every POST. Listed from its handlers."},
    {"name": "Other", "description": "Routes not in the route table yet, described by their handler."},
]
UNLISTED_TAGS = {"/console": "Console"}  # tag of a route missing from ROUTES, by the start of its path
ENVELOPE_TAGS = frozenset({"Tianwang", "Operator"})  # every answer is the envelope; the suite fuzzes these


@dataclass(frozen=True)
class Param:
    """A path parameter: what it is and an example value."""

    description: str
    example: str


@dataclass(frozen=True)
class Op:
    """One route as the document describes it."""

    method: str
    path: str
    tag: str
    summary: str
    data: type[BaseModel] | None = None  # what `data` holds on success
    message: str = "ok"  # the success message
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: type[BaseModel] | None = None
    params: dict[str, Param] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # besides 401 (when keyed) and 500
    error_data: dict[int, type[BaseModel]] = field(default_factory=dict)  # errors whose data is not null
    raw: dict[str, Any] | None = None  # success content when the answer is not the envelope


TASK_ID = Param("Tianwang's task id", "TASK_20260226_001")
CUSTOMER_ID = Param("customer id as the IM bridge knows it", "customer_123")
BAD_BODY = "the body is not JSON, not an object, or a field is invalid: the message names each field"

ROUTES: list[Op] = [
    Op("POST", "/api/task/receive", "Tianwang", "Accept a task (idempotent by task_id)", TaskReceived, "任务接收成功",
       body=TaskIn, errors={400: BAD_BODY, 409: "this task_id was already received with a different body"}),
    Op("POST", "/api/task/cancel", "Tianwang", "Cancel a task that has not finished", TaskCancelled, "任务已取消",
       body=CancelIn, errors={400: BAD_BODY, 404: "no task with this task_id",
                              409: "the task has already finished"}),
    Op("GET", "/api/task/status/{task_id}", "Tianwang", "One task, all fields, with its history", TaskDetail,
       params={"task_id": TASK_ID}, errors={404: "no task with this task_id"}),
    Op("GET", "/api/task/list", "Tianwang", "Tasks, newest first, filtered and paginated", TaskPage,
       query=TaskListQuery, errors={400: "a query parameter is invalid: the message says which and why"}),
    Op("GET", "/api/task/stats", "Tianwang", "Counts by status, priority and trigger type", TaskStats),
    Op("GET", "/api/health", "Tianwang", "Liveness of the process and of every actor", HealthData,
       errors={503: "an actor is not answering, or Root did not answer within 3 s"},
       error_data={503: HealthData}),
    Op("POST", "/api/event", "Operator", "Fire custom_event triggers", EventAccepted, "事件已接收", body=EventIn,
       errors={400: BAD_BODY}),
    Op("GET", "/api/conversation/{customer_id}", "Operator",
       "A conversation: profile, latest messages, image jobs with their history, takeover, sends",
       ConversationView, params={"customer_id": CUSTOMER_ID}, errors={404: "no conversation with this customer"}),
    Op("POST", "/api/conversation/{customer_id}/pause", "Operator",
       "An operator takes over: the AI is silent to this customer (the body may be empty)", TakeoverView,
       "已暂停AI回复", body=PauseIn, body_optional=True, params={"customer_id": CUSTOMER_ID},
       errors={400: BAD_BODY, 404: "no conversation with this customer"}),
    Op("POST", "/api/conversation/{customer_id}/resume", "Operator", "The AI answers this customer again",
       TakeoverView, "已恢复AI回复", params={"customer_id": CUSTOMER_ID},
       errors={404: "no conversation with this customer"}),
    Op("GET", "/api/jobs/{job_id}", "Operator",
       "One image job: attempts, requirement changes, result URL, mails, risk, hand-off", JobView,
       params={"job_id": Param("the image job's id (from the conversation view)", "j_0123456789abcdef")},
       errors={404: "no image job with this id"}),
    Op("GET", "/files/{token}/{name}", "Files", "A result image or file, sent to the customer as its URL",
       params={"token": Param("the unguessable token of the URL", "0123456789abcdef"),
                            "name": Param("the file's name", "result.png")},
       errors={404: "no such file"},
       raw={"description": "the file, with its own media type", "content": {"*/*": {"schema": {}}}}),
    Op("GET", "/api/openapi.json", "Docs", "This document (OpenAPI 3.1)",
       raw={"description": "the document", "content": {"application/json": {"schema": {"type": "object"}}}}),
    Op("GET", "/api/docs", "Docs", "A page that shows this document; it asks for the API key when one is needed",
       raw={"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}),
    Op("GET", "/metrics", "Metrics", "Requests, tasks, messages, jobs, Gemini calls, restarts, outbox, timers",
       raw={"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}),
]


def _drop_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its null branch: a query value is a string or absent, never null."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if not branches:
        return schema
    out = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    if len(branches) == 1:
        out.update(branches[0])
    else:
        out["anyOf"] = branches
    return out


def _answer(status: int, data: dict[str, Any], message: str | None) -> dict[str, Any]:
    """The envelope with this status as code and this data."""
    refine: dict[str, Any] = {"type": "object", "required": ["code", "message", "data"],
                              "properties": {"code": {"const": status}, "data": data}}
    if message is not None:
        refine["properties"]["message"] = {"examples": [message]}
    return {"allOf": [{"$ref": REF.format(model="Envelope")}, refine]}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


class _Builder:
    """Collects the models the operations use and turns the route table into paths."""

    def __init__(self, keyed: bool, max_body: int, needs_key: Callable[[str], bool]) -> None:
        self.keyed, self.max_body, self.needs_key = keyed, max_body, needs_key
        self.models: list[type[BaseModel]] = [Envelope]
        self.query_defs: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, Any]:
        if model not in self.models:
            self.models.append(model)
        return {"$ref": REF.format(model=model.__name__)}

    def operation(self, op: Op) -> dict[str, Any]:
        out: dict[str, Any] = {"tags": [op.tag], "summary": op.summary, "operationId": _operation_id(op)}
        params = [{"name": name, "in": "path", "required": True, "description": p.description,
                   "schema": {"type": "string"}, "examples": {"sample": {"value": p.example}}}
                  for name, p in op.params.items()]
        if op.query is not None:
            schema = op.query.model_json_schema(ref_template=REF)
            self.query_defs.update(schema.pop("$defs", {}))
            params += [{"name": name, "in": "query", "required": False,
                        "description": prop.get("description", ""), "schema": _drop_null(prop)}
                       for name, prop in schema["properties"].items()]
        if params:
            out["parameters"] = params
        if op.body is not None:
            out["requestBody"] = {"required": not op.body_optional, "content": _json(self.ref(op.body))}
        responses: dict[str, Any] = {}
        if op.raw is not None:
            responses["200"] = op.raw
        else:
            data = self.ref(op.data) if op.data is not None else {"type": "null"}
            responses["200"] = {"description": op.message, "content": _json(_answer(200, data, op.message))}
        errors = dict(op.errors)
        if op.body is not None:
            errors[413] = f"the body is over the {self.max_body}-byte limit"
        keyed = self.keyed and self.needs_key(op.path)
        if keyed:
            errors[401] = "missing or wrong X-API-Key"
        errors[500] = "internal error; the request was not applied"
        for status in sorted(errors):
            model = op.error_data.get(status)
            data = self.ref(model) if model is not None else {"type": "null"}
            responses[str(status)] = {"description": errors[status], "content": _json(_answer(status, data, None))}
        out["responses"] = responses
        if self.keyed and not keyed:
            out["security"] = []
        return out

    def unlisted(self, method: str, path: str, handler: Any) -> dict[str, Any]:
        """A route missing from ROUTES, from its handler's docstring."""
        doc = (handler.__doc__ or "").strip().splitlines()
        tag = next((t for prefix, t in UNLISTED_TAGS.items() if path.startswith(prefix)), "Other")
        out: dict[str, Any] = {"tags": [tag], "summary": doc[0] if doc else f"{method} {path}",
                               "responses": {"default": {"description": "see the summary"}}}
        names = re.findall(r"\{(\w+)\}", path)
        if names:
            out["parameters"] = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                                 for n in names]
        if self.keyed and not self.needs_key(path):
            out["security"] = []
        return out

    def components(self) -> dict[str, Any]:
        _, defs = models_json_schema([(m, "validation") for m in self.models], ref_template=REF)
        schemas = {**self.query_defs, **defs.get("$defs", {})}
        return {"schemas": dict(sorted(schemas.items())), "securitySchemes": {"ApiKey": {
            "type": "apiKey", "in": "header", "name": "X-API-Key",
            "description": "TIANWANG_API_KEY, on every route that lists it, when the service runs with a key"
                           + ("" if self.keyed else " (this one runs without)"),
        }}}


def _operation_id(op: Op) -> str:
    words = re.findall(r"[a-z0-9]+", op.path.replace("{", "by_").lower())
    return op.method.lower() + "_" + "_".join(w for w in words if w != "api")


def _canonical(path: str) -> str:
    """An aiohttp route path as OpenAPI writes it ({name:regex} → {name})."""
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", path)


def app_routes(app: web.Application) -> list[tuple[str, str, Any]]:
    """(method, path, handler) of every route of the app; HEAD (answered like GET) and catch-alls left out."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or (info.get("prefix", "") + "/{filename}")
        if route.method in ("HEAD", "*"):
            continue
        out.append((route.method, _canonical(path), route.handler))
    return out


def build_document(app: web.Application, keyed: bool, max_body: int,
                   needs_key: Callable[[str], bool]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route of the app; keyed: TIANWANG_API_KEY is set."""
    table = {(op.method, op.path): op for op in ROUTES}
    builder = _Builder(keyed, max_body, needs_key)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler in app_routes(app):
        op = table.get((method, path))
        described = builder.operation(op) if op is not None else builder.unlisted(method, path, handler)
        paths.setdefault(path, {})[method.lower()] = described
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Retouch shop service", "version": "1",
                 "description": "Every answer of the /api/ routes, errors included, is the envelope "
                                "{code, message, data} with the HTTP status as code and a message that says what "
                                "is wrong. A method a route does not take answers 405, an unknown path 404, both "
                                "in the envelope."},
        "tags": TAGS,
        "paths": paths,
        "components": builder.components(),
    }
    if keyed:
        document["security"] = [{"ApiKey": []}]
    return document


async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/openapi.json: the document, built at startup."""
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


async def api_docs(request: web.Request) -> web.FileResponse:
    """GET /api/docs: the page that renders /api/openapi.json."""
    return web.FileResponse(DOCS_PAGE, headers={"Content-Type": "text/html; charset=utf-8",
                                                "Cache-Control": "no-cache"})


def add_routes(app: web.Application, keyed: bool, max_body: int, needs_key: Callable[[str], bool]) -> None:
    """Serve the document and its page; the document is built once the app starts, from its final routes."""
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/api/docs", api_docs)

    async def build(app: web.Application) -> None:
        document = build_document(app, keyed, max_body, needs_key)
        app[DOCUMENT] = json.dumps(document, ensure_ascii=False).encode()

    app.on_startup.append(build)
