"""A seeded warehouse: orders, then the shipments and cancellations it publishes for them.

Everything comes from one `random.Random(seed)`: the same seed gives the same orders, event ids,
timestamps and interleaving, so a test or a benchmark can be replayed exactly. The simulation also
says what Digital River's ledger must look like once every event is applied (`expected_ledger`).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx2

from consumer.codec.avro import event_to_json
from consumer.core.errors import InfrastructureError
from consumer.core.events import (
    NO_TRACKING,
    CancellationEvent,
    FulfillmentEvent,
    LineQuantity,
    ShipmentEvent,
    Tracking,
)

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
WAREHOUSES = ("wh_ams", "wh_chi", "wh_sin")
CARRIERS = (
    ("UPS", "https://www.ups.com/track?tracknum="),
    ("DHL", "https://www.dhl.com/track?id="),
)
CANCEL_REASONS = ("out of stock", "customer request", "damaged in warehouse", None)
MAX_EVENTS_PER_ORDER = 6

Ledger = dict[str, dict[str, tuple[int, int]]]
"""order id -> item id -> (units captured, units cancelled)."""


@dataclass(frozen=True, slots=True)
class OrderLine:
    id: str
    sku_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Order:
    id: str
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True, slots=True)
class Simulation:
    """Orders and the events about them, in publish order (orders interleaved)."""

    seed: int
    orders: tuple[Order, ...]
    events: tuple[FulfillmentEvent, ...]


@dataclass(frozen=True, slots=True)
class _Step:
    """An event without its identity and time, which are drawn when it is emitted."""

    shipment: bool
    items: tuple[LineQuantity, ...]
    tracking: Tracking
    reason: str | None


def simulate(
    orders: int,
    seed: int,
    *,
    partial_rate: float = 0.15,
    concurrency: int = 16,
    start: datetime = DEFAULT_START,
) -> Simulation:
    """`orders` orders of 1-5 lines (1-6 units each) and their events, deterministic in `seed`.

    Per order: partial shipments (some with tracking, each with its own number, some without),
    partial and final cancellations. Never more shipped + cancelled than ordered per line; about
    `1 - partial_rate` of orders end with every unit shipped or cancelled, the rest stay partial.
    Up to `concurrency` orders are open at once and their events interleave; `occurredAt` strictly
    increases from `start` in whole milliseconds.
    """
    rng = random.Random(seed)
    made = _unique(rng, orders)
    plans = [
        (order, rng.choice(WAREHOUSES), _plan(rng, order, rng.random() < partial_rate))
        for order in made
    ]
    return Simulation(seed, made, tuple(_interleave(rng, plans, concurrency, start)))


def expected_ledger(simulation: Simulation) -> Ledger:
    """Per order and line, the units Digital River should have captured and cancelled."""
    ledger: Ledger = {
        order.id: {line.id: (0, 0) for line in order.lines} for order in simulation.orders
    }
    for event in simulation.events:
        lines = ledger[event.order_id]
        for item in event.items:
            captured, cancelled = lines[item.item_id]
            if isinstance(event, ShipmentEvent):
                lines[item.item_id] = (captured + item.quantity, cancelled)
            else:
                lines[item.item_id] = (captured, cancelled + item.quantity)
    return ledger


def to_json_lines(events: Iterable[FulfillmentEvent]) -> Iterator[str]:
    """One JSON object per event (Avro field names plus `type`), the publisher's input format."""
    for event in events:
        yield json.dumps(event_to_json(event), separators=(",", ":"))


def seed_sandbox(
    base_url: str, simulation: Simulation, client: httpx2.Client, *, chunk_size: int = 200
) -> int:
    """POST the orders to the sandbox's `/_admin/orders` in chunks; the number of orders seeded.

    Raises `InfrastructureError` if the sandbox cannot be reached or refuses a chunk.
    """
    url = base_url.rstrip("/") + "/_admin/orders"
    orders = simulation.orders
    for first in range(0, len(orders), chunk_size):
        body = {"orders": [_order_json(order) for order in orders[first : first + chunk_size]]}
        try:
            client.post(url, json=body).raise_for_status()
        except httpx2.HTTPError as exc:
            raise InfrastructureError(f"seeding the sandbox at {url} failed: {exc}") from exc
    return len(orders)


