"""A parked order stays parked across members, and a redrive brings it back exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx2
import pytest
from click.testing import CliRunner

from consumer.cli import main
from consumer.core.fulfillments import event_ids_of
from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.server import SandboxServer
from tests.event_builders import shipment
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import (
    admin_get,
    produce,
    sandbox_requests,
    seed_orders,
    valid_record,
)

pytestmark = pytest.mark.kafka


def _captured(sandbox_url: str) -> int:
    orders = admin_get(sandbox_url, "/_admin/ledger", orderId="ord_a")["orders"]
    return int(orders["ord_a"]["lines"]["itm_a"]["captured"]) if "ord_a" in orders else 0


def _posts(sandbox_url: str) -> list[tuple[int, frozenset[str]]]:
    return [
        (r["status"], event_ids_of(r["body"] or {}))
        for r in sandbox_requests(sandbox_url, "ord_a")
        if r["method"] == "POST"
    ]


def test_a_parked_order_stays_parked_for_the_next_member_and_a_redrive_applies_it_once(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url)
        seed_orders(sandbox.url, [("ord_a", {"itm_a": 2})])
        too_many = shipment(str(uuid.uuid4()), "ord_a", (("itm_a", 3),))  # 409: only 2 ordered
        produce(group.bootstrap, group.topic, [valid_record(too_many)])
        assert group.run_member_to_the_end(60, "the failing event is parked and committed") == 0

        # a later event of the parked order, consumed by a new member, must not overtake it
        later = shipment(str(uuid.uuid4()), "ord_a", (("itm_a", 1),))
        produce(group.bootstrap, group.topic, [valid_record(later)])
        second = group.start_member()
        wait_until(group.all_committed, 60, "the later event is settled")
        assert _posts(sandbox.url) == [(409, frozenset({too_many.event_id}))]
        assert "parked_orders_restored" in group.log_text()

        # the operator fixes the order (the sandbox now has 5 units on the line) and redrives
        httpx2.post(f"{sandbox.url}/_admin/reset", timeout=10).raise_for_status()
        seed_orders(sandbox.url, [("ord_a", {"itm_a": 5})])
        redrive = ["redrive", "--bootstrap-servers", group.bootstrap, "--topic", group.topic]
        result = CliRunner().invoke(main, [*redrive, "--order", "ord_a"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        wait_until(lambda: _captured(sandbox.url) == 4, 60, "the redriven events are applied")
        wait_until(group.all_committed, 60, "the redriven records are settled")

        # a second redrive by mistake sends nothing, and nothing is applied twice
        again = CliRunner().invoke(main, [*redrive, "--order", "ord_a"], catch_exceptions=False)
        assert again.exit_code == 0, again.output
        assert "0 record(s)" in again.output
        assert group.stop(second) == 0
        applied = [ids for status, ids in _posts(sandbox.url) if status == 201]
    assert sorted(i for ids in applied for i in ids) == sorted([too_many.event_id, later.event_id])
