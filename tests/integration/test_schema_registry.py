"""A member with a Schema Registry, against the real broker, the sandbox and a fake registry on
loopback (real HTTP, basic auth): an outage holds records back — the member stays up and says so
in /readyz — and they are decoded and applied once the registry is back; an id the registry does
not have is dead-lettered; the registry's credentials never reach the logs."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest

from consumer.codec.avro import EventCodec, SchemaStore
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import OutgoingRecord, produce, read_topic, sandbox_requests
from tests.registry_fake import FakeRegistry

pytestmark = pytest.mark.kafka

PASSWORD = "sr-Distinctive-Password-4kx"
UNKNOWN_ID = 999


def _health_port(group: Group, index: int, timeout: float = 60) -> int:
    """The port member `index` logged as `health_listening` (started with HEALTH_PORT=0)."""
    path = group.logs / f"member-{index}.log"
    found: list[int] = []

    def logged() -> bool:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        found.extend(int(json.loads(x)["port"]) for x in lines if '"health_listening"' in x)
        return bool(found)

    wait_until(logged, timeout, f"member {index} logs health_listening")
    return found[0]


def _readyz(port: int) -> tuple[int, str]:
    answer = httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    return answer.status_code, answer.text


def test_a_registry_outage_holds_records_back_with_readiness_false_then_they_are_applied(
    make_group: Callable[..., Group],
) -> None:
    codec = EventCodec(SchemaStore.load_default())
    sim = simulate(15, seed=41)
    with (
        SandboxServer(SandboxConfig(strict_orders=True, faults=FaultSettings(latency_ms=5))) as dr,
        FakeRegistry(basic_auth=("fc", PASSWORD)) as registry,
    ):
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(dr.url, sim, client)
        ids = {
            kind: registry.add(json.dumps(schema, separators=(",", ":")))
            for kind, schema in codec.writer_schemas().items()
        }
        # Confluent framing first, then single-object records that need no registry: these must
        # not overtake the ones waiting for their schema.
        records = [
            OutgoingRecord(
                e.order_id.encode(),
                codec.encode_confluent(e, ids[e.kind])
                if i % 2 == 0
                else codec.encode_single_object(e),
            )
            for i, e in enumerate(sim.events)
        ]
        first = sim.events[0]
        unknown = OutgoingRecord(
            first.order_id.encode(),
            b"\x00" + UNKNOWN_ID.to_bytes(4, "big") + codec.encode_confluent(first, 1)[5:],
        )
        records.insert(len(records) // 2, unknown)
        group = make_group(
            1,
            dr.url,
            SCHEMA_REGISTRY_URL=registry.url,
            SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=f"fc:{PASSWORD}",
        )
        registry.down = True
        produce(group.bootstrap, group.topic, records)
        member = group.start_member()
        port = _health_port(group, 0)

        wait_until(
            lambda: _readyz(port)[1].startswith("schema registry unavailable: "),
            90,
            "/readyz says the schema registry is unavailable",
        )
        assert _readyz(port)[0] == 503
        wait_until(lambda: registry.requests[f"GET /schemas/ids/{ids['shipment']}"]
                   + registry.requests[f"GET /schemas/ids/{ids['cancellation']}"] >= 3,
                   60, "the member asks the registry again")  # fmt: skip
        assert member.poll() is None, "the member stays up through the outage"
        assert [r for r in sandbox_requests(dr.url) if r["method"] == "POST"] == []
        assert group.committed_total() == 0
        assert read_topic(group.bootstrap, f"{group.topic}.dlq") == []

        registry.down = False
        wait_until(group.all_committed, 120, "every record committed once the registry is back")
        wait_until(lambda: _readyz(port)[0] == 200, 30, "/readyz is 200 again")
        assert group.stop_all() == [0]

        result = reconcile(dr.url, sim)
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert result.order_violations == 0
    dead = read_topic(group.bootstrap, f"{group.topic}.dlq")
    assert [(r.key, r.value) for r in dead] == [(unknown.key, unknown.value)]
    assert dead[0].header("fc.error.class") == "unknown_schema"
    assert f"schema id {UNKNOWN_ID} is not in the schema registry" in (
        dead[0].header("fc.error.reason") or ""
    )
    logs = group.log_text()
    assert "schema_registry_unreachable" in logs
    assert "schema_registry_reachable" in logs
    assert PASSWORD not in logs
