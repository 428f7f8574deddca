"""The outbox's fair pick: one customer's backlog never stands in front of another customer's first request."""

from __future__ import annotations

from persistence import outbox


def queue(key: str, customer: str, at: float) -> None:
    outbox.add(key, "analyze", f"job-{key}", {"job_id": f"job-{key}", "customer_id": customer, "url": "u"}, at)


def test_each_customers_oldest_comes_first_then_the_rest_by_age(db_url: str) -> None:
    for i in range(50):
        queue(f"flood-{i:02d}", "flooder", 100.0 + i)
    queue("calm-1", "calm", 200.0)
    queue("quiet-1", "quiet", 201.0)
    picked = outbox.pending_fair("analyze", now=1000.0, limit=4)
    assert [r.key for r in picked] == ["flood-00", "calm-1", "quiet-1", "flood-01"]


def test_customers_with_work_in_flight_wait_behind_those_without(db_url: str) -> None:
    for i in range(5):
        queue(f"flood-{i}", "flooder", 100.0 + i)
    queue("calm-1", "calm", 200.0)
    busy = frozenset({"flood-0", "flood-1"})
    picked = outbox.pending_fair("analyze", 1000.0, 2, exclude_keys=busy, busy_customers=frozenset({"flooder"}))
    assert [r.key for r in picked] == ["calm-1", "flood-2"]


def test_rows_not_due_or_not_pending_are_left(db_url: str) -> None:
    queue("a", "c1", 100.0)
    outbox.postpone(outbox.pending("analyze", 1000.0)[0].id, 100.0, 5000.0, "busy")
    queue("b", "c2", 101.0)
    outbox.mark("b", "delivered", 102.0)
    assert outbox.pending_fair("analyze", 1000.0, 10) == []
    assert [r.key for r in outbox.pending_fair("analyze", 6000.0, 10)] == ["a"]
