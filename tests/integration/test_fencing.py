"""Liveness and fencing under sustained faults (issue #8), against the real broker and the
sandbox on loopback: a member frozen past its session posts nothing for the partitions it lost;
the circuit breaker recovers after a probe answered 429; a record too large for the dead-letter
topic is dead-lettered truncated and its partition moves on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import SANDBOX_KEY, reconcile
from consumer.tools.warehouse.simulator import Order, OrderLine, Simulation, seed_sandbox, simulate
from tests.event_builders import shipment
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import (
    OutgoingRecord,
    admin_get,
    produce,
    read_topic,
    sandbox_requests,
    seed_orders,
    valid_record,
)

pytestmark = pytest.mark.kafka
_figures = logging.getLogger("fencing-figures")  # shown with --log-cli-level=INFO

LEASE_SECONDS = 4.0  # of the 6 s session the harness gives members (FAST_GROUP)


def _with_room_for_repeats(sim: Simulation) -> Simulation:
    orders = tuple(
        Order(o.id, tuple(OrderLine(line.id, line.sku_id, line.quantity * 2) for line in o.lines))
        for o in sim.orders
    )
    return replace(sim, orders=orders)


def _events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            found.append(entry)
    return found


def _named(log: Path, event: str) -> list[dict[str, Any]]:
    return [e for e in _events(log) if e.get("event") == event]


def _by_member(requests: list[dict[str, Any]], pid: int) -> list[dict[str, Any]]:
    return [r for r in requests if f"pid {pid})" in (r.get("userAgent") or "")]


def _received(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["receivedAt"]).replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_a_member_frozen_past_its_session_posts_nothing_for_the_partitions_it_lost(
    make_group: Callable[..., Group], tmp_path: Path
) -> None:
    # slow answers keep batches in flight, and a small in-flight limit keeps more in hand
    faults = FaultSettings(latency_ms=800)
    with SandboxServer(SandboxConfig(strict_orders=True, faults=faults)) as sandbox:
        sim = simulate(150, seed=808)
        with httpx2.Client(timeout=30) as client:
            # twice the units ordered: a zombie's repeat would be captured, not refused, so the
            # ledger would show it
            seed_sandbox(sandbox.url, _with_room_for_repeats(sim), client)
        group = make_group(
            6,
            sandbox.url,
            FENCING_LEASE_SECONDS=str(LEASE_SECONDS),
            DR_TIMEOUT_SECONDS="5",
            MAX_IN_FLIGHT_ORDERS="6",
        )
        published = group.publish(sim)
        frozen = group.start_member()
        other = group.start_member()

        def posting(pid: int, *, in_flight: bool) -> bool:
            mine = _by_member(list(sandbox_requests(sandbox.url)), pid)
            return any(
                r["method"] == "POST" and (r["status"] is None or not in_flight) for r in mine
            )

        wait_until(lambda: posting(other.pid, in_flight=False), 90, "both members posting")
        wait_until(lambda: posting(frozen.pid, in_flight=True), 60, "a POST of the first in flight")
        os.kill(frozen.pid, signal.SIGSTOP)
        stopped_at = time.time()
        try:
            # the broker gives its partitions to the other member, which finishes everything
            wait_until(group.all_committed, 180, "every record committed by the other member")
            assert time.time() - stopped_at > 6, "the session (6 s) ran out while it was frozen"
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        frozen_log = tmp_path / "member-0.log"
        wait_until(
            lambda: bool(_named(frozen_log, "membership_lease_lapsed")),
            60,
            "the woken member notices its lease ended",
        )
        # give the woken member time to do whatever it would do with the batches it held
        lapsed_lines = len(_events(frozen_log))
        wait_until(
            lambda: any(
                e.get("event") in ("partitions_lost", "partitions_assigned", "partitions_revoked")
                for e in _events(frozen_log)[lapsed_lines - 1 :]
            ),
            90,
            "the woken member hears from the group",
        )
        assert group.stop_all() == [0, 0]

        requests = list(sandbox_requests(sandbox.url))
        result = reconcile(sandbox.url, sim)

    frozen_posts = [r for r in _by_member(requests, frozen.pid) if r["method"] == "POST"]
    late = [r for r in frozen_posts if _received(r) > stopped_at + LEASE_SECONDS]
    assert frozen_posts, "the frozen member had posted before it froze"
    assert late == [], f"POSTs from the frozen member after its lease ended: {late[:3]}"
    assert result.duplicate_events == 0
    assert result.mismatches == []
    assert group.committed_total() == published
    _figures.info(
        f"\nfrozen member: {len(frozen_posts)} POSTs before the freeze, 0 after its lease;"
        f" fenced trips after waking: {len(_named(frozen_log, 'fulfillment_fenced'))};"
        f" ledger: {result.orders_matching}/{result.orders} orders matching,"
        f" {result.duplicate_events} events applied twice"
    )


class KeyHog:
    """Another client of the same API key that spends its whole rate limit: while it runs, every
    request of the members is answered 429."""

    def __init__(self, sandbox_url: str) -> None:
        self._url = f"{sandbox_url}/fulfillments"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> KeyHog:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {SANDBOX_KEY}", "Accept": "application/json"}
        with httpx2.Client(timeout=10, headers=headers) as client:
            while not self._stop.wait(0.1):
                client.get(self._url, params={"orderId": "ord_hog"})


def _member_answered(sandbox_url: str, status: int, after: int) -> bool:
    return any(
        r["status"] == status and "fulfillment-consumer (" in (r.get("userAgent") or "")
        for r in list(sandbox_requests(sandbox_url))[after:]
    )


def test_the_circuit_closes_again_after_a_probe_answered_429(
    make_group: Callable[..., Group], tmp_path: Path
) -> None:
    down = FaultSettings(error_rate=1.0, error_status=503)
    with SandboxServer(SandboxConfig(strict_orders=True, faults=down)) as sandbox:
        sim = simulate(40, seed=809)
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        group = make_group(2, sandbox.url)
        published = group.publish(sim)
        group.start_member()
        log = tmp_path / "member-0.log"
        wait_until(lambda: bool(_named(log, "circuit_opened")), 90, "the circuit opens")

        # still down, and now another client spends the key's rate limit: a probe gets a 429
        switched = len(list(sandbox_requests(sandbox.url)))
        httpx2.put(f"{sandbox.url}/_admin/faults", json={"rateLimit": 1}, timeout=10)
        with KeyHog(sandbox.url):
            wait_until(
                lambda: _member_answered(sandbox.url, 429, switched), 120, "a probe answered 429"
            )
            # Digital River is back; the hog leaves as well
            httpx2.put(
                f"{sandbox.url}/_admin/faults", json={"errorRate": 0.0, "rateLimit": 0}, timeout=10
            )
        wait_until(group.all_committed, 120, "every record committed once Digital River is back")
        assert group.stop_all() == [0]
        result = reconcile(sandbox.url, sim)

    closed = _named(log, "circuit_closed")
    assert closed, "the circuit closed"
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert group.committed_total() == published
    _figures.info(f"circuit closed {len(closed)}x after a probe answered 429")


def test_a_record_too_large_for_the_dead_letter_topic_is_dead_lettered_truncated_and_passed(
    make_group: Callable[..., Group],
) -> None:
    with SandboxServer(SandboxConfig(strict_orders=True)) as sandbox:
        group = make_group(1, sandbox.url)
        dlq = f"{group.topic}.dlq"
        admin = AdminClient({"bootstrap.servers": group.bootstrap})
        limit = ConfigEntry(
            "max.message.bytes", "65536", incremental_operation=AlterConfigOpType.SET
        )
        resource = ConfigResource("topic", dlq, incremental_configs=[limit])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=30)
        seed_orders(sandbox.url, [("ord_big", {"itm_1": 3})])
        oversized = b"\x07 not avro " + bytes(range(256)) * 1200  # 300 KiB: fine for the input
        before = shipment("e-before", "ord_big", (("itm_1", 1),))
        after = shipment("e-after", "ord_big", (("itm_1", 1),))
        placed = produce(
            group.bootstrap,
            group.topic,
            [
                valid_record(before),
                OutgoingRecord(b"ord_big", oversized, (("trace-id", b"t-9"),)),
                valid_record(after),
            ],
        )
        group.start_member()
        wait_until(group.all_committed, 90, "the partition moves past the oversized record")
        assert group.stop_all() == [0]
        ledger = admin_get(sandbox.url, "/_admin/ledger", orderId="ord_big")["orders"]["ord_big"]

    assert ledger["lines"]["itm_1"]["captured"] == 2, "the events around it were applied"
    (letter,) = read_topic(group.bootstrap, dlq)
    assert letter.value == oversized[:16384]
    assert letter.header("fc.truncated.value_size") == str(len(oversized))
    assert letter.header("fc.truncated.kept") == "16384"
    assert letter.header("fc.source.topic") == group.topic
    assert letter.header("fc.source.partition") == "0"
    assert letter.header("fc.source.offset") == str(placed[1].offset)
    assert letter.header("fc.error.class") == "undecodable"
    assert letter.header("trace-id") == "t-9"
