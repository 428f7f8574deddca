"""The counters kept by the processes that see the events, and the registry /metrics serves them from.

Requests, Gemini calls and restarts happen in different forked processes (the ingress, render workers
and the gateway, Root and the pools, the launcher); their counters live in prometheus-client's
multiprocess files (see observability/metrics_files.py) and are added up at scrape time. What the
database already records is counted there at scrape time instead, by a collector the web layer passes
in (web/metrics.py), so it survives any restart and SIGKILL.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from observability.metrics_files import ENV

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
DELETED = Counter("shop_deleted_total", "What the shop deleted so as not to keep it, by what it was and why "
                  "(retention, compaction, sensitive, forget)", ["what", "why"], registry=None)
OWN = (HTTP_REQUESTS, HTTP_DURATION, INGRESS_REQUESTS, GEMINI_CALLS, GEMINI_ERRORS, ACTOR_RESTARTS, DELETED)

GEMINI_CALL_NAMES = ("render", "score_quality", "detect_text", "assess_risk", "phrase")
# The kinds of failure the Gemini client names (integrations/gemini.py, each error's `kind`), and "other".
GEMINI_ERROR_KINDS = ("rate_limited", "server_error", "timeout", "unreachable", "malformed_response",
                      "safety_blocked", "request_rejected", "other")
# What is deleted and why: photos (customers' originals), results (rendered files and previews), thumbnails, mails
# (the file mailer's .eml), messages, outbox rows, job events, customer events, login failures, customers.
DELETED_SERIES = tuple((what, why) for why, kinds in (
    ("retention", ("photos", "results", "thumbnails", "mails", "messages", "customer_events")),
    ("compaction", ("photos", "results", "thumbnails", "outbox_rows", "job_events", "customer_events",
                    "login_failures")),
    ("sensitive", ("photos",)),
    ("forget", ("photos", "results", "thumbnails", "mails", "messages", "customers")),
) for what in kinds)
# Root's children, the actors the pools replace, and the whole system: every kind starts at 0.
RESTART_KINDS = ("scheduler", "gateway", "conversations", "renderer", "dispatch", "ingress", "conversation",
                 "render_worker", "system")


def counted(call: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs), counted as one request of call to Gemini and, when it raises, as one failure of the
    error's kind (its ``kind``, else "other")."""
    GEMINI_CALLS.labels(call).inc()
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        kind = getattr(exc, "kind", "other")
        GEMINI_ERRORS.labels(call, kind if kind in GEMINI_ERROR_KINDS else "other").inc()
        raise


def declare_series() -> None:
    """Create every known series at 0, so a rate is defined before the first event of its kind."""
    for call in GEMINI_CALL_NAMES:
        GEMINI_CALLS.labels(call)
        for kind in GEMINI_ERROR_KINDS:
            GEMINI_ERRORS.labels(call, kind)
    for kind in RESTART_KINDS:
        ACTOR_RESTARTS.labels(kind)
    for what, why in DELETED_SERIES:
        DELETED.labels(what, why)


def registry(*collectors: Collector) -> CollectorRegistry:
    """What /metrics serves: every process's counters (or this process's alone, without the multiprocess
    directory) and the given collectors' figures."""
    reg = CollectorRegistry()
    if os.environ.get(ENV):
        MultiProcessCollector(reg)
    else:
        for metric in OWN:
            reg.register(metric)
    for collector in collectors:
        reg.register(collector)
    declare_series()
    return reg
