"""Operating the consumer (docs/metrics.md), against the real broker, the sandbox on loopback and
real `fulfillment-consumer run` processes: the metrics tell the truth about a run, readiness says
when a member cannot work, and the Digital River key never leaves the process.

Members listen with HEALTH_PORT=0 (the harness's default) and log the bound port as
`health_listening`; the tests find it there.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.core.fulfillments import event_ids_of
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import reconcile
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.event_builders import shipment
from tests.integration.group_harness import Group, wait_until
from tests.integration.records import (
    OutgoingRecord,
    TopicRecord,
    produce,
    read_topic,
    sandbox_requests,
    seed_orders,
    valid_record,
)

pytestmark = pytest.mark.kafka

P = "fulfillment_consumer_"
Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def _sandbox(*, api_keys: tuple[str, ...] = ()) -> SandboxServer:
    """A strict sandbox (only seeded orders exist) on a loopback port."""
    return SandboxServer(
        SandboxConfig(strict_orders=True, api_keys=api_keys, faults=FaultSettings(latency_ms=10))
    )


# -- finding and reading a member's health port ----------------------------------------------------
def _health_port(group: Group, index: int, timeout: float = 30) -> int:
    """The port member `index` logged as `health_listening` (it was started with HEALTH_PORT=0)."""
    path = group.logs / f"member-{index}.log"
    found: list[int] = []

    def logged() -> bool:
        if not path.exists():
            return False
        for line in path.read_text(errors="replace").splitlines():
            if '"health_listening"' in line:
                found.append(int(json.loads(line)["port"]))
                return True
        return False

    wait_until(logged, timeout, f"member {index} logs health_listening")
    return found[0]


def _get(port: int, path: str) -> httpx2.Response:
    return httpx2.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def _samples(text: str) -> Samples:
    """Every sample of a /metrics text, keyed by (sample name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == P + name and wanted <= set(ls))


def _by_partition(samples: Samples, name: str) -> dict[int, float]:
    return {int(dict(ls)["partition"]): v for (n, ls), v in samples.items() if n == P + name and ls}


# -- 1. metrics ---------------------------------------------------------------------------------
def test_metrics_move_as_a_run_progresses_and_match_the_sandbox_ledger_at_the_end(
    make_group: Callable[..., Group],
) -> None:
    with _sandbox() as sandbox:
        # a modest rate limit makes the run last long enough to watch it
        group = make_group(2, sandbox.url, DR_RATE_LIMIT="40")
        sim = simulate(60, seed=31)
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        half = len(sim.events) // 2
        produce(group.bootstrap, group.topic, [valid_record(e) for e in sim.events[:half]])
        member = group.start_member()
        port = _health_port(group, 0)

        consumed: list[float] = []
        lag: list[float] = []

        def scrape() -> Samples:
            samples = _samples(_get(port, "/metrics").text)
            consumed.append(_total(samples, "records_consumed_total"))
            lags = _by_partition(samples, "partition_lag")
            if lags:
                lag.append(sum(lags.values()))
            return samples

        # the first half: consumed at once, then worked off at the rate limit
        wait_until(
            lambda: _total(scrape(), "records_consumed_total") == half and lag[-1:] == [0.0],
            60,
            "the first half consumed and its lag worked off",
            interval=0.3,
        )
        produce(group.bootstrap, group.topic, [valid_record(e) for e in sim.events[half:]])
        ends = group.end_offsets()

        def caught_up() -> bool:
            samples = scrape()
            return (
                _total(samples, "records_consumed_total") == len(sim.events)
                and _by_partition(samples, "partition_committed_offset")
                == {p: float(o) for p, o in ends.items()}
                and _by_partition(samples, "partition_lag") == {p: 0.0 for p in ends}
            )

        wait_until(caught_up, 60, "every record consumed and committed, per the metrics", 0.3)
        final = _samples(_get(port, "/metrics").text)
        assert group.committed() == ends, "the broker agrees with partition_committed_offset"
        assert group.stop(member) == 0

        posts = [r for r in sandbox_requests(sandbox.url) if r["method"] == "POST"]
        result = reconcile(sandbox.url, sim)
    assert result.mismatches == []

    # during the run: the counter grew in steps, the lag rose with the second half and fell again
    assert consumed == sorted(consumed), "records_consumed_total never goes down"
    assert {half, len(sim.events)} <= set(consumed)
    peak = max(range(len(lag)), key=lambda i: (lag[i], -i))
    assert lag[peak] > 0
    assert any(later < lag[peak] for later in lag[peak + 1 :]), f"lag never fell: {lag}"

    # at the end: the metrics are the sandbox's ledger
    created = [r for r in posts if r["status"] == 201]
    applied_events = sum(len(event_ids_of(r["body"])) for r in created)
    assert applied_events == len(sim.events)
    assert _total(final, "events_settled_total", outcome="applied") == applied_events
    assert _total(final, "events_settled_total") == applied_events, "nothing else was settled"
    assert _total(final, "dr_requests_total", method="POST", status="201") == len(created)
    assert _total(final, "dr_requests_total") == len(posts), "every call the sandbox saw counted"
    assert _total(final, "events_per_post_count") == len(created)
    assert _total(final, "events_per_post_sum") == applied_events
    assert _by_partition(final, "partition_lag") == {p: 0.0 for p in ends}
    assert _by_partition(final, "partition_committed_offset") == {
        p: float(o) for p, o in ends.items()
    }
    assert _by_partition(final, "partition_end_offset") == {p: float(o) for p, o in ends.items()}
    assert _total(final, "member_ready") == 1
    assert _total(final, "configuration_failure") == 0


