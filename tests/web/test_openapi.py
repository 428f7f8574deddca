"""The OpenAPI document of the ingress (web/openapi.py) and its docs page, as an integrator reads them.

The document validates as OpenAPI 3.1, describes every route of make_app, takes its schemas from the pydantic
models, says where the API key is needed, and is served at /api/openapi.json; /api/docs renders it in a browser.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel

from protocol.settings import Settings
from web.app import make_app, needs_key
from web.base import MAX_BODY, ApiState
from web.openapi import REF, ROUTES, build_document

KEY = "doc-key-5b2e"


@pytest.fixture
def state(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ApiState]:
    key = getattr(request, "param", KEY)
    s = ApiState(Settings(DATA_DIR=str(tmp_path), TIANWANG_API_KEY=key), lambda _: None)
    yield s
    s.writer.shutdown()
    s.readers.shutdown()


def document(state: ApiState, app: web.Application | None = None) -> dict[str, Any]:
    return build_document(app or make_app(state), keyed=state.settings.TIANWANG_API_KEY is not None,
                          max_body=MAX_BODY, needs_key=needs_key)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


@pytest.mark.parametrize("state", [KEY, None], indirect=True, ids=["keyed", "open"])
def test_the_document_is_valid_openapi_3_1(state: ApiState) -> None:
    doc = document(state)
    assert doc["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(doc).validate()


def test_every_route_of_make_app_is_described_and_nothing_else(state: ApiState) -> None:
    doc = document(state)
    served = {(r.method, r.resource.canonical) for r in make_app(state).router.routes() if r.method != "HEAD"}
    described = {(method, path) for method, path, _ in operations(doc)}
    assert served == described
    # Every /api/ route is in the route table, so it is described in full (not from its docstring alone).
    table = {(op.method, op.path) for op in ROUTES}
    assert {r for r in served if r[1].startswith("/api/")} <= table
    assert table <= served, f"route table entries with no route: {table - served}"


def test_a_route_missing_from_the_table_is_still_described(state: ApiState) -> None:
    app = make_app(state)

    async def gauges(request: web.Request) -> web.Response:
        """Gauges for the wall screen."""
        return web.Response(text="")

    app.router.add_get("/wall/{screen}", gauges)
    op = document(state, app)["paths"]["/wall/{screen}"]["get"]
    assert op["summary"] == "Gauges for the wall screen."
    assert op["parameters"][0]["name"] == "screen"


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    schema.pop("$defs", None)
    return schema


def test_bodies_and_answers_are_the_pydantic_models(state: ApiState) -> None:
    doc = document(state)
    components = doc["components"]["schemas"]
    for op in ROUTES:
        described = doc["paths"][op.path][op.method.lower()]
        if op.body is not None:
            body = described["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": REF.format(model=op.body.__name__)}
            assert components[op.body.__name__] == _model_schema(op.body)
        if op.data is not None:
            answer = described["responses"]["200"]["content"]["application/json"]["schema"]
            assert answer["allOf"][0] == {"$ref": REF.format(model="Envelope")}
            assert answer["allOf"][1]["properties"]["data"] == {"$ref": REF.format(model=op.data.__name__)}
            assert components[op.data.__name__] == _model_schema(op.data)
    # Nested models are components too, every $ref resolves.
    text = str(doc)
    for name in components:
        assert components[name]
    for ref in {part.split("'")[0] for part in text.split("'$ref': '")[1:]}:
        assert ref.removeprefix("#/components/schemas/") in components, ref


def test_list_parameters_follow_the_query_model(state: ApiState) -> None:
    op = document(state)["paths"]["/api/task/list"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"status", "customer", "type", "page", "page_size"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    assert params["page_size"]["schema"]["maximum"] == 200
    assert {"type": "null"} not in params["status"]["schema"]["anyOf"]


def test_every_answer_is_the_envelope_with_its_status_as_code(state: ApiState) -> None:
    for method, path, op in operations(document(state)):
        for status, response in op["responses"].items():
            media = response.get("content", {})
            if "application/json" not in media or path == "/api/openapi.json":
                continue
            schema = media["application/json"]["schema"]
            assert schema["allOf"][0] == {"$ref": REF.format(model="Envelope")}, (method, path, status)
            refine = schema["allOf"][1]
            assert refine["properties"]["code"] == {"const": int(status)}
            assert set(refine["required"]) == {"code", "message", "data"}
            if int(status) >= 400 and (path, status) != ("/api/health", "503"):
                assert refine["properties"]["data"] == {"type": "null"}, (method, path, status)


def test_errors_as_they_occur(state: ApiState) -> None:
    paths = document(state)["paths"]

    def codes(method: str, path: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert codes("post", "/api/task/receive") == {"200", "400", "401", "409", "413", "500"}
    assert codes("post", "/api/task/cancel") == {"200", "400", "401", "404", "409", "413", "500"}
    assert codes("get", "/api/task/status/{task_id}") == {"200", "401", "404", "500"}
    assert codes("get", "/api/health") == {"200", "500", "503"}
    assert codes("get", "/files/{token}/{name}") == {"200", "404", "500"}
    assert paths["/api/conversation/{customer_id}/pause"]["post"]["requestBody"]["required"] is False


def test_the_key_is_required_everywhere_but_health_docs_files_and_the_console(state: ApiState) -> None:
    doc = document(state)
    scheme = doc["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert doc["security"] == [{"ApiKey": []}]
    open_routes = {(m, p) for m, p, op in operations(doc) if op.get("security") == []}
    assert {("GET", "/api/health"), ("GET", "/api/docs"), ("GET", "/files/{token}/{name}")} <= open_routes
    assert all(p.startswith("/console") for _, p in open_routes - {("GET", "/api/health"), ("GET", "/api/docs"),
                                                                    ("GET", "/files/{token}/{name}")})

    async def check(client: TestClient) -> None:
        keyed = [(m, p) for m, p, op in operations(doc) if op.get("security") != []]
        assert ("POST", "/api/task/receive") in keyed and ("GET", "/api/openapi.json") in keyed
        for method, path in keyed:
            answer = await client.request(method, re.sub(r"\{\w+\}", "x", path))
            assert answer.status == 401, (method, path)
            assert (await answer.json())["message"] == "missing or wrong X-API-Key"

    serve(state, check)


@pytest.mark.parametrize("state", [None], indirect=True)
def test_without_a_key_nothing_asks_for_one(state: ApiState) -> None:
    doc = document(state)
    assert "security" not in doc
    assert all("401" not in op["responses"] for _, _, op in operations(doc))
    assert "ApiKey" in doc["components"]["securitySchemes"]  # still described, for a service that sets one


def serve(state: ApiState, check: Any) -> Any:
    """Run check(client) against make_app on a real loopback socket."""

    async def run() -> Any:
        async with TestClient(TestServer(make_app(state), host="127.0.0.1")) as client:
            return await check(client)

    return asyncio.run(run())


def test_the_document_and_the_page_are_served(state: ApiState) -> None:
    async def check(client: TestClient) -> None:
        refused = await client.get("/api/openapi.json")
        assert refused.status == 401
        assert await refused.json() == {"code": 401, "message": "missing or wrong X-API-Key", "data": None}
        served = await client.get("/api/openapi.json", headers={"X-API-Key": KEY})
        assert served.status == 200 and served.content_type == "application/json"
        assert await served.json() == document(state)
        page = await client.get("/api/docs")  # no key: the page itself asks for it
        assert page.status == 200 and page.content_type == "text/html"
        html = await page.text()
        assert "openapi.json" in html and "X-API-Key" in html and "<script src" not in html
        wrong = await client.post("/api/docs")
        assert wrong.status == 405 and wrong.headers["Allow"] == "GET, HEAD"
        assert (await wrong.json())["code"] == 405

    serve(state, check)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium)")
@pytest.mark.timeout(60)
@pytest.mark.parametrize("state", [None], indirect=True)
def test_the_docs_page_renders_every_route_in_a_browser(state: ApiState) -> None:
    async def check(client: TestClient) -> str:
        url = str(client.make_url("/api/docs"))
        with tempfile.TemporaryDirectory() as profile:
            proc = await asyncio.create_subprocess_exec(
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                "--virtual-time-budget=5000", "--dump-dom", url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(), 45)
        return out.decode()

    dom = serve(state, check)
    for op in ROUTES:
        assert op.path in dom, op.path
    assert "Retouch shop service" in dom and "TaskIn" in dom and "Schemas" in dom
