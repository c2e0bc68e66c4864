"""Orders, their lines and applied fulfillments: the values and entities the ledger keeps.

Pure. `Line` and `Order` are mutable entities (the ledger updates them in place); `Fulfillment`
and `FulfilledLine` are values. `to_json` methods give the shapes Digital River's API returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ORDER_STATES = frozenset(
    {
        "accepted",
        "blocked",
        "pending_payment",
        "in_review",
        "dispute",
        "cancelled",
        "fulfilled",
        "complete",
        "returned",
    }
)


@dataclass(slots=True)
class Line:
    """An order line and the units applied to it so far (captured + cancelled <= ordered)."""

    item_id: str
    sku_id: str
    ordered: int
    captured: int = 0
    cancelled: int = 0

    @property
    def left(self) -> int:
        return self.ordered - self.captured - self.cancelled

    @property
    def state(self) -> str:
        """The line's state as `GET /orders/{id}` shows it."""
        if self.left > 0:
            return "created"
        return "fulfilled" if self.captured else "cancelled"


@dataclass(slots=True)
class Order:
    """An order; `open_lines` orders (made on first sight) accept lines not seen before."""

    id: str
    lines: dict[str, Line]
    state: str = "accepted"
    open_lines: bool = False
    done_at: float | None = None
    fulfillment_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As `GET /orders/{id}` shows it (call `state_at` first to bring the state up to date)."""
        items = [
            {
                "id": line.item_id,
                "skuId": line.sku_id,
                "quantity": line.ordered,
                "state": line.state,
            }
            for line in self.lines.values()
        ]
        return {"id": self.id, "state": self.state, "items": items}

    def state_at(self, now: float, complete_after_s: float) -> str:
        done_at = self.done_at
        if self.state == "fulfilled" and done_at is not None and now - done_at >= complete_after_s:
            self.state = "complete"
        return self.state


@dataclass(frozen=True, slots=True)
class FulfilledLine:
    item_id: str
    sku_id: str
    quantity: int
    cancel_quantity: int
    extras: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Fulfillment:
    """An applied fulfillment, as `POST`/`GET /fulfillments` return it (see `to_json`)."""

    id: str
    seq: int  # creation order across the ledger: larger is newer
    created_time: str
    order_id: str
    items: tuple[FulfilledLine, ...]
    live_mode: bool
    metadata: dict[str, Any]
    extras: tuple[tuple[str, str], ...] = ()

    def sent_field(self, name: str) -> str | None:
        """An optional top-level field as sent (`trackingNumber`, ...), or None."""
        return dict(self.extras).get(name)

    def to_json(self) -> dict[str, Any]:
        items = []
        for line in self.items:
            item: dict[str, Any] = {
                "itemId": line.item_id,
                "skuId": line.sku_id,
                "quantity": line.quantity,
                "cancelQuantity": line.cancel_quantity,
            }
            item.update(line.extras)
            items.append(item)
        body: dict[str, Any] = {
            "id": self.id,
            "createdTime": self.created_time,
            "orderId": self.order_id,
            "items": items,
            "liveMode": self.live_mode,
            "metadata": self.metadata,
        }
        body.update(self.extras)
        return body


def make_order(order_id: str, lines: Iterable[tuple[str, str, int]], state: str) -> Order:
    """A seeded order: `lines` are (item id, sku id, ordered quantity)."""
    return Order(order_id, {item: Line(item, sku, qty) for item, sku, qty in lines}, state)
