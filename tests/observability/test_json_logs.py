"""JSON log lines (observability/json_logs.py): one object a line, carrying the ids of what each line concerns."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from observability import json_logs
from observability.json_logs import JsonFormatter, bind_process, ids_in, log_ids


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """A logger writing JSON lines to a buffer, with the record factory installed (as the launcher does)."""
    previous = logging.getLogRecordFactory()
    saved = dict(json_logs._process)
    json_logs.install_record_factory()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("shop.test_json_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(previous)
        json_logs._process.update(saved)


def parsed(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_object_with_the_ids_given_as_extra(lines: io.StringIO) -> None:
    log = logging.getLogger("shop.test_json_logs")
    log.info("task %s completed", "T1", extra={"task_id": "T1", "customer_id": "小明"})
    (line,) = parsed(lines)
    assert line["message"] == "task T1 completed" and line["level"] == "INFO"
    assert line["logger"] == "shop.test_json_logs" and line["process"] == os.getpid()
    assert line["task_id"] == "T1" and line["customer_id"] == "小明"
    assert "小明" in lines.getvalue()  # readable, not \\u-escaped
    assert line["time"][:2] == "20" and "T" in line["time"]


def test_ids_bound_while_handling_something_reach_every_line_inside_and_extra_wins(lines: io.StringIO) -> None:
    log = logging.getLogger("shop.test_json_logs")
    with log_ids(job_id="J1", customer_id="c1", send_id=None):
        log.info("rendering")
        log.info("one for another job", extra={"job_id": "J2"})
    log.info("after")
    inside, other, after = parsed(lines)
    assert (inside["job_id"], inside["customer_id"]) == ("J1", "c1") and "send_id" not in inside
    assert (other["job_id"], other["customer_id"]) == ("J2", "c1")
    assert "job_id" not in after and "customer_id" not in after


def test_a_process_bound_to_a_customer_names_it_and_its_actor_on_every_line(lines: io.StringIO) -> None:
    bind_process("conversation:c9", customer_id="c9")
    logging.getLogger("shop.test_json_logs").warning("stale commit")
    (line,) = parsed(lines)
    assert line["actor"] == "conversation:c9" and line["customer_id"] == "c9"


def test_a_forked_child_does_not_carry_its_parents_binding(lines: io.StringIO, tmp_path: os.PathLike) -> None:
    bind_process("launcher")
    out = os.path.join(tmp_path, "child.json")
    pid = os.fork()
    if pid == 0:  # the child formats one record to a file and leaves at once
        try:
            record = logging.getLogger("shop.test_json_logs").makeRecord("shop.x", logging.INFO, "f", 1, "hi", (), None)
            with open(out, "w") as f:
                f.write(JsonFormatter().format(record))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    with open(out) as f:
        child = json.loads(f.read())
    assert child["process"] == pid and "actor" not in child


def test_an_exception_is_one_field_and_the_line_stays_one_line(lines: io.StringIO) -> None:
    log = logging.getLogger("shop.test_json_logs")
    try:
        raise ValueError("bad photo")
    except ValueError:
        log.exception("render failed", extra={"job_id": "J3"})
    text = lines.getvalue()
    assert text.count("\n") == 1
    (line,) = parsed(lines)
    assert line["level"] == "ERROR" and line["job_id"] == "J3"
    assert line["exception"].startswith("Traceback") and "ValueError: bad photo" in line["exception"]


def test_ids_in_picks_the_ids_out_of_a_payload() -> None:
    assert ids_in({"job_id": "J1", "customer_id": "c1", "url": "http://x", "send_id": ""}) == {
        "job_id": "J1", "customer_id": "c1"}
