"""HealthServer: /healthz follows the loop, /readyz the group and configuration."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.ops.health import LIVENESS_WINDOW_SECONDS, HealthServer
from consumer.ops.metrics import PREFIX, Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def server(metrics: Metrics, clock: FakeClock) -> Iterator[HealthServer]:
    health = HealthServer(metrics, port=0, host="127.0.0.1", clock=clock)
    health.start()
    try:
        yield health
    finally:
        health.stop()


@pytest.fixture
def client(server: HealthServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=f"http://127.0.0.1:{server.port}", timeout=5.0, trust_env=False
    ) as http:
        yield http


def member_ready(metrics: Metrics) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        if family.name == PREFIX + "member_ready":
            return float(family.samples[0].value)
    raise AssertionError("member_ready missing")


def test_the_server_answers_over_loopback_on_the_port_it_picked(
    server: HealthServer, client: httpx2.Client
) -> None:
    assert server.port > 0
    assert client.get("/healthz").status_code == 200
    assert client.get("/nowhere").status_code == 404


def test_healthz_flips_to_503_when_the_loop_stops_turning(
    server: HealthServer, client: httpx2.Client, clock: FakeClock
) -> None:
    clock.now += LIVENESS_WINDOW_SECONDS - 1
    assert client.get("/healthz").status_code == 200  # start-up gets the whole window
    server.mark_alive()
    clock.now += LIVENESS_WINDOW_SECONDS
    assert client.get("/healthz").status_code == 200
    clock.now += 1
    answer = client.get("/healthz")
    assert answer.status_code == 503
    assert "has not turned for 31 s" in answer.text
    server.mark_alive(clock.now)
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_with_a_reason_before_the_member_joins(
    client: httpx2.Client, metrics: Metrics
) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.text == "not joined the consumer group yet\n"
    assert member_ready(metrics) == 0


def test_readyz_is_200_once_joined_and_503_with_the_reason_when_it_leaves(
    server: HealthServer, client: httpx2.Client, metrics: Metrics
) -> None:
    server.set_ready(True, None)
    assert client.get("/readyz").status_code == 200
    assert member_ready(metrics) == 1
    server.set_ready(False, "rebalancing:\nno partitions")
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.text == "rebalancing: no partitions\n"  # one line
    assert member_ready(metrics) == 0


def test_readyz_stays_503_after_a_configuration_failure(
    server: HealthServer, client: httpx2.Client, metrics: Metrics
) -> None:
    server.set_ready(True, None)
    server.fail_configuration("Digital River answered 401")
    server.set_ready(True, None)  # a later join does not hide the failure
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.text == "configuration failure: Digital River answered 401\n"
    assert member_ready(metrics) == 0
    assert f"{PREFIX}configuration_failure 1.0" in metrics.render().decode()


def test_readyz_is_503_while_a_dependency_is_down_even_across_a_join(
    server: HealthServer, client: httpx2.Client, metrics: Metrics
) -> None:
    server.set_ready(True, None)
    server.set_dependency_down("schema registry", "ConnectError: connection refused")
    server.set_ready(True, None)  # a rebalance's join does not hide the outage
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.text == "schema registry unavailable: ConnectError: connection refused\n"
    assert member_ready(metrics) == 0

    server.set_dependency_down("schema registry", None)

    assert client.get("/readyz").status_code == 200
    assert member_ready(metrics) == 1


def test_metrics_serves_the_members_own_registry(client: httpx2.Client, metrics: Metrics) -> None:
    metrics.record_consumed(4)
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name for f in text_string_to_metric_families(answer.text)}
    assert PREFIX + "records_consumed" in families
    assert 'partition="4"' in answer.text
    assert "python_gc" not in answer.text  # not the process-global registry


def test_stop_closes_the_port_and_is_idempotent(metrics: Metrics) -> None:
    health = HealthServer(metrics, port=0, host="127.0.0.1")
    health.start()
    port = health.port
    health.stop()
    health.stop()
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=2.0, trust_env=False)
