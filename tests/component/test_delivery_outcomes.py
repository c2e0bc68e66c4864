"""One batch's trip against the sandbox app in-process (no socket): every kind of answer ends in
the decision it means, and settle.py turns it into the right effects on the partition."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from structlog.testing import capture_logs

from consumer.config.settings import Secret
from consumer.core.budget import TokenBucket
from consumer.core.decisions import Applied, Park, RetryLater, Stop
from consumer.core.dispatch_log import DispatchLog
from consumer.core.events import FulfillmentEvent
from consumer.core.lanes import CoalescingPolicy
from consumer.core.outcomes import RetryPolicy
from consumer.core.partition import PartitionState
from consumer.core.settle import carry_out, effects_of
from consumer.digitalriver.client import DigitalRiverClient
from consumer.digitalriver.delivery import FulfillmentSender, Trip
from consumer.ops.metrics import Metrics
from consumer.sandbox.app import create_app
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.testing import TEST_KEY, sandbox_client
from tests.event_builders import shipment

ORDER = {"id": "ord_a", "items": [{"id": "itm_1", "quantity": 2}]}
OTHER = {"id": "ord_b", "items": [{"id": "itm_1", "quantity": 5}]}
TWO_UNITS = [shipment("evt-0", "ord_a"), shipment("evt-1", "ord_a")]


class FrozenClock:
    """The sandbox's clock: its rate limit refills only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class LostAnswer(httpx2.AsyncBaseTransport):
    """Hands the first POST to the app, then times out as if its answer never came back: the
    fulfillment exists, the client cannot know."""

    def __init__(self, app: Any) -> None:
        self._app = in_process(app)
        self.lost = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._app.handle_async_request(request)
        if request.method == "POST" and not self.lost:
            self.lost += 1
            await response.aread()
            raise httpx2.ReadTimeout("the answer was lost", request=request)
        return response


def in_process(app: Any) -> httpx2.AsyncBaseTransport:
    return httpx2.ASGITransport(app=app)


@dataclass
class Sandboxed:
    """A sender mounted on the sandbox app, its budget, and the admin side of the sandbox."""

    sender: FulfillmentSender
    budget: TokenBucket
    admin: httpx2.AsyncClient

    async def captured(self, order_id: str = "ord_a") -> int:
        orders = (await self.admin.get("/_admin/ledger")).json()["orders"]
        return int(orders[order_id]["lines"]["itm_1"]["captured"]) if order_id in orders else 0

    async def posts(self) -> int:
        stats = (await self.admin.get("/_admin/stats")).json()["byRoute"]
        return sum(stats.get("POST /fulfillments", {}).values())


@asynccontextmanager
async def mounted(
    config: SandboxConfig | None = None,
    *,
    clock: FrozenClock | None = None,
    transport: Callable[[Any], httpx2.AsyncBaseTransport] = in_process,
) -> AsyncIterator[Sandboxed]:
    app = create_app(config or SandboxConfig(strict_orders=True), clock=clock or time.monotonic)
    async with sandbox_client(app) as admin:
        seeded = await admin.post("/_admin/orders", json={"orders": [ORDER, OTHER]})
        seeded.raise_for_status()
        client = DigitalRiverClient(
            "http://sandbox.test", Secret(TEST_KEY), transport=transport(app)
        )
        budget = TokenBucket(rate=1000, burst=1000)
        sender = FulfillmentSender(
            client,
            budget,
            policy=RetryPolicy(),
            clock=time.monotonic,
            rng=random.Random(1),
            metrics=Metrics(),
        )
        try:
            yield Sandboxed(sender, budget, admin)
        finally:
            await client.aclose()


def partition_of(
    events: Sequence[FulfillmentEvent], max_events: int = 10
) -> PartitionState[object]:
    state: PartitionState[object] = PartitionState(
        0, CoalescingPolicy(max_events), committed=None, inherited=DispatchLog(0)
    )
    for offset, event in enumerate(events):
        state.lanes.add(offset, event)
    return state


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_an_accepted_batch_is_applied_with_one_post_and_settles_every_event() -> None:
    async def scenario() -> None:
        async with mounted() as sb:
            state = partition_of(TWO_UNITS)
            (batch,) = state.lanes.next_batches(0.0, 1)
            trip = await sb.sender.send(batch, 0)
            assert isinstance(trip.decision, Applied)
            assert trip.decision.fulfillment_id is not None
            assert (trip.decision.posted, trip.decision.already, trip.reads) == (
                batch.entries,
                (),
                0,
            )
            effects = effects_of(
                trip.decision, batch, duplicates=frozenset(), now=0.0, fenced_wait=1
            )
            assert effects.settle is not None
            assert effects.settle.applied == (0, 1)
            assert (await sb.captured(), await sb.posts()) == (2, 1)

    run(scenario)


