"""Durable Tianwang accepts: our ingress against a bare aiohttp handler, same load client, same run.

(a) bare aiohttp answering the envelope with no database and no actors, in its own process;
(b) the launcher's ingress, every accept committed (synchronous=FULL) before its 200 and handed
to the scheduler. Prints req/s, p50/p99 for each and the ratio b/a.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import header, launcher, parser, percentile
from tests.harness import free_port


def _bare_server(port: int) -> None:
    async def receive(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        data = {"task_id": body["task_id"], "status": "pending", "received_at": time.time()}
        return web.json_response({"code": 200, "message": "任务接收成功", "data": data})

    app = web.Application()
    app.router.add_post("/api/task/receive", receive)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def body(i: int, run: str) -> dict[str, Any]:
    """A distinct task for each request."""
    return {
        "task_id": f"B_{run}_{i}", "type": "bench", "customer": {"id": f"c{i % 500}", "name": "压测"},
        "trigger": {"type": "customer_reply", "keyword": "好的"},
        "action": {"type": "send_message", "message": "这是您要的文件"}, "priority": "normal",
    }


async def load(url: str, concurrency: int, seconds: float, run: str) -> dict[str, float]:
    """Bounded in time and count: concurrency workers posting distinct tasks for seconds."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(10_000_000))
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                payload = json.dumps(body(next(counter), run))
                started = time.perf_counter()
                async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status == 200:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "ok": len(latencies), "errors": errors}


def show(name: str, r: dict[str, float]) -> None:
    print(f"{name:<28} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms   "
          f"ok {r['ok']:.0f}  errors {r['errors']:.0f}", flush=True)


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    seconds, concurrency = (1.0, 10) if args.quick else (10.0, 50)
    header("bench/ingress.py")
    port = free_port()
    bare = multiprocessing.get_context("spawn").Process(target=_bare_server, args=(port,), daemon=True)
    bare.start()
    shop = launcher()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                asyncio.run(load(f"http://127.0.0.1:{port}/api/task/receive", 1, 0.05, "warm"))
                break
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        a = asyncio.run(load(f"http://127.0.0.1:{port}/api/task/receive", concurrency, seconds, "a"))
        show("(a) bare aiohttp", a)
        b = asyncio.run(load(f"{shop.api}/api/task/receive", concurrency, seconds, "b"))
        show("(b) ingress, durable", b)
        stored = shop.query("SELECT COUNT(*) FROM task WHERE task_id LIKE 'B_b_%'")[0][0]
        waiting = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = shop.query("SELECT COUNT(*) FROM task WHERE task_id LIKE 'B_b_%' AND status = 'waiting'")[0][0]
            if waiting >= b["ok"]:
                break
            time.sleep(0.2)
        print(f"stored {stored} of {b['ok']:.0f} acknowledged; {waiting} armed by the scheduler")
        print(f"ratio ingress/bare: {b['rps'] / a['rps']:.2f}  (goal >= 0.50)")
        if stored < b["ok"]:
            raise SystemExit("an acknowledged task is missing")
    finally:
        shop.stop()
        bare.terminate()
        bare.join(5)


if __name__ == "__main__":
    main()
