"""Customer tags computed from history (SPEC §2's profile): short Chinese labels the shop's people read at a glance."""

from __future__ import annotations

from dataclasses import dataclass

REPEAT = "回头客"  # two or more paid jobs
OFTEN_REVISES = "常改稿"  # revisions ≥ 2 and at least one every other paid job
HIGH_VALUE = "高价值"  # ever paid for a text-heavy (60-80 元) job
NEW = "新客户"  # nothing paid yet
MAIL_PROBLEM = "邮箱有问题"  # a result e-mail could not be delivered
DORMANT = "久未联系"  # paid before, silent for DORMANT_DAYS

DORMANT_DAYS = 90
_DAY_S = 86_400.0


@dataclass(frozen=True)
class ProfileStats:
    """What the shop's records say of one customer; times are epoch seconds, `now` the caller's clock."""

    jobs: int
    paid_jobs: int
    completed_jobs: int
    revisions: int
    text_orders: int
    mails_failed: int
    first_seen: float
    last_seen: float
    now: float


def tags(stats: ProfileStats) -> list[str]:
    """The customer's tags, in a fixed order: 新客户/回头客, 高价值, 常改稿, 邮箱有问题, 久未联系."""
    found: list[str] = []
    if stats.paid_jobs == 0:
        found.append(NEW)
    elif stats.paid_jobs >= 2:
        found.append(REPEAT)
    if stats.text_orders >= 1:
        found.append(HIGH_VALUE)
    if stats.revisions >= 2 and stats.revisions >= 0.5 * max(stats.paid_jobs, 1):
        found.append(OFTEN_REVISES)
    if stats.mails_failed >= 1:
        found.append(MAIL_PROBLEM)
    if stats.paid_jobs >= 1 and stats.now - stats.last_seen >= DORMANT_DAYS * _DAY_S:
        found.append(DORMANT)
    return found
