"""The figures /metrics reads from the database at scrape time: tasks, messages, jobs, renders, hand-offs, outbox
and timers, counted where they are recorded, so they survive any restart and SIGKILL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from persistence import figures, retention, scheduling
from protocol.image import JobState, Operation
from protocol.tianwang import TaskStatus

log = logging.getLogger("shop.metrics")

OUTBOX_KINDS = ("im_send", "callback", "analyze", "find", "render", "mail", "staff")
TIMER_OWNERS = (scheduling.OWNER, retention.OWNER)
DB_MIN_INTERVAL_S = 1.0


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
