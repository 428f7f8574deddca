"""schemathesis fuzzes the live ingress from its own /api/openapi.json, with TIANWANG_API_KEY set (SPEC §1, §8).

Every generated request, valid or not, must get an answer that is not a 5xx, is JSON in the envelope with the HTTP
status as code, and matches what the document says (status, media type, schema). A task, a conversation and an
image job are seeded first so that reads find something and their answers are checked against the models too.
"""

from __future__ import annotations

import collections
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from protocol.settings import Settings
from tests.e2e.test_image_job import send_photo
from tests.harness import Launcher, http, photo_png, task_body, wait_for
from web.app import make_app, needs_key
from web.base import MAX_BODY, ApiState
from web.openapi import ENVELOPE_TAGS, build_document

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "fuzz-key-7c1d0a9e"
HEADERS = {"X-API-Key": KEY}
# Per operation and phase: the run stays well under a minute on 2 cores. FUZZ_MAX_EXAMPLES=500 hunts harder.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          ignored_auth, unsupported_method]

ran: collections.Counter[str] = collections.Counter()
statuses: collections.Counter[int] = collections.Counter()


def keyed_document() -> dict[str, Any]:
    """The document the ingress serves with TIANWANG_API_KEY set, built in-process for test collection."""
    with tempfile.TemporaryDirectory() as data_dir:
        state = ApiState(Settings(DATA_DIR=data_dir, TIANWANG_API_KEY=KEY), lambda _: None)
        try:
            return build_document(make_app(state), keyed=True, max_body=MAX_BODY, needs_key=needs_key)
        finally:
            state.writer.shutdown()
            state.readers.shutdown()


# schemathesis's lazy loader (from_fixture) needs pytest < 9, so the schema is loaded at collection; the first
# test shows the live ingress serves this very document.
DOCUMENT = keyed_document()
schema = schemathesis.openapi.from_dict(DOCUMENT).include(tag=sorted(ENVELOPE_TAGS))
schema.config.update(headers=HEADERS)
schema.config.generation.update(max_examples=MAX_EXAMPLES)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("fuzz") / "shop", {"TIANWANG_API_KEY": KEY, "DEBOUNCE_S": "0.3"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def get(shop: Launcher, path: str) -> tuple[int, Any]:
    return http("GET", f"{shop.api}{path}", headers=HEADERS)


@pytest.fixture(scope="module")
def job_id(shop: Launcher) -> str:
    """The document's example task and customer exist, and the customer has an analysed image job; its id."""
    status, body = http("POST", f"{shop.api}/api/task/receive", headers=HEADERS, body=task_body(
        "TASK_20260226_001", "customer_123", {"type": "customer_keyword", "keywords": ["好的"]}))
    assert status == 200, body
    send_photo(shop, "customer_123", photo_png(seed=8))

    def analysed_job() -> str | None:
        status, body = get(shop, "/api/conversation/customer_123")
        jobs = body["data"]["jobs"] if status == 200 else []
        return jobs[0]["job_id"] if jobs and jobs[0]["analysis"] else None

    return wait_for(analysed_job, 60, 0.2, "the seeded photo's job to be analysed")


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print how many requests schemathesis made, over how many operations, in how long."""
    started = time.monotonic()
    yield
    line = (f"schemathesis: {sum(ran.values())} requests over {len(ran)} operations in "
            f"{time.monotonic() - started:.1f} s; statuses {dict(sorted(statuses.items()))}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + line)


def in_the_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """The answer is a JSON object {code, message, data} whose code is the HTTP status and whose message says why."""
    ran[case.operation.label] += 1
    statuses[response.status_code] += 1
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"code", "message", "data"}, f"not the envelope: {body!r}"
    assert body["code"] == response.status_code, f"code {body['code']} for HTTP {response.status_code}"
    assert isinstance(body["message"], str) and body["message"], f"no message: {body!r}"
    return None


def test_the_live_ingress_serves_the_fuzzed_document(shop: Launcher) -> None:
    status, live = get(shop, "/api/openapi.json")
    assert status == 200
    assert live == DOCUMENT


def test_seeded_answers_match_the_document(shop: Launcher, job_id: str) -> None:
    cases = [schema["/api/task/status/{task_id}"]["GET"].Case(path_parameters={"task_id": "TASK_20260226_001"}),
             schema["/api/conversation/{customer_id}"]["GET"].Case(path_parameters={"customer_id": "customer_123"}),
             schema["/api/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": job_id}),
             schema["/api/task/list"]["GET"].Case(query={"customer": "customer_123"}),
             schema["/api/task/stats"]["GET"].Case(),
             schema["/api/health"]["GET"].Case()]
    for case in cases:
        response = case.call_and_validate(base_url=shop.api, headers=HEADERS, checks=CHECKS,
                                          additional_checks=[in_the_envelope])
        assert response.status_code == 200, response.text


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_the_envelope_and_none_is_a_server_error(case: Any, shop: Launcher, job_id: str,
                                                                report: None) -> None:
    case.call_and_validate(base_url=shop.api, headers=HEADERS, checks=CHECKS, additional_checks=[in_the_envelope])
