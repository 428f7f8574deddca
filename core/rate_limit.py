"""Per-customer admission of inbound messages: a token bucket each, so a flood waits its turn.

A customer may send `burst` messages at once and `rate_per_min` a minute after that. What comes over
the limit is not dropped: it is already stored (and acknowledged) and waits in the database, oldest
first; `release` lets it through as the bucket refills, all that the tokens allow at a time, so the
conversation answers it as one burst. Everybody else's messages are admitted as they come.

Messages are known by their stored id, which grows with arrival. `admitted_upto` is the highest id let
through: a message at or below it is a re-send of admitted work (a sweep, a restarted actor) and costs
nothing; above it, once a customer is deferred, messages only pass through `release`, so none overtakes
an older one. Pure: the caller passes the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float
    admitted_upto: int = 0
    deferred: bool = False


class CustomerLimiter:
    """The buckets of every customer seen lately."""

    def __init__(self, rate_per_min: float, burst: int) -> None:
        if rate_per_min <= 0 or burst < 1:
            raise ValueError("rate_per_min must be positive and burst at least 1")
        self.per_s, self.burst = rate_per_min / 60.0, burst
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, customer_id: str, now: float) -> _Bucket:
        b = self._buckets.get(customer_id)
        if b is None:
            b = self._buckets[customer_id] = _Bucket(tokens=float(self.burst), at=now)
        else:
            b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.at) * self.per_s)
            b.at = now
        return b

    def admit(self, customer_id: str, ids: Iterable[int], now: float) -> list[int]:
        """Of these newly routed message ids, the ones to deliver now (in order); the rest wait stored."""
        b = self._bucket(customer_id, now)
        ids = sorted(set(ids))
        resent = [i for i in ids if i <= b.admitted_upto]
        fresh = [i for i in ids if i > b.admitted_upto]
        if b.deferred or not fresh:
            return resent  # what is newer waits behind the customer's older deferred messages
        return resent + self._take(b, fresh, more_waiting=False)

    def release(self, customer_id: str, waiting: list[int], more_waiting: bool, now: float) -> list[int]:
        """For a deferred customer: of their oldest waiting ids (more_waiting: others wait beyond these),
        the ones to deliver now. The customer is no longer deferred once all are through."""
        b = self._bucket(customer_id, now)
        fresh = sorted(i for i in set(waiting) if i > b.admitted_upto)
        if not fresh and not more_waiting:
            b.deferred = False
            return []
        return self._take(b, fresh, more_waiting)

    def _take(self, b: _Bucket, fresh: list[int], more_waiting: bool) -> list[int]:
        n = min(len(fresh), int(b.tokens))
        b.tokens -= n
        if n:
            b.admitted_upto = fresh[n - 1]
        b.deferred = n < len(fresh) or more_waiting
        return fresh[:n]

    def ready(self, now: float) -> list[str]:
        """Deferred customers whose bucket holds at least one token now."""
        return [c for c, b in self._buckets.items()
                if b.deferred and b.tokens + max(0.0, now - b.at) * self.per_s >= 1.0]

    def deferred(self) -> dict[str, int]:
        """Every deferred customer with the highest id admitted so far."""
        return {c: b.admitted_upto for c, b in self._buckets.items() if b.deferred}

    def admitted_upto(self, customer_id: str) -> int:
        """The highest id let through for this customer (0 if none lately)."""
        b = self._buckets.get(customer_id)
        return b.admitted_upto if b is not None else 0

    def forget_idle(self, now: float) -> None:
        """Drop the buckets that are full again and hold nothing back: they carry no state worth keeping."""
        for c in [c for c, b in self._buckets.items()
                  if not b.deferred and b.tokens + max(0.0, now - b.at) * self.per_s >= self.burst]:
            del self._buckets[c]

    def __len__(self) -> int:
        return len(self._buckets)
