"""Customer tags (core/profile.py): what the shop's people see next to a customer's name."""

from __future__ import annotations

import pytest

from core.profile import (
    DORMANT,
    DORMANT_DAYS,
    HIGH_VALUE,
    MAIL_PROBLEM,
    NEW,
    OFTEN_REVISES,
    REPEAT,
    ProfileStats,
    tags,
)

NOW = 1_800_000_000.0
DAY = 86_400.0


def stats(jobs: int = 1, paid: int = 0, completed: int = 0, revisions: int = 0, text_orders: int = 0,
          mails_failed: int = 0, last_seen: float = NOW) -> ProfileStats:
    return ProfileStats(jobs=jobs, paid_jobs=paid, completed_jobs=completed, revisions=revisions,
                        text_orders=text_orders, mails_failed=mails_failed, first_seen=NOW - 400 * DAY,
                        last_seen=last_seen, now=NOW)


def test_a_customer_who_has_paid_nothing_is_new() -> None:
    assert tags(stats(jobs=0)) == [NEW]
    assert tags(stats(jobs=3, paid=0)) == [NEW]


def test_one_paid_job_is_neither_new_nor_repeat() -> None:
    assert tags(stats(paid=1, completed=1)) == []


def test_two_paid_jobs_make_a_repeat_customer() -> None:
    assert tags(stats(jobs=2, paid=2, completed=2)) == [REPEAT]


def test_a_text_order_makes_a_high_value_customer() -> None:
    assert tags(stats(paid=1, text_orders=1)) == [HIGH_VALUE]


@pytest.mark.parametrize(
    ("paid", "revisions", "often"),
    [(1, 1, False), (1, 2, True), (4, 2, True), (5, 2, False), (6, 3, True), (10, 4, False), (2, 5, True)],
)
def test_often_revises_needs_two_revisions_and_one_every_other_paid_job(paid: int, revisions: int,
                                                                      often: bool) -> None:
    assert (OFTEN_REVISES in tags(stats(jobs=paid, paid=paid, revisions=revisions))) is often


def test_a_failed_mail_is_a_mail_problem() -> None:
    assert tags(stats(paid=1, mails_failed=1)) == [MAIL_PROBLEM]


def test_a_paying_customer_silent_for_months_is_dormant() -> None:
    assert DORMANT in tags(stats(paid=1, last_seen=NOW - DORMANT_DAYS * DAY))
    assert DORMANT not in tags(stats(paid=1, last_seen=NOW - (DORMANT_DAYS - 1) * DAY))
    assert DORMANT not in tags(stats(paid=0, last_seen=NOW - 1000 * DAY))


def test_every_tag_at_once_in_a_fixed_order() -> None:
    got = tags(stats(jobs=4, paid=3, revisions=3, text_orders=1, mails_failed=2, last_seen=NOW - 365 * DAY))
    assert got == [REPEAT, HIGH_VALUE, OFTEN_REVISES, MAIL_PROBLEM, DORMANT]
