"""Parking that holds: a refused coalesced batch parks only from the failing event; parked
records live in the parking partition of their source partition; redrive loses nothing."""

from __future__ import annotations

import subprocess
import time
import uuid
import zlib
from collections.abc import Callable

import httpx2
import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at runtime, not in the stubs
    AdminClient,
    NewTopic,
)

from consumer.cli import main
from consumer.core.deadletters import REDRIVEN_HEADER
from consumer.core.events import FulfillmentEvent
from consumer.core.fulfillments import event_ids_of
from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.redrive import mark_redriven, read_parked, read_through, republish, select
from tests.event_builders import shipment
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import (
    admin_get,
    produce,
    read_topic,
    sandbox_requests,
    seed_orders,
    valid_record,
)

pytestmark = pytest.mark.kafka


def _id() -> str:
    return str(uuid.uuid4())


def _captured(sandbox_url: str, order_id: str, item_id: str) -> int:
    orders = admin_get(sandbox_url, "/_admin/ledger", orderId=order_id)["orders"]
    return int(orders[order_id]["lines"][item_id]["captured"]) if order_id in orders else 0


def _applied_ids(sandbox_url: str, order_id: str) -> set[str]:
    return {
        event_id
        for r in sandbox_requests(sandbox_url, order_id)
        if r["method"] == "POST" and r["status"] == 201
        for event_id in event_ids_of(r["body"] or {})
    }


def test_a_refused_coalesced_batch_applies_the_events_before_the_failing_one_and_parks_the_rest(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url)
        seed_orders(sandbox.url, [("ord_a", {"itm_a": 3})])
        fits = [shipment(_id(), "ord_a", (("itm_a", 1),)) for _ in range(2)]
        too_many = shipment(_id(), "ord_a", (("itm_a", 2),))  # 1 + 1 + 2 > 3
        behind = shipment(_id(), "ord_a", (("itm_a", 1),))
        events = [*fits, too_many, behind]
        produce(group.bootstrap, group.topic, [valid_record(e) for e in events])
        member = group.start_member()  # all four are pending together: one coalesced POST
        wait_until(group.all_committed, 90, "every record is settled")
        assert group.stop(member) == 0

        assert _captured(sandbox.url, "ord_a", "itm_a") == 2
        assert _applied_ids(sandbox.url, "ord_a") == {e.event_id for e in fits}
        parked = read_topic(group.bootstrap, f"{group.topic}.parked")
        assert [r.value for r in parked] == [valid_record(e).value for e in (too_many, behind)]
        assert "refused_batch_split" in group.log_text()


def _produce_to(bootstrap: str, topic: str, partition: int, events: list[FulfillmentEvent]) -> None:
    """As a producer whose partitioner is not librdkafka's (Java's murmur2) would: the record
    lands in `partition`, which is not the one librdkafka's hash of the key picks."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for event in events:
        record = valid_record(event)
        producer.produce(topic, value=record.value, key=record.key, partition=partition)
    assert producer.flush(30) == 0


def _settled(group: Group, partition: int) -> Callable[[], bool]:
    return lambda: group.committed()[partition] == group.end_offsets()[partition]


def test_an_order_parked_from_a_foreign_partitioner_stays_parked_for_the_next_member(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(3, sandbox.url)
        seed_orders(sandbox.url, [("ord_a", {"itm_a": 2})])
        hashed = zlib.crc32(b"ord_a") % 3  # librdkafka's consistent_random partitioner
        foreign = (hashed + 1) % 3
        too_many = shipment(_id(), "ord_a", (("itm_a", 3),))  # 409: only 2 ordered
        _produce_to(group.bootstrap, group.topic, foreign, [too_many])
        first = group.start_member()
        wait_until(_settled(group, foreign), 60, "the failing event is parked and committed")
        assert group.stop(first) == 0
        parked = read_topic(group.bootstrap, f"{group.topic}.parked")
        assert [r.partition for r in parked] == [foreign], "parked in its source's partition"

        later = shipment(_id(), "ord_a", (("itm_a", 1),))
        _produce_to(group.bootstrap, group.topic, foreign, [later])
        second = group.start_member()
        wait_until(_settled(group, foreign), 60, "the later event is settled")
        assert group.stop(second) == 0
        assert _captured(sandbox.url, "ord_a", "itm_a") == 0, "the later event overtook"
        parked = read_topic(group.bootstrap, f"{group.topic}.parked")
        assert [r.value for r in parked] == [valid_record(e).value for e in (too_many, later)]


def test_a_parking_topic_with_fewer_partitions_than_the_input_stops_the_member_at_start(
    make_group: Callable[..., Group], unique_name: Callable[[str], str]
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(3, sandbox.url)
        small = unique_name("parked")
        admin = AdminClient({"bootstrap.servers": group.bootstrap})
        admin.create_topics([NewTopic(small, num_partitions=1)])[small].result(timeout=30)
        member = group.start_member(PARKING_TOPIC=small)
        assert member.wait(timeout=60) == 2
        assert "PARKING_TOPIC" in group.log_text()


# -- redrive races ------------------------------------------------------------------------------


def _redrive(group: Group, order_id: str) -> str:
    args = ["redrive", "--bootstrap-servers", group.bootstrap, "--topic", group.topic]
    result = CliRunner().invoke(main, [*args, "--order", order_id], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _parked_count(group: Group) -> int:
    for attempt in range(5):  # a loaded broker may not know the partition for a moment
        try:
            return len(read_topic(group.bootstrap, f"{group.topic}.parked"))
        except KafkaException:
            if attempt == 4:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _applied_in_order(sandbox_url: str, order_id: str) -> list[str]:
    """Event ids of the order's applied POSTs, in arrival order (sorted within one POST)."""
    return [
        event_id
        for r in sandbox_requests(sandbox_url, order_id)
        if r["method"] == "POST" and r["status"] == 201
        for event_id in sorted(event_ids_of(r["body"] or {}))
    ]


