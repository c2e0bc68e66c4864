"""Ledger arithmetic as properties: whatever is asked, no line is ever over-fulfilled."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.sandbox.errors import ApiError
from consumer.sandbox.ledger import Ledger
from consumer.sandbox.orders import make_order
from consumer.sandbox.validation import FulfillmentRequest, parse_fulfillment_request

ITEMS = ("itm_a", "itm_b", "itm_c")

ordered_lines = st.dictionaries(st.sampled_from(ITEMS), st.integers(1, 5), min_size=1)
quantity = st.one_of(st.none(), st.integers(-1, 4))
request_item = st.fixed_dictionaries(
    {"itemId": st.sampled_from((*ITEMS, "itm_unknown"))},
    optional={"quantity": quantity, "cancelQuantity": quantity},
)
request_bodies = st.lists(
    st.builds(
        lambda items: {"orderId": "ord_1", "items": items},
        st.lists(request_item, min_size=1, max_size=3),
    ),
    max_size=25,
)


def snapshot(ledger: Ledger) -> dict[str, tuple[int, int, int]]:
    lines = ledger.orders["ord_1"].lines.values()
    return {line.item_id: (line.ordered, line.captured, line.cancelled) for line in lines}


def expected_refusal(ledger: Ledger, request: FulfillmentRequest) -> bool:
    """A reference model of the rules: refuse iff the order is closed, an item is unknown, or a
    line (counting repeats within the request) would get more than it has left."""
    order = ledger.orders["ord_1"]
    if order.state != "accepted":
        return True
    asked: Counter[str] = Counter()
    for line in request.lines:
        if line.item_id not in order.lines:
            return True
        asked[line.item_id] += line.quantity + line.cancel_quantity
    return any(asked[item] > order.lines[item].left for item in asked)


def parsed(body: dict[str, Any]) -> FulfillmentRequest | None:
    try:
        return parse_fulfillment_request(body)
    except ApiError:
        return None


def attempt(ledger: Ledger, request: FulfillmentRequest, step: int) -> ApiError | None:
    """Apply `request`; the refusal, or None when it was applied."""
    try:
        ledger.apply(
            request,
            now=float(step),
            live_mode=False,
            fulfillment_id=f"ful_{step}",
            created_time="2024-01-01T00:00:00Z",
        )
    except ApiError as error:
        return error
    return None


@settings(max_examples=200, deadline=None)
@given(ordered_lines, request_bodies)
def test_no_sequence_of_requests_over_fulfils_a_line_or_half_applies_one(
    lines: dict[str, int], bodies: list[dict[str, Any]]
) -> None:
    ledger = Ledger(strict_orders=True, lenient_quantity=10, complete_after_s=60)
    ledger.seed(make_order("ord_1", [(i, f"sku_{i}", n) for i, n in lines.items()], "accepted"))
    for step, body in enumerate(bodies):
        request = parsed(body)
        if request is None:
            continue
        before = snapshot(ledger)
        refuse = expected_refusal(ledger, request)
        refusal = attempt(ledger, request, step)
        if refusal is not None:
            assert refuse, f"refused a request the rules allow: {refusal}"
            assert snapshot(ledger) == before, "a refused request changed the ledger"
            continue
        assert not refuse, "applied a request the rules refuse"
        for ordered, shipped, cancelled in snapshot(ledger).values():
            assert shipped >= 0
            assert cancelled >= 0
            assert shipped + cancelled <= ordered
    sums: Counter[tuple[str, str]] = Counter()
    for fulfillment in ledger.fulfillments:
        for item in fulfillment.items:
            sums[(item.item_id, "captured")] += item.quantity
            sums[(item.item_id, "cancelled")] += item.cancel_quantity
    for item_id, (_, shipped, cancelled) in snapshot(ledger).items():
        assert (sums[(item_id, "captured")], sums[(item_id, "cancelled")]) == (shipped, cancelled)


@settings(max_examples=100, deadline=None)
@given(ordered_lines, request_bodies)
def test_an_order_is_open_exactly_while_some_line_has_units_left(
    lines: dict[str, int], bodies: list[dict[str, Any]]
) -> None:
    ledger = Ledger(strict_orders=True, lenient_quantity=10, complete_after_s=60)
    ledger.seed(make_order("ord_1", [(i, f"sku_{i}", n) for i, n in lines.items()], "accepted"))
    for step, body in enumerate(bodies):
        request = parsed(body)
        if request is not None:
            attempt(ledger, request, step)
        order = ledger.orders["ord_1"]
        left = sum(line.left for line in order.lines.values())
        shipped = sum(line.captured for line in order.lines.values())
        expected = "accepted" if left else ("fulfilled" if shipped else "cancelled")
        assert order.state == expected
