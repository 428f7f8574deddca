"""What /metrics reports: counters kept by the processes that see the events, and figures read from the database.

Requests, Gemini calls and restarts happen in different forked processes (the ingress, render workers
and the gateway, Root and the pools, the launcher); their counters live in prometheus-client's
multiprocess files (see actors/metrics_files.py) and are added up at scrape time. Everything the
database already records (tasks, messages, jobs, hand-offs, outbox, timers) is counted there at
scrape time instead, so it survives any restart and SIGKILL.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from actors.metrics_files import ENV
from integrations import gemini
from persistence import figures
from protocol.image import JobState, Operation, RiskVerdict
from protocol.tianwang import TaskStatus

log = logging.getLogger("shop.metrics")

T = TypeVar("T")

HTTP_REQUESTS = Counter("shop_http_requests_total", "HTTP requests answered by the ingress, by route pattern "
                        "and status", ["method", "route", "status"], registry=None)
HTTP_DURATION = Histogram("shop_http_request_duration_seconds", "Time to answer an HTTP request, by route pattern",
                          ["method", "route"], registry=None)
INGRESS_REQUESTS = Counter("shop_ingress_requests_total", "HTTP requests answered, by ingress process "
                           "(ingress, ingress-2, … with INGRESS_PROCESSES > 1)", ["ingress"], registry=None)
GEMINI_CALLS = Counter("shop_gemini_calls_total", "Requests made to Gemini (each retry counts), by call",
                       ["call"], registry=None)
GEMINI_ERRORS = Counter("shop_gemini_errors_total", "Gemini requests that failed, by call and kind of error",
                        ["call", "kind"], registry=None)
ACTOR_RESTARTS = Counter("shop_actor_restarts_total", "Actors restarted after they died, by kind ('system': the "
                         "launcher restarted the whole actor system)", ["kind"], registry=None)
OWN = (HTTP_REQUESTS, HTTP_DURATION, INGRESS_REQUESTS, GEMINI_CALLS, GEMINI_ERRORS, ACTOR_RESTARTS)

GEMINI_CALL_NAMES = ("render", "score_quality", "detect_text", "assess_risk", "phrase")
GEMINI_ERROR_KINDS: dict[type[gemini.GeminiError], str] = {
    gemini.RateLimited: "rate_limited", gemini.ServerError: "server_error", gemini.GeminiTimeout: "timeout",
    gemini.Unreachable: "unreachable", gemini.MalformedResponse: "malformed_response",
    gemini.SafetyBlocked: "safety_blocked", gemini.RequestRejected: "request_rejected",
}
# Root's children, the actors the pools replace, and the whole system: every kind starts at 0.
RESTART_KINDS = ("scheduler", "gateway", "conversations", "renderer", "dispatch", "ingress", "conversation",
                 "render_worker", "system")
OUTBOX_KINDS = ("im_send", "callback", "analyze", "find", "render", "mail", "staff")
TIMER_OWNERS = ("scheduler",)
DB_MIN_INTERVAL_S = 1.0


def error_kind(exc: BaseException) -> str:
    """The label of a Gemini failure."""
    return next((kind for cls, kind in GEMINI_ERROR_KINDS.items() if isinstance(exc, cls)), "other")


class MeteredGeminiClient(gemini.GeminiClient):
    """The Gemini client with every request, and every failure by kind, counted."""

    def render(self, *args: Any, **kwargs: Any) -> tuple[bytes, str]:
        return _counted("render", super().render, *args, **kwargs)

    def score_quality(self, *args: Any, **kwargs: Any) -> tuple[int, str]:
        return _counted("score_quality", super().score_quality, *args, **kwargs)

    def detect_text(self, *args: Any, **kwargs: Any) -> tuple[bool, str]:
        return _counted("detect_text", super().detect_text, *args, **kwargs)

    def assess_risk(self, *args: Any, **kwargs: Any) -> tuple[RiskVerdict, str]:
        return _counted("assess_risk", super().assess_risk, *args, **kwargs)

    def phrase(self, *args: Any, **kwargs: Any) -> str:
        return _counted("phrase", super().phrase, *args, **kwargs)


def _counted(call: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    GEMINI_CALLS.labels(call).inc()
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        GEMINI_ERRORS.labels(call, error_kind(exc)).inc()
        raise


def declare_series() -> None:
    """Create every known series at 0, so a rate is defined before the first event of its kind."""
    for call in GEMINI_CALL_NAMES:
        GEMINI_CALLS.labels(call)
        for kind in [*GEMINI_ERROR_KINDS.values(), "other"]:
            GEMINI_ERRORS.labels(call, kind)
    for kind in RESTART_KINDS:
        ACTOR_RESTARTS.labels(kind)


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time; at most one read per DB_MIN_INTERVAL_S however often scraped."""

    def __init__(self, read: Callable[[], figures.Figures] = figures.read, min_interval_s: float = DB_MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._min_interval_s, self._clock = read, min_interval_s, clock
        self._lock = threading.Lock()
        self._last: tuple[float, figures.Figures] | None = None

    def _figures(self) -> figures.Figures:
        with self._lock:
            if self._last is None or self._clock() - self._last[0] >= self._min_interval_s:
                self._last = (self._clock(), self._read())
            return self._last[1]

    def collect(self) -> Iterator[Metric]:
        """The database's figures as metric families; only shop_database_up 0 when it cannot be read."""
        up = GaugeMetricFamily("shop_database_up", "1 if the database answered the figures' queries")
        try:
            f = self._figures()
        except Exception as exc:
            log.warning("metrics: the database did not answer (%s: %s)", type(exc).__name__, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _gauge("shop_tianwang_tasks", "Tianwang tasks by status", "status", f.tasks_by_status,
                     [s.value for s in TaskStatus])
        messages = CounterMetricFamily("shop_customer_messages", "Customer messages received from the IM bridge")
        messages.add_metric([], f.customer_messages)
        yield messages
        yield _gauge("shop_image_jobs", "Image jobs by state", "state", f.jobs_by_state, [s.value for s in JobState])
        attempts = CounterMetricFamily("shop_render_attempts", "Finished render attempts, by renderer and outcome",
                                       labels=["source", "outcome"])
        for source in ("gemini", "local"):
            for outcome in ("done", "failed"):
                attempts.add_metric([source, outcome], f.render_attempts.get((source, outcome), 0))
        yield attempts
        calls = CounterMetricFamily("shop_image_model_calls", "Image-model calls answered with an image (billed), "
                                    "by operation; the total is their sum", labels=["operation"])
        for op in Operation:
            calls.add_metric([op.value], f.image_model_calls.get(op.value, 0))
        yield calls
        total = CounterMetricFamily("shop_image_model_calls_all", "Image-model calls answered with an image, all "
                                    "operations")
        total.add_metric([], sum(f.image_model_calls.values()))
        yield total
        created = CounterMetricFamily("shop_handoffs", "Hand-offs to designers created (one dispatch task each), "
                                      "by rule", labels=["rule"])
        for rule, count in sorted(f.handoffs_by_rule.items()):
            created.add_metric([rule], count)
        yield created
        tasks = CounterMetricFamily("shop_dispatch_tasks", "Tasks created in the designer dispatch system")
        tasks.add_metric([], f.dispatch_tasks_created)
        yield tasks
        yield _gauge("shop_handoffs_in_status", "Hand-offs to designers by status", "status", f.handoffs_by_status,
                     ["new", "queued", "assigned", "completed"])
        yield _gauge("shop_outbox_pending", "Side effects waiting in the outbox, by kind", "kind", f.outbox_pending,
                     OUTBOX_KINDS)
        now = time.time()
        oldest = {kind: max(0.0, now - at) for kind, at in f.outbox_oldest_pending_at.items()}
        yield _gauge("shop_outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row, by kind", "kind",
                     oldest, OUTBOX_KINDS)
        yield _gauge("shop_timers_pending", "Durable timers armed, by owner", "owner", f.timers_by_owner,
                     TIMER_OWNERS)


def _gauge(name: str, doc: str, label: str, values: dict[str, Any], known: Any) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key in sorted({*known, *values}):
        family.add_metric([key], values.get(key, 0))
    return family


def registry() -> CollectorRegistry:
    """What /metrics serves: every process's counters (or this process's alone, without the multiprocess
    directory) and the database's figures."""
    reg = CollectorRegistry()
    if os.environ.get(ENV):
        MultiProcessCollector(reg)
    else:
        for metric in OWN:
            reg.register(metric)
    reg.register(DatabaseCollector())
    declare_series()
    return reg