def _fix(sandbox_url: str, units: int) -> None:
    httpx2.post(f"{sandbox_url}/_admin/reset", timeout=10).raise_for_status()
    seed_orders(sandbox_url, [("ord_a", {"itm_a": units})])


def _park_one_event(
    group: Group, sandbox_url: str
) -> tuple[FulfillmentEvent, subprocess.Popen[bytes]]:
    """ord_a has 2 units of itm_a and a shipment of 3: a started member parks that event (409)."""
    seed_orders(sandbox_url, [("ord_a", {"itm_a": 2})])
    too_many = shipment(_id(), "ord_a", (("itm_a", 3),))
    produce(group.bootstrap, group.topic, [valid_record(too_many)])
    member = group.start_member()
    wait_until(group.all_committed, 60, "the failing event is parked")
    return too_many, member


def test_a_redriven_record_that_is_not_its_orders_first_does_not_unpark_the_order(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url)
        _, member = _park_one_event(group, sandbox.url)
        # a record redriven on its own (another order's redrive, a redrive that stopped half
        # way): it is not the order's first, so it must wait behind the parked event
        later = shipment(_id(), "ord_a", (("itm_a", 1),))
        produce(group.bootstrap, group.topic, [valid_record(later, ((REDRIVEN_HEADER, b"1"),))])
        wait_until(group.all_committed, 60, "the redriven record is settled")
        assert group.stop(member) == 0
        assert _captured(sandbox.url, "ord_a", "itm_a") == 0, "it overtook the parked event"
        assert _parked_count(group) == 2


def test_a_record_parked_after_the_redrive_read_the_parking_topic_stays_redrivable(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url)
        too_many, member = _park_one_event(group, sandbox.url)

        # redrive, step by step: it reads the parking topic ...
        config = {"bootstrap.servers": group.bootstrap}
        parking = f"{group.topic}.parked"
        everything = read_parked(config, parking)
        chosen, through = select(everything, "ord_a"), read_through(everything)
        # ... meanwhile the member parks a later event of the order ...
        later = shipment(_id(), "ord_a", (("itm_a", 1),))
        produce(group.bootstrap, group.topic, [valid_record(later)])
        wait_until(lambda: _parked_count(group) == 2, 60, "the later event is parked")
        _fix(sandbox.url, units=5)
        # ... then puts back what it read and writes its marker
        errors, landed = republish(config, group.topic, chosen, through)
        assert errors == []
        assert (
            mark_redriven(config, parking, group.topic, chosen, through=through, landed=landed)
            == []
        )
        wait_until(group.all_committed, 60, "the redriven record is settled")
        assert _captured(sandbox.url, "ord_a", "itm_a") == 0, "the later event would be lost"

        # the next redrive takes both, in their order, and they apply once
        assert "redrove 2 record(s)" in _redrive(group, "ord_a")
        wait_until(lambda: _captured(sandbox.url, "ord_a", "itm_a") == 4, 60, "both apply")
        wait_until(group.all_committed, 60, "the redriven records are settled")
        assert group.stop(member) == 0
        assert _applied_in_order(sandbox.url, "ord_a") in (
            [too_many.event_id, later.event_id],
            sorted([too_many.event_id, later.event_id]),  # one coalesced POST
        )


def test_events_still_in_the_input_do_not_overtake_a_redriven_event_after_a_takeover(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url)
        too_many, first = _park_one_event(group, sandbox.url)
        assert group.stop(first) == 0

        # a later event arrives while no member runs; the operator fixes the order, redrives:
        # the redriven event lands in the input AFTER the later one
        later = shipment(_id(), "ord_a", (("itm_a", 1),))
        produce(group.bootstrap, group.topic, [valid_record(later)])
        _fix(sandbox.url, units=5)
        assert "redrove 1 record(s)" in _redrive(group, "ord_a")
        second = group.start_member()
        wait_until(group.all_committed, 60, "the later and the redriven records are settled")
        assert _captured(sandbox.url, "ord_a", "itm_a") == 0, "the later event overtook"

        assert "redrove 2 record(s)" in _redrive(group, "ord_a")
        wait_until(lambda: _captured(sandbox.url, "ord_a", "itm_a") == 4, 60, "both apply")
        wait_until(group.all_committed, 60, "the redriven records are settled")
        assert group.stop(second) == 0
        assert _applied_in_order(sandbox.url, "ord_a") in (
            [too_many.event_id, later.event_id],
            sorted([too_many.event_id, later.event_id]),
        )
