"""Order store: core.order.Order as JSON beside the columns queries need, saved compare-and-set like jobs."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from core.order import Order
from persistence.models import ShopOrder


class StaleOrder(Exception):
    """Another writer changed the order first: reload and decide again."""


def order_json(order: Order) -> str:
    """The order as JSON (tuples as lists)."""
    return json.dumps({f.name: list(v) if isinstance(v := getattr(order, f.name), tuple) else v
                       for f in dataclasses.fields(order)}, ensure_ascii=False)


def order_from_row(row: ShopOrder) -> Order:
    """The core Order a row holds."""
    data = json.loads(row.data)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(Order):
        if f.name in data:
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return Order(**kwargs)


def load(keys: Iterable[str]) -> list[Order]:
    """The stored orders among these keys (an order of a job from before orders has no row)."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    return [order_from_row(r) for r in ShopOrder.select().where(ShopOrder.order_key.in_(wanted))]


def of_customer(customer_id: str) -> list[Order]:
    """Every order of a customer, newest first."""
    rows = (ShopOrder.select().where(ShopOrder.customer_id == customer_id)
            .order_by(ShopOrder.created_at.desc(), ShopOrder.order_key.desc()))
    return [order_from_row(r) for r in rows]


def save(order: Order, before: int | None, now: float) -> None:
    """Write an order: insert a new one, or update it if still at version `before`; StaleOrder otherwise."""
    values = {"version": order.version, "data": order_json(order), "updated_at": now}
    if before is None:
        inserted = (ShopOrder.insert(order_key=order.order_key, customer_id=order.customer_id, created_at=now,
                                     **values).on_conflict_ignore().as_rowcount().execute())
        if inserted != 1:
            raise StaleOrder(f"order {order.order_key} already exists")
        return
    changed = (ShopOrder.update(**values)
               .where((ShopOrder.order_key == order.order_key) & (ShopOrder.version == before)).execute())
    if changed != 1:
        raise StaleOrder(f"order {order.order_key} changed since version {before}")