# -- 2. readiness -------------------------------------------------------------------------------
@dataclass
class _Probe:
    """What a member's endpoints answered while it was alive (connection errors skipped)."""

    port: int
    readyz: list[tuple[int, str]] = field(default_factory=list)
    healthz: list[tuple[int, str]] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    def poll(self, http: httpx2.Client) -> None:
        base = f"http://127.0.0.1:{self.port}"
        try:
            for path, into in (("/readyz", self.readyz), ("/healthz", self.healthz)):
                resp = http.get(base + path)
                into.append((resp.status_code, resp.text))
            self.metrics.append(http.get(base + "/metrics").text)
        except httpx2.TransportError:
            return  # not listening yet, or gone


def _probe_until_exit(proc: subprocess.Popen[bytes], port: int, timeout: float) -> _Probe:
    """Poll the three endpoints as fast as they answer until the member exits (bounded)."""
    probe = _Probe(port)
    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=5) as http:  # one client: a new one per request costs ~100 ms
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"member still running after {timeout}s"
            probe.poll(http)
            time.sleep(0.005)
    return probe


def test_readiness_is_false_on_a_refused_key_and_true_with_a_good_one(
    make_group: Callable[..., Group],
) -> None:
    with _sandbox(api_keys=("sk_test_good",)) as sandbox:
        group = make_group(2, sandbox.url)
        sim = simulate(10, seed=32)
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        produce(group.bootstrap, group.topic, [valid_record(e) for e in sim.events])

        a = group.start_member(DR_API_KEY="sk_test_bad")
        seen = _probe_until_exit(a, _health_port(group, 0), timeout=60)
        assert a.returncode == 3
        # the member is alive for a few hundred ms after the 401 (it drains, commits, leaves)
        first = next(
            (i for i, (status, body) in enumerate(seen.readyz) if "configuration" in body), None
        )
        assert first is not None, f"/readyz never said why it stopped: {seen.readyz}"
        for status, body in seen.readyz[first:]:  # sticky: never ready again
            assert status == 503
            assert "unauthorized" in body  # the 401: the key, not the data
        states = [
            (_total(m, "configuration_failure"), _total(m, "member_ready"))
            for m in map(_samples, seen.metrics)
        ]
        assert (1, 0) in states, states
        assert set(states[states.index((1, 0)) :]) == {(1, 0)}
        assert "member_stopped_by_configuration" in group.log_text()
        assert {r["status"] for r in sandbox_requests(sandbox.url)} == {401}

        # Nothing recovers inside a stopped member: the fix is a restart with the right key
        # (Kubernetes restarts the pod after exit 3; the operator rolls out the fixed Secret).
        b = group.start_member(DR_API_KEY="sk_test_good")
        port_b = _health_port(group, 1)
        wait_until(lambda: _get(port_b, "/readyz").status_code == 200, 60, "member B ready")
        assert _get(port_b, "/readyz").text.strip() == "ok"
        wait_until(group.all_committed, 60, "every record applied by member B")
        b_metrics = _samples(_get(port_b, "/metrics").text)
        assert _get(port_b, "/healthz").status_code == 200
        assert group.stop(b) == 0
        result = reconcile(sandbox.url, sim)
    assert result.mismatches == []
    assert result.duplicate_events == 0
    assert _total(b_metrics, "member_ready") == 1
    assert _total(b_metrics, "configuration_failure") == 0
    assert _total(b_metrics, "events_settled_total", outcome="applied") == len(sim.events)


# -- 3. the secret stays in ---------------------------------------------------------------------
def _key() -> str:
    return "sk_test_" + secrets.token_hex(12)


def _topic_bytes(records: Iterable[TopicRecord]) -> list[bytes]:
    out: list[bytes] = []
    for r in records:
        out += [r.key or b"", r.value or b""]
        out += [name.encode() + b"=" + value for name, value in r.headers]
    return out


