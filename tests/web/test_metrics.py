"""/metrics (observability/metrics.py, observability/metrics_files.py, web/metrics.py, web/database_metrics.py):
what a Prometheus scrape reads.

The ingress app runs for real on a loopback port over a real SQLite file; Gemini calls go to the
Gemini stand-in; counters of forked processes are added up through the multiprocess directory.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from executors.gemini import MeteredGeminiClient
from integrations.gemini import GeminiError
from observability import metrics
from persistence import figures
from persistence.db import close_database, open_database
from persistence.models import Task
from protocol.settings import Settings
from standins.fake_gemini import FakeGemini, FaultSpec
from tests.harness import REPO, free_port
from web.app import make_app
from web.base import ApiState
from web.database_metrics import DatabaseCollector

pytestmark = pytest.mark.timeout(60)
KEY = "metrics-test-key"
T0 = 1_800_000_000.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    open_database(f"sqlite:///{tmp_path}/t.db", create=True)
    try:
        yield tmp_path
    finally:
        close_database()


def add_task(task_id: str, status: str) -> None:
    Task.create(task_id=task_id, type="t", customer_id="c1", trigger_type="customer_reply", trigger="{}",
                action="{}", priority="normal", priority_rank=1, timeout_hours=1, body_hash="h", answer="{}",
                status=status, created_at=T0, updated_at=T0)


def test_database_figures_are_in_the_scrape_with_every_known_label_at_zero(db: Path) -> None:
    add_task("T1", "waiting")
    scrape = samples(generate_latest(metrics.registry(DatabaseCollector())).decode())
    assert value(scrape, "shop_database_up") == 1
    assert value(scrape, "shop_tianwang_tasks", status="waiting") == 1
    assert ("shop_tianwang_tasks", (("status", "completed"),)) in scrape  # zero, but present
    assert ("shop_image_jobs", (("state", "paid"),)) in scrape
    assert ("shop_outbox_pending", (("kind", "im_send"),)) in scrape
    assert ("shop_actor_restarts_total", (("kind", "dispatch"),)) in scrape
    assert value(scrape, "shop_customer_messages_total") == 0


def test_every_child_of_root_has_a_restart_series() -> None:
    from actors.root import CHILDREN

    assert set(CHILDREN) <= set(metrics.RESTART_KINDS)


def test_every_kind_of_gemini_failure_has_its_series() -> None:
    kinds = {cls.kind for cls in _subclasses(GeminiError)}
    assert kinds <= set(metrics.GEMINI_ERROR_KINDS)


def _subclasses(cls: type) -> set[type]:
    return {cls} | {d for sub in cls.__subclasses__() for d in _subclasses(sub)}


def test_the_database_is_read_at_most_once_a_second_however_often_scraped() -> None:
    reads: list[float] = []
    now = [100.0]

    def read() -> figures.Figures:
        reads.append(now[0])
        return figures.Figures(customer_messages=len(reads))

    collector = DatabaseCollector(read, min_interval_s=1.0, clock=lambda: now[0])
    for _ in range(5):
        list(collector.collect())
    now[0] += 1.0
    found = {m.name: m for m in collector.collect()}
    assert reads == [100.0, 101.0]
    assert found["shop_customer_messages"].samples[0].value == 2


def test_a_database_that_does_not_answer_is_a_zero_not_a_failed_scrape(tmp_path: Path) -> None:
    open_database(f"sqlite:///{tmp_path}/t.db", create=True)
    close_database()  # every query now fails
    scrape = samples(generate_latest(metrics.registry(DatabaseCollector())).decode())
    assert value(scrape, "shop_database_up") == 0
    assert not any(name == "shop_tianwang_tasks" for name, _ in scrape)


def test_gemini_calls_and_errors_are_counted_by_call_and_kind() -> None:
    def counts() -> dict[Any, float]:
        return samples(generate_latest(metrics.registry()).decode())

    with FakeGemini(port=free_port()) as fake:
        before = counts()
        with MeteredGeminiClient("test-key", fake.base_url, "img-model", "text-model", timeout_s=5) as client:
            fake.add_faults([FaultSpec(kind="500")])
            with pytest.raises(GeminiError):
                client.detect_text(_png(), "image/png")
            found, _ = client.detect_text(_png(), "image/png")
        after = counts()
    assert found in (True, False)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert delta[("shop_gemini_calls_total", (("call", "detect_text"),))] == 2
    assert delta[("shop_gemini_errors_total", (("call", "detect_text"), ("kind", "server_error")))] == 1
    assert delta[("shop_gemini_calls_total", (("call", "render"),))] == 0


def _png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 100, 50)).save(out, "PNG")
    return out.getvalue()


def test_requests_are_counted_by_route_pattern_and_status_and_metrics_needs_the_key(db: Path) -> None:
    settings = Settings(_env_file=None, DATA_DIR=db, TIANWANG_API_KEY=KEY)
    # The counters are the process's own: other tests in this process may have counted before (compare the moves).
    before = samples(generate_latest(metrics.registry()).decode())
    after, denied = asyncio.run(_requests_then_scrape(ApiState(settings, lambda item: None, "ingress-2")))
    scrape = {k: v - before.get(k, 0.0) for k, v in after.items()}
    assert denied == 401
    assert value(scrape, "shop_http_requests_total", method="GET", route="/api/task/status/{task_id}",
                 status="404") == 2  # two task ids, one series: the pattern, not the path
    assert value(scrape, "shop_http_requests_total", method="GET", route="/api/task/stats", status="200") == 1
    assert value(scrape, "shop_http_requests_total", method="GET", route="/metrics", status="401") == 1
    assert value(scrape, "shop_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(scrape, "shop_http_request_duration_seconds_count", method="GET", route="/api/task/stats") == 1
    assert value(scrape, "shop_ingress_requests_total", ingress="ingress-2") == 5  # which process served them


async def _requests_then_scrape(state: ApiState) -> tuple[dict[Any, float], int]:
    auth = {"X-API-Key": KEY}
    async with TestClient(TestServer(make_app(state), host="127.0.0.1", port=free_port())) as client:
        for task_id in ("T-nope-1", "T-nope-2"):
            assert (await client.get(f"/api/task/status/{task_id}", headers=auth)).status == 404
        assert (await client.get("/api/task/stats", headers=auth)).status == 200
        assert (await client.get("/no/such/thing", headers=auth)).status == 404
        denied = (await client.get("/metrics")).status
        answer = await client.get("/metrics", headers=auth)
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        return samples(await answer.text()), denied


def test_counters_of_forked_processes_add_up_and_outlive_them(tmp_path: Path) -> None:
    """What the launcher relies on: a child killed with SIGKILL still counts in the next scrape."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from observability import metrics_files
        metrics_files.prepare(Path({str(tmp_path)!r}))
        from observability import metrics
        from prometheus_client import generate_latest
        for n in range(3):
            pid = os.fork()
            if pid == 0:
                metrics.ACTOR_RESTARTS.labels("dispatch").inc()
                metrics.GEMINI_CALLS.labels("render").inc(n + 1)
                if n == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                os._exit(0)
            os.waitpid(pid, 0)
        metrics.ACTOR_RESTARTS.labels("system").inc()
        sys.stdout.write(generate_latest(metrics.registry()).decode())
        try:
            metrics_files.prepare(Path({str(tmp_path)!r}))
        except RuntimeError as exc:
            sys.stderr.write(str(exc))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    scrape = samples(done.stdout)
    assert value(scrape, "shop_actor_restarts_total", kind="dispatch") == 3
    assert value(scrape, "shop_actor_restarts_total", kind="system") == 1
    assert value(scrape, "shop_gemini_calls_total", call="render") == 6
    assert "imported before its multiprocess directory was set" in done.stderr
