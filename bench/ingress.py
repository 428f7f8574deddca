"""Durable Tianwang accepts: our ingress against a bare aiohttp handler, same load client, same run.

(a) bare aiohttp answering the envelope with no database and no actors, in its own process;
(b) the launcher's ingress, every accept committed (synchronous=FULL) before its 200 and handed
to the scheduler; (c) the same with INGRESS_PROCESSES=2, two ingress processes on the one port.
Prints req/s, p50/p99 for each, the ratio b/a and the ratio c/b.
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
from tests.harness import free_port, http


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


def cpu_ticks() -> tuple[int, int]:
    """The machine's (busy, total) CPU ticks so far, every core, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


async def measured(coro: Any) -> dict[str, float]:
    """A load's result with the share of the machine's CPU that was busy meanwhile (load client included)."""
    busy0, total0 = cpu_ticks()
    r = await coro
    busy1, total1 = cpu_ticks()
    return {**r, "busy": (busy1 - busy0) / max(1, total1 - total0)}


def show(name: str, r: dict[str, float]) -> None:
    print(f"{name:<28} {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms   "
          f"ok {r['ok']:.0f}  errors {r['errors']:.0f}   cpu busy {r['busy']:.0%}", flush=True)


def served_by(api: str) -> str:
    """shop_ingress_requests_total of each ingress process, from /metrics."""
    counts = []
    for line in http("GET", f"{api}/metrics")[1].splitlines():
        if line.startswith("shop_ingress_requests_total{"):  # shop_ingress_requests_total{ingress="ingress-2"} 5.0
            counts.append(f"{line.split(chr(34))[1]} {float(line.rsplit(' ', 1)[1]):.0f}")
    return ", ".join(counts)


def durable(name: str, processes: int, concurrency: int, seconds: float, run: str) -> dict[str, float]:
    """A launcher with INGRESS_PROCESSES=processes under the load (no other launcher running); every acknowledged task
    checked on disk and armed by the scheduler."""
    shop = launcher({"INGRESS_PROCESSES": str(processes)})
    try:
        r = asyncio.run(measured(load(f"{shop.api}/api/task/receive", concurrency, seconds, run)))
        show(name, r)
        stored = shop.query("SELECT COUNT(*) FROM task")[0][0]  # a fresh database: every task is this run's
        waiting = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = shop.query("SELECT COUNT(*) FROM task WHERE status = 'waiting'")[0][0]
            if waiting >= r["ok"]:
                break
            time.sleep(0.2)
        print(f"    stored {stored} of {r['ok']:.0f} acknowledged; {waiting} armed by the scheduler", flush=True)
        if processes > 1:
            print(f"    requests answered per process: {served_by(shop.api)}", flush=True)
        if stored < r["ok"]:
            raise SystemExit(f"{name}: an acknowledged task is missing")
        return r
    finally:
        shop.stop()


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    seconds, concurrency = (1.0, 10) if args.quick else (10.0, 50)
    header("bench/ingress.py")
    port = free_port()
    bare = multiprocessing.get_context("spawn").Process(target=_bare_server, args=(port,), daemon=True)
    bare.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:  # until one request was answered (a busy machine may start no request within the 0.05 s)
                if asyncio.run(load(f"http://127.0.0.1:{port}/api/task/receive", 1, 0.05, "warm"))["ok"]:
                    break
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the bare aiohttp server did not answer within 10 s")
            time.sleep(0.1)
        a = asyncio.run(measured(load(f"http://127.0.0.1:{port}/api/task/receive", concurrency, seconds, "a")))
        show("(a) bare aiohttp", a)
    finally:
        bare.terminate()
        bare.join(5)
    b = durable("(b) ingress, durable", 1, concurrency, seconds, "b")
    c = durable("(c) 2 ingress processes", 2, concurrency, seconds, "c")
    print(f"ratio ingress/bare: {b['rps'] / a['rps']:.2f}  (goal >= 0.50)")
    print(f"ratio 2 processes/1: {c['rps'] / b['rps']:.2f}  (accepts/s {c['rps']:.0f} vs {b['rps']:.0f}; "
          f"2 processes / bare {c['rps'] / a['rps']:.2f})")


if __name__ == "__main__":
    main()