def test_a_409_for_events_already_applied_settles_them_as_duplicates_after_one_look() -> None:
    async def scenario() -> None:
        async with mounted() as sb:
            state = partition_of(TWO_UNITS)
            (batch,) = state.lanes.next_batches(0.0, 1)
            first = await sb.sender.send(batch, 0)
            assert isinstance(first.decision, Applied)
            # the producer republished both events and they went again unsuspected; the dedupe
            # filter flagged them (duplicates), the 409 made the trip look
            with capture_logs() as logs:
                again = await sb.sender.send(batch, 0)
            assert again == Trip(Applied(None, (), batch.entries), reads=1)
            settled = effects_of(
                again.decision, batch, duplicates=frozenset(batch.event_ids), now=0.0, fenced_wait=1
            )
            assert settled.settle is not None
            assert (settled.settle.applied, settled.settle.duplicate) == ((), (0, 1))
            assert settled.posts == 0
            assert (await sb.captured(), await sb.posts()) == (2, 2), "the 409 captured nothing"
            already = [e for e in logs if e["event"] == "events_already_applied"]
            assert already[0]["event_ids"] == ["evt-0", "evt-1"]
            assert already[0]["code"] in {"order_fulfilled", "item_fulfilled"}

    run(scenario)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_retried_later_as_ambiguous_and_systemic_and_applies_nothing(status: int) -> None:
    async def scenario() -> None:
        faults = FaultSettings(error_rate=1.0, error_status=status)
        async with mounted(SandboxConfig(strict_orders=True, faults=faults)) as sb:
            state = partition_of(TWO_UNITS)
            (batch,) = state.lanes.next_batches(0.0, 1)
            trip = await sb.sender.send(batch, 0)
            assert isinstance(trip.decision, RetryLater)
            assert (trip.decision.status, trip.decision.ambiguous, trip.decision.systemic) == (
                status,
                True,
                True,
            )
            assert await sb.captured() == 0

    run(scenario)


def test_a_429_is_retried_after_the_retry_after_it_gave_and_pauses_the_budget() -> None:
    async def scenario() -> None:
        clock = FrozenClock()
        faults = FaultSettings(rate_limit=0.25)  # one request every 4 s
        async with mounted(SandboxConfig(strict_orders=True, faults=faults), clock=clock) as sb:
            spent = await sb.admin.post(
                "/fulfillments",
                json={"orderId": "ord_b", "items": [{"itemId": "itm_1", "quantity": 1}]},
            )
            assert spent.status_code == 201
            state = partition_of(TWO_UNITS)
            (batch,) = state.lanes.next_batches(0.0, 1)
            trip = await sb.sender.send(batch, 0)
            assert trip.decision == RetryLater(4.0, False, "rate_limited", 429, systemic=False)
            assert sb.budget.try_take(time.monotonic()) > 3.0, "nothing is sent before then"
            effects = effects_of(
                trip.decision, batch, duplicates=frozenset(), now=10.0, fenced_wait=1
            )
            assert (effects.retry_at, effects.attempts) == (14.0, "keep")
            assert await sb.captured() == 0

    run(scenario)


@pytest.mark.parametrize("lost", ["client_timeout", "apply_then_fail"])
def test_an_answer_lost_after_digital_river_applied_is_found_by_the_next_trip_s_look(
    lost: str,
) -> None:
    async def scenario() -> None:
        transport: Callable[[Any], httpx2.AsyncBaseTransport]
        if lost == "client_timeout":
            config, transport = SandboxConfig(strict_orders=True), LostAnswer
        else:  # the sandbox applies it, then answers 5xx
            faults = FaultSettings(apply_then_fail_rate=1.0)
            config, transport = SandboxConfig(strict_orders=True, faults=faults), in_process
        async with mounted(config, transport=transport) as sb:
            state = partition_of(TWO_UNITS)
            (batch,) = state.lanes.next_batches(0.0, 1)
            first = await sb.sender.send(batch, 0)
            assert isinstance(first.decision, RetryLater)
            assert first.decision.ambiguous
            assert await sb.captured() == 2, "Digital River has it; we cannot know"
            await sb.admin.put("/_admin/faults", json={"applyThenFailRate": 0})
            effects = effects_of(
                first.decision, batch, duplicates=frozenset(), now=0.0, fenced_wait=1
            )
            carry_out(effects, state, batch, 0)
            (retry,) = state.lanes.next_batches(1_000.0, 1)
            assert retry.reconcile_first, "an ambiguous failure makes the next trip look first"
            second = await sb.sender.send(retry, state.attempts["ord_a"])
            assert second == Trip(Applied(None, (), batch.entries), reads=1)
            assert (await sb.captured(), await sb.posts()) == (2, 1), "never posted twice"

    run(scenario)


@pytest.mark.parametrize(
    ("order_id", "item_id", "status", "reason"),
    [("ord_nope", "itm_1", 404, "not_found"), ("ord_a", "itm_nope", 400, "rejected")],
)
def test_a_refused_request_parks_the_order_from_that_event_on(
    order_id: str, item_id: str, status: int, reason: str
) -> None:
    async def scenario() -> None:
        async with mounted() as sb:
            refused = shipment("evt-0", order_id, ((item_id, 1),))
            later = shipment("evt-1", order_id)
            state = partition_of([refused, later], max_events=1)  # the later one stays pending
            (batch,) = state.lanes.next_batches(0.0, 1)
            trip = await sb.sender.send(batch, 0)
            assert isinstance(trip.decision, Park)
            assert (trip.decision.reason, trip.decision.status) == (reason, status)
            assert trip.decision.message, "Digital River's message goes to the parking headers"
            effects = effects_of(
                trip.decision, batch, duplicates=frozenset(), now=0.0, fenced_wait=1
            )
            parked = carry_out(effects, state, batch, 0)
            assert [e.event.event_id for e in parked] == ["evt-0", "evt-1"]
            assert state.parked[order_id].reason == reason
            assert await sb.posts() == 1

    run(scenario)


def test_a_key_digital_river_refuses_stops_the_member_and_names_the_setting() -> None:
    async def scenario() -> None:
        async with mounted(SandboxConfig(strict_orders=True, api_keys=("sk_test_another",))) as sb:
            state = partition_of(TWO_UNITS)
            (batch,) = state.lanes.next_batches(0.0, 1)
            trip = await sb.sender.send(batch, 0)
            assert isinstance(trip.decision, Stop)
            assert (trip.decision.reason, trip.decision.status) == ("unauthorized", 401)
            halt = effects_of(trip.decision, batch, duplicates=frozenset(), now=0.0, fenced_wait=1)
            assert halt.halt is not None
            assert "DR_API_KEY" in halt.halt

    run(scenario)