def _order_json(order: Order) -> dict[str, object]:
    items = [
        {"id": line.id, "skuId": line.sku_id, "quantity": line.quantity} for line in order.lines
    ]
    return {"id": order.id, "items": items}


def _unique(rng: random.Random, count: int) -> tuple[Order, ...]:
    seen: set[str] = set()
    return tuple(_order(rng, seen) for _ in range(count))


def _order(rng: random.Random, seen: set[str]) -> Order:
    lines = tuple(
        OrderLine(_new_id(rng, "itm", seen), f"sku_{rng.randrange(1, 500):04d}", rng.randint(1, 6))
        for _ in range(rng.randint(1, 5))
    )
    return Order(_new_id(rng, "ord", seen), lines)


def _new_id(rng: random.Random, prefix: str, seen: set[str]) -> str:
    while True:
        candidate = f"{prefix}_{rng.getrandbits(64):016x}"
        if candidate not in seen:
            seen.add(candidate)
            return candidate


def _plan(rng: random.Random, order: Order, partial: bool) -> list[_Step]:
    """One order's steps; a partial order leaves some unit neither shipped nor cancelled."""
    remaining = {line.id: line.quantity for line in order.lines}
    total = sum(remaining.values())
    budget = rng.randint(1, total - 1) if partial and total > 1 else total  # units to settle
    steps: list[_Step] = []
    while budget > 0:
        open_lines = [line for line in order.lines if remaining[line.id] > 0]
        take_all = len(steps) == MAX_EVENTS_PER_ORDER - 1 or rng.random() < 0.25
        if take_all:  # the final event: everything left (within the budget)
            chosen = open_lines
        else:
            picked = rng.sample(open_lines, rng.randint(1, len(open_lines)))
            chosen = sorted(picked, key=open_lines.index)
        items: list[LineQuantity] = []
        for line in chosen:
            if budget == 0:
                break
            most = min(remaining[line.id], budget)
            quantity = most if take_all else rng.randint(1, most)
            items.append(LineQuantity(line.id, quantity))
            remaining[line.id] -= quantity
            budget -= quantity
        steps.append(_step(rng, tuple(items)))
    return steps


def _step(rng: random.Random, items: tuple[LineQuantity, ...]) -> _Step:
    if rng.random() < 0.75:
        tracking = NO_TRACKING
        if rng.random() < 0.8:
            company, url = rng.choice(CARRIERS)
            number = f"1Z{rng.getrandbits(60):015X}"
            tracking = Tracking(company, number, url + number)
        return _Step(True, items, tracking, None)
    return _Step(False, items, NO_TRACKING, rng.choice(CANCEL_REASONS))


def _interleave(
    rng: random.Random,
    plans: list[tuple[Order, str, list[_Step]]],
    concurrency: int,
    start: datetime,
) -> Iterator[FulfillmentEvent]:
    """Emit steps of a window of open orders picked at random; orders join as others finish."""
    waiting = iter(plans)
    open_orders: list[tuple[Order, str, Iterator[_Step]]] = []
    at = start
    while True:
        while len(open_orders) < max(concurrency, 1):
            joined = next(waiting, None)
            if joined is None:
                break
            order, warehouse, steps = joined
            open_orders.append((order, warehouse, iter(steps)))
        if not open_orders:
            return
        index = rng.randrange(len(open_orders))
        order, warehouse, steps_left = open_orders[index]
        step = next(steps_left, None)
        if step is None:
            del open_orders[index]
            continue
        at += timedelta(milliseconds=rng.randint(1, 5_000))
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if step.shipment:
            yield ShipmentEvent(event_id, order.id, warehouse, at, step.items, step.tracking)
        else:
            yield CancellationEvent(event_id, order.id, warehouse, at, step.items, step.reason)
