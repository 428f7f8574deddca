"""GET /metrics on the ingress (Prometheus text format), and the middleware that counts every request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from observability import metrics
from web.database_metrics import DatabaseCollector

REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
SCRAPER = web.AppKey("metrics_scraper", ThreadPoolExecutor)
INGRESS = web.AppKey("metrics_ingress", str)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"  # every path no route serves: raw paths would make one series per probe


def install(app: web.Application, ingress: str = "ingress") -> None:
    """Count every request (as the outermost middleware, so it sees the final status) and serve GET /metrics;
    ingress names the process serving app (INGRESS_PROCESSES)."""
    app.middlewares.insert(0, count_requests)
    app[INGRESS] = ingress
    app[REGISTRY] = metrics.registry(DatabaseCollector())
    # One scrape at a time, off the loop: it reads the database and every process's counter files.
    app[SCRAPER] = ThreadPoolExecutor(1, thread_name_prefix="metrics")
    app.on_cleanup.append(_stop_scraper)
    app.router.add_get("/metrics", serve_metrics)


async def _stop_scraper(app: web.Application) -> None:
    app[SCRAPER].shutdown(wait=False)


def route_of(request: web.Request) -> str:
    """The route pattern that served the request ("/api/task/status/{task_id}"), not its raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def count_requests(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
    """shop_http_requests_total, shop_http_request_duration_seconds and shop_ingress_requests_total for every
    answered request."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away before the answer (nginx's code for it)
        raise
    finally:
        method = request.method if request.method in METHODS else "other"
        route = route_of(request)
        metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        metrics.HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)
        metrics.INGRESS_REQUESTS.labels(request.app[INGRESS]).inc()


async def serve_metrics(request: web.Request) -> web.Response:
    """GET /metrics: every counter and database figure in Prometheus text format."""
    body = await asyncio.get_running_loop().run_in_executor(request.app[SCRAPER], generate_latest,
                                                            request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