def _cli(env: dict[str, str], *args: str) -> str:
    """`fulfillment-consumer run ARGS` to completion; its stdout and stderr together."""
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "run", *args],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def test_no_secret_reaches_logs_errors_metrics_or_side_topics(
    make_group: Callable[..., Group], tmp_path: Path
) -> None:
    accepted, refused = _key(), _key()
    keys = (accepted, refused)
    texts: list[str] = []  # everything the consumer wrote or served, as text
    raw: list[bytes] = []  # the side topics, as bytes

    with _sandbox(api_keys=(accepted,)) as sandbox:
        group = make_group(2, sandbox.url)
        sim = simulate(15, seed=33)
        with httpx2.Client(timeout=30) as client:
            seed_sandbox(sandbox.url, sim, client)
        seed_orders(sandbox.url, [("ord_parked", {"itm_p": 1})])
        poison = [
            OutgoingRecord(b"ord_garbage", b"\x07 not avro \xff", (("trace-id", b"t-1"),)),
            OutgoingRecord(b"ord_someone_else", valid_record(sim.events[0]).value),
        ]
        too_many = shipment(str(uuid.uuid4()), "ord_parked", (("itm_p", 5),))  # 409: parked
        records = [valid_record(e) for e in sim.events]
        records[3:3] = poison
        records.append(valid_record(too_many))
        produce(group.bootstrap, group.topic, records)

        # a member whose key is accepted: applies, dead-letters and parks
        good = group.start_member(DR_API_KEY=accepted)
        port = _health_port(group, 0)
        probe = _Probe(port)
        with httpx2.Client(timeout=5) as http:

            def settled() -> bool:
                probe.poll(http)
                return group.all_committed()

            wait_until(settled, 60, "every record settled")
            probe.poll(http)
        assert group.stop(good) == 0
        assert reconcile(sandbox.url, sim).mismatches == []

        # a member whose key is refused (401): stops, exit 3
        produce(group.bootstrap, group.topic, [valid_record(shipment(str(uuid.uuid4()), "x"))])
        bad = group.start_member(DR_API_KEY=refused)
        refused_probe = _probe_until_exit(bad, _health_port(group, 1), timeout=60)
        assert bad.returncode == 3
        assert any(status == 503 for status, _ in refused_probe.readyz)

    dead = read_topic(group.bootstrap, f"{group.topic}.dlq")
    parked = read_topic(group.bootstrap, f"{group.topic}.parked")
    assert len(dead) == len(poison)
    assert [r.header("fc.park.order") for r in parked] == ["ord_parked"]
    raw += _topic_bytes(dead) + _topic_bytes(parked)
    for p in (probe, refused_probe):
        texts += p.metrics + [body for _, body in p.readyz + p.healthz]
    assert probe.metrics
    assert refused_probe.metrics
    texts.append(group.log_text())
    assert "member_stopped_by_configuration" in texts[-1]
    assert "order_parked" in texts[-1] or "parked" in texts[-1]

    # what `run` prints about its configuration, and the errors it stops with
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DR_", "HEALTH_"))}
    key_file = tmp_path / "dr-key"
    key_file.write_text(accepted + "\n")
    shown = _cli({**env, "DR_API_KEY": accepted}, "--print-config")
    assert '"dr_api_key": "***"' in shown
    texts.append(shown)
    texts.append(_cli({**env, "DR_API_KEY_FILE": str(key_file)}, "--print-config"))
    texts.append(_cli({**env, "DR_API_KEY": accepted, "DR_API_KEY_FILE": str(key_file)}))
    texts.append(
        _cli({**env, "DR_API_KEY": accepted, "DR_API_URL": "http://dr.example.com:1"}),
    )
    texts.append(_cli({**env, "DR_API_KEY": accepted, "HEALTH_PORT": "not-a-port"}))
    assert all(t.strip() for t in texts[-5:]), "every command said something"

    # the grep finds a planted copy (it would find a leak), then finds nothing real
    for key in keys:
        assert _leaks(key, [*texts, f"Authorization: Bearer {key}"], raw) == ["text 'Bearer'"]
        assert _leaks(key, texts, [*raw, b"x" + key.encode()]) == ["bytes"]
        assert _leaks(key, texts, raw) == []
        assert key[8:] not in "\n".join(texts), "not even the random part"


def _leaks(key: str, texts: list[str], raw: list[bytes]) -> list[str]:
    """Where `key` appears: 'text <word before it>' per text hit, 'bytes' per topic hit."""
    found = []
    for text in texts:
        at = text.find(key)
        if at >= 0:
            found.append(f"text {text[:at].split()[-1]!r}" if text[:at].split() else "text")
    found += ["bytes" for b in raw if key.encode() in b]
    return found
