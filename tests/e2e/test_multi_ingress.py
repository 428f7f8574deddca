"""Two ingress processes on one port (INGRESS_PROCESSES=2), through the launcher as a user runs it.

Many clients at once, the same task_id posted by several of them at the same moment: each task is stored once,
identical bodies get identical answers, a different body gets 409, every task runs, and both processes served.
An operator's hand-off, answered by a conversation actor, reaches the ingress process that waits for it.
One ingress process killed with SIGKILL under load: clients are served by the other, the dead one is restarted,
and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.client import HTTPConnection
from http.cookies import SimpleCookie
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.e2e.test_image_job import jobs_of, send_photo, wait_text
from tests.harness import Launcher, http, photo_png, task_body, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RETRY_FOR_S = 15.0  # a client retries a request that met a dead process (idempotent receive makes it safe)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("ingresses") / "shop", {"INGRESS_PROCESSES": "2", "DEBOUNCE_S": "0.3"})
    try:
        launcher.start()
        yield launcher
    finally:
        launcher.stop()


def due_now(task_id: str, customer: str, message: str | None = None) -> dict[str, Any]:
    """A task that runs as soon as the scheduler arms it (its time has come)."""
    at = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S")
    return task_body(task_id, customer, {"type": "time_reach", "time": at},
                     {"type": "send_message", "message": message or f"您好 {task_id}"})


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any, int]:
    """POST until the shop answers (a connection cut by a killed process is tried again); status, body, retries."""
    deadline = time.monotonic() + RETRY_FOR_S
    retries = 0
    while True:
        try:
            async with session.post(f"{url}/api/task/receive", json=body) as resp:
                return resp.status, await resp.json(), retries
        except (TimeoutError, aiohttp.ClientConnectionError):
            if time.monotonic() > deadline:
                raise
            retries += 1
            await asyncio.sleep(0.02)


def new_session(limit: int) -> aiohttp.ClientSession:
    # A new connection per request: the kernel spreads connections, not requests, over the processes.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, force_close=True),
                                 timeout=aiohttp.ClientTimeout(total=10))


def served_by(shop: Launcher) -> dict[str, float]:
    """Requests each ingress process answered, from /metrics (counters of every process, summed per process)."""
    status, text = http("GET", f"{shop.api}/metrics")
    assert status == 200
    counts = {}
    for line in text.splitlines():
        if line.startswith("shop_ingress_requests_total{"):
            name = line.split('ingress="', 1)[1].split('"', 1)[0]
            counts[name] = float(line.rsplit(" ", 1)[1])
    return counts


def stored(shop: Launcher, prefix: str) -> dict[str, int]:
    """task_id → rows of the task table and of its 'received' history, for the ids starting with prefix."""
    tasks = {tid: n for tid, n in shop.query("SELECT task_id, COUNT(*) FROM task WHERE task_id LIKE ? "
                                             "GROUP BY task_id", f"{prefix}%")}
    received = shop.query("SELECT task_id, COUNT(*) FROM tasktransition WHERE task_id LIKE ? AND to_status = "
                          "'pending' GROUP BY task_id", f"{prefix}%")
    assert all(n == 1 for _, n in received), "a task was received twice"
    return tasks


def wait_all_completed(shop: Launcher, prefix: str, count: int, timeout: float = 90) -> None:
    def done() -> bool:
        rows = shop.query("SELECT status, COUNT(*) FROM task WHERE task_id LIKE ? GROUP BY status", f"{prefix}%")
        by_status = dict(rows)
        return by_status.get("completed", 0) == count or False

    wait_for(done, timeout, 0.5, f"every {prefix} task completed")


def test_both_processes_listen_on_the_one_port(shop: Launcher) -> None:
    actors = {a["name"]: a for a in shop.wait_healthy()["data"]["actors"]}
    assert actors["ingress"]["kind"] == actors["ingress-2"]["kind"] == "ingress"
    assert actors["ingress"]["state"] == actors["ingress-2"]["state"] == "running"
    assert actors["ingress"]["pid"] != actors["ingress-2"]["pid"]
    assert "ingress-3" not in actors
    assert "2 processes on the port" in shop.output()


def test_concurrent_clients_and_the_same_task_id_at_once_store_each_task_once(shop: Launcher) -> None:
    before = served_by(shop)
    unique = [due_now(f"MU_{i}", f"mu{i % 20}") for i in range(200)]
    same = [due_now(f"MS_{i}", f"ms{i % 5}") for i in range(20)]  # each posted by 6 clients at once, one body
    rival = [(due_now(f"MR_{i}", "mr", "正文 A"), due_now(f"MR_{i}", "mr", "正文 B")) for i in range(10)]

    async def run() -> tuple[list[Any], list[Any], list[Any]]:
        async with new_session(64) as session:
            url = shop.api
            # Copies of one id are started together, so they are in flight at the same moment.
            u = asyncio.gather(*(post(session, url, b) for b in unique))
            s = asyncio.gather(*(asyncio.gather(*(post(session, url, b) for _ in range(6))) for b in same))
            r = asyncio.gather(*(asyncio.gather(*(post(session, url, b) for b in (a, z, a, z))) for a, z in rival))
            return await asyncio.gather(u, s, r)

    u_res, s_res, r_res = asyncio.run(run())

    assert all(status == 200 for status, _, _ in u_res), [a for a in u_res if a[0] != 200][:3]
    for copies in s_res:
        assert {status for status, _, _ in copies} == {200}, copies
        assert len({json.dumps(body["data"], sort_keys=True) for _, body, _ in copies}) == 1, copies
    for (a, _z), answers in zip(rival, r_res, strict=True):
        statuses = [status for status, _, _ in answers]
        # One body won: both of its posts got 200 with one answer, both of the other's 409.
        assert sorted(statuses) == [200, 200, 409, 409], answers
        won = "正文 A" if statuses[0] == 200 else "正文 B"
        assert statuses[0] == statuses[2] and statuses[1] == statuses[3], answers
        assert len({json.dumps(body["data"], sort_keys=True) for st, body, _ in answers if st == 200}) == 1
        assert all("already received with a different body" in body["message"]
                   for st, body, _ in answers if st == 409), answers
        assert shop.task(a["task_id"])["action"]["message"] == won

    rows = stored(shop, "M")
    assert len(rows) == 230 and set(rows.values()) == {1}
    wait_all_completed(shop, "M", 230)
    after = served_by(shop)
    spread = {name: after.get(name, 0) - before.get(name, 0) for name in ("ingress", "ingress-2")}
    assert all(n > 0 for n in spread.values()), spread  # the kernel gave connections to both processes
    assert sum(spread.values()) >= 200 + 120 + 40


def pinned_connections(shop: Launcher) -> dict[str, HTTPConnection]:
    """A kept-alive connection to each ingress process (a connection stays with the process that accepted it):
    which process a new one went to shows in /metrics after 20 requests on it."""
    found: dict[str, HTTPConnection] = {}
    for _ in range(30):
        conn = HTTPConnection("127.0.0.1", shop.api_port, timeout=30)
        before = served_by(shop)
        for _ in range(20):
            conn.request("GET", "/api/task/stats")
            conn.getresponse().read()
        after = served_by(shop)
        name = max(after, key=lambda n: after[n] - before.get(n, 0))
        if name in found:
            conn.close()
        else:
            found[name] = conn
        if len(found) == 2:
            return found
    raise AssertionError(f"30 new connections all went to {list(found)}")


def call(conn: HTTPConnection, method: str, path: str, headers: dict[str, str], body: Any = None
         ) -> tuple[int, Any, dict[str, str]]:
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Content-Type": "application/json", **headers})
    resp = conn.getresponse()
    cookies = {n: m.value for h in resp.headers.get_all("Set-Cookie") or [] for n, m in SimpleCookie(h).items()}
    return resp.status, json.loads(resp.read()), cookies


def test_an_operator_hand_off_is_answered_on_the_process_that_asked(shop: Launcher) -> None:
    for customer, seed in (("ho1", 91), ("ho2", 92)):
        send_photo(shop, customer, photo_png(seed=seed))
    for customer in ("ho1", "ho2"):
        wait_text(shop, customer, "元")
    conns = pinned_connections(shop)
    try:
        # The console with no account is open from loopback; the session one process signs, the other accepts.
        status, me, cookies = call(conns["ingress"], "GET", "/console/api/me", {})
        assert status == 200, me
        auth = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), "X-CSRF-Token": me["data"]["csrf"]}
        for name, customer in (("ingress", "ho1"), ("ingress-2", "ho2")):
            (job,) = jobs_of(shop, customer)
            started = time.monotonic()
            status, body, _ = call(conns[name], "POST", f"/console/api/jobs/{job['job_id']}/handoff", auth,
                                   {"reason": f"经 {name}"})
            assert status == 200 and body["data"]["state"] == "transferred", (name, body)
            assert time.monotonic() - started < 5, f"the answer to {name} took the timeout's path"
    finally:
        for conn in conns.values():
            conn.close()


def test_one_ingress_killed_under_load_the_other_serves_and_nothing_acknowledged_is_lost(shop: Launcher) -> None:
    victim = shop.pid_of("ingress-2")
    acknowledged: list[tuple[float, str]] = []
    retried = 0
    stop_at = time.monotonic() + 7.0
    kill_at = time.monotonic() + 2.0

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        nonlocal retried
        i = 0
        while time.monotonic() < stop_at:
            task_id = f"K_{n}_{i}"
            status, body, retries = await post(session, shop.api, due_now(task_id, f"k{n}"))
            assert status == 200, body
            retried += retries
            acknowledged.append((time.monotonic(), task_id))
            i += 1

    async def killer() -> None:
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        os.kill(victim, signal.SIGKILL)

    async def run() -> None:
        async with new_session(16) as session:
            await asyncio.gather(killer(), *(client(session, n) for n in range(12)))

    asyncio.run(run())

    after_kill = [t for t, _ in acknowledged if t > kill_at]
    assert len(after_kill) > 50, "clients were not served after the kill"
    gaps = [b - a for a, b in zip(after_kill, after_kill[1:], strict=False)]
    assert max(gaps) < 2.0, f"no answer for {max(gaps):.1f} s after the kill"

    # The killed process is replaced, and the new one takes connections again.
    actors = {a["name"]: a for a in shop.wait_healthy()["data"]["actors"]}
    assert actors["ingress-2"]["pid"] != victim and actors["ingress-2"]["restarts"] == 1
    assert actors["ingress"]["restarts"] == 0
    before = served_by(shop).get("ingress-2", 0)
    wait_for(lambda: [http("GET", f"{shop.api}/api/task/stats") for _ in range(10)]
             and served_by(shop).get("ingress-2", 0) > before, 20, 0.1, "the restarted ingress-2 serving")

    ids = [tid for _, tid in acknowledged]
    rows = stored(shop, "K_")
    missing = set(ids) - set(rows)
    assert not missing, f"{len(missing)} acknowledged tasks are not stored, e.g. {sorted(missing)[:3]}"
    wait_all_completed(shop, "K_", len(rows))
    print(f"acknowledged {len(ids)} tasks ({len(after_kill)} after the kill), {retried} requests tried again")
