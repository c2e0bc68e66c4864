"""One batch's trip when the member may have lost its partition, or Digital River refuses to
list the order: no POST goes out, nothing waits forever. Digital River is mocked in-process.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import httpx2

from consumer.config.settings import Secret
from consumer.core.budget import TokenBucket
from consumer.core.decisions import Fenced, Park, RetryLater
from consumer.core.lanes import Batch, PendingEvent
from consumer.core.outcomes import RetryPolicy
from consumer.digitalriver.client import DigitalRiverClient
from consumer.digitalriver.delivery import FulfillmentSender, Trip
from consumer.ops.metrics import Metrics
from tests.event_builders import shipment

KEY = "sk_test_FencingComponentKey"


def _batch(*, reconcile_first: bool) -> Batch:
    entries = (PendingEvent(7, shipment("e-1", "ord_a")), PendingEvent(8, shipment("e-2", "ord_a")))
    return Batch(0, "ord_a", entries, reconcile_first=reconcile_first)


def _error(status: int, kind: str, code: str) -> httpx2.Response:
    body = {"type": kind, "errors": [{"code": code, "parameter": "orderId", "message": "no"}]}
    return httpx2.Response(status, json=body)


class FakeDigitalRiver:
    """Answers GET /fulfillments with `listing` and POST /fulfillments with 201; keeps requests."""

    def __init__(self, listing: httpx2.Response | None = None) -> None:
        self.requests: list[httpx2.Request] = []
        self._listing = listing

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.method == "GET":
            return self._listing or httpx2.Response(200, json={"data": [], "hasMore": False})
        return httpx2.Response(201, json={"id": f"ful_{len(self.requests)}", "items": []})

    @property
    def posts(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST")


def _send(fake: FakeDigitalRiver, batch: Batch, may_act: Callable[[], bool] | None = None) -> Trip:
    async def scenario() -> Trip:
        dr = DigitalRiverClient("http://dr.test", Secret(KEY), transport=httpx2.MockTransport(fake))
        sender = FulfillmentSender(
            dr,
            TokenBucket(rate=1000, burst=100),
            policy=RetryPolicy(),
            clock=time.monotonic,
            rng=random.Random(1),
            metrics=Metrics(),
        )
        if may_act is not None:
            sender.fence_with(may_act)
        try:
            return await sender.send(batch, 0)
        finally:
            await dr.aclose()

    return asyncio.run(scenario())


def test_a_member_whose_lease_ended_posts_nothing() -> None:
    fake = FakeDigitalRiver()
    trip = _send(fake, _batch(reconcile_first=False), lambda: False)
    assert trip == Trip(Fenced(), reads=0)
    assert fake.requests == []


def test_a_listing_is_not_acted_on_when_the_lease_ended_while_it_was_read() -> None:
    fake = FakeDigitalRiver()
    trip = _send(fake, _batch(reconcile_first=True), lambda: False)
    assert trip == Trip(Fenced(), reads=1)
    assert [r.method for r in fake.requests] == ["GET"], "read, then nothing acted on"


def test_with_a_valid_lease_the_batch_is_posted() -> None:
    fake = FakeDigitalRiver()
    trip = _send(fake, _batch(reconcile_first=True), lambda: True)
    assert not isinstance(trip.decision, Fenced)
    assert [r.method for r in fake.requests] == ["GET", "POST"]


def test_a_reconcile_read_answered_404_parks_the_order_instead_of_retrying() -> None:
    fake = FakeDigitalRiver(_error(404, "not_found", "not_found"))
    decision = _send(fake, _batch(reconcile_first=True)).decision
    assert isinstance(decision, Park)
    assert (decision.reason, decision.status) == ("reconcile_read_refused", 404)
    assert decision.already == ()
    assert fake.posts == 0


def test_a_reconcile_read_answered_400_parks_the_order_instead_of_retrying() -> None:
    fake = FakeDigitalRiver(_error(400, "bad_request", "invalid_parameter"))
    decision = _send(fake, _batch(reconcile_first=True)).decision
    assert isinstance(decision, Park)
    assert decision.status == 400
    assert fake.posts == 0


def test_a_reconcile_read_answered_429_is_retried_not_parked() -> None:
    fake = FakeDigitalRiver(httpx2.Response(429, headers={"Retry-After": "2"}, json={}))
    decision = _send(fake, _batch(reconcile_first=True)).decision
    assert isinstance(decision, RetryLater)
    assert (decision.status, decision.delay) == (429, 2.0)
    assert fake.posts == 0
