"""Log lines that say what they concern: the task, customer, job or send id, as JSON when LOG_FORMAT=json.

Ids come from three places, the first found winning: `extra=` on the call, the context an actor
binds while it handles one thing (:func:`log_ids`), and the process's own (:func:`bind_process`; a
conversation actor's process serves one customer). They are captured when the record is created,
in the process that logs it: Thespian forwards actors' records to its logger process, where the
formatter runs with none of that context, and it forbids adding handlers or filters in actor
processes; a record factory, set before the fork, is inherited by all of them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

IDS = ("task_id", "customer_id", "job_id", "send_id")
_CONTEXT = "shop_context"  # the record attribute holding the ids and actor captured at creation

_bound: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("shop_log_ids", default=None)
_process: dict[str, Any] = {"pid": None, "ids": {}}


@contextlib.contextmanager
def log_ids(**ids: str | None) -> Iterator[None]:
    """Lines logged inside carry these ids (None and empty values are left out)."""
    token = _bound.set({**(_bound.get() or {}), **{k: str(v) for k, v in ids.items() if v}})
    try:
        yield
    finally:
        _bound.reset(token)


def ids_in(values: Mapping[str, Any]) -> dict[str, str]:
    """The ids among these values (a route's match_info, a work item's payload), for `extra=` or :func:`log_ids`."""
    return {k: str(values[k]) for k in IDS if values.get(k)}


def bind_process(actor: str, **ids: str | None) -> None:
    """Every line this process logs names this actor (and these ids); a forked child does not inherit it."""
    _process.update(pid=os.getpid(), ids={"actor": actor, **{k: str(v) for k, v in ids.items() if v}})


def install_record_factory() -> None:
    """Capture the bound ids on every record this process (and every process forked from it) creates."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "shop_ids", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        own = _process["ids"] if _process["pid"] == os.getpid() else {}
        bound = _bound.get()
        if own or bound:
            setattr(record, _CONTEXT, {**own, **(bound or {})})
        return record

    factory.shop_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, process, actor, the ids, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        context = getattr(record, _CONTEXT, None) or {}
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        actor = getattr(record, "actor", None) or context.get("actor")
        if actor:
            line["actor"] = actor
        for name in IDS:
            value = getattr(record, name, None) or context.get(name)
            if value:
                line[name] = str(value)
        # Thespian formats an actor's traceback into exc_text before forwarding the record.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
