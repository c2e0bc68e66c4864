"""`replay --dry-run` against Digital River: the real broker, real members and the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Producer

from consumer.cli import main
from consumer.sandbox.server import SandboxServer
from consumer.tools.demo import create_topics
from consumer.tools.warehouse.simulator import seed_sandbox, simulate
from tests.integration.group_harness import Group, wait_until

pytestmark = pytest.mark.kafka

TEST_KEY = "sk_test_replay_preview"


def _dry_run(group: Group, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        ["replay", *group.command_options(), "--to-earliest", "--dry-run", *args],
        catch_exceptions=False,
    )


def _preview(group: Group, sandbox: SandboxServer) -> dict[str, Any]:
    result = _dry_run(group, "--dr-api-url", sandbox.url, "--dr-api-key", TEST_KEY, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    assert document["dry_run"] is True
    found: dict[str, Any] = document["preview"]
    return found


def _posts(sandbox: SandboxServer) -> int:
    stats = httpx2.get(f"{sandbox.url}/_admin/stats", timeout=10).json()["byRoute"]
    return sum(stats.get("POST /fulfillments", {}).values())


def _processed_group(
    sandbox: SandboxServer, make_group: Callable[..., Group], orders: int, seed: int
) -> tuple[Group, int]:
    """A group whose one member applied `orders` orders' events and was stopped."""
    group = make_group(3, sandbox.url)
    sim = simulate(orders, seed=seed)
    with httpx2.Client(timeout=30) as client:
        seed_sandbox(sandbox.url, sim, client)
    published = group.publish(sim)
    member = group.start_member()
    wait_until(group.all_committed, 90, "the member commits every record")
    assert group.stop(member) == 0
    return group, published


def test_a_dry_run_after_success_says_digital_river_already_has_every_replayed_event(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group, published = _processed_group(sandbox, make_group, 30, seed=31)
    committed = group.committed()
    posts = _posts(sandbox)

    preview = _preview(group, sandbox)

    assert preview["totals"] == {
        "records": published,
        "reread": published,
        "already_applied": published,
        "would_post": 0,
        "bad_records": 0,
    }
    assert preview["orders_to_post"] == []
    per_partition = {p["partition"]: p for p in preview["partitions"]}
    assert {p: v["records"] for p, v in per_partition.items()} == committed
    assert group.committed() == committed, "a dry run moved offsets"
    assert _posts(sandbox) == posts, "a dry run posted"

    table = _dry_run(group, "--dr-api-url", sandbox.url, "--dr-api-key", TEST_KEY)
    assert table.exit_code == 0, table.output
    assert "DR has" in table.output
    assert "nothing posted" in table.output


def test_a_dry_run_counts_unapplied_events_as_would_post(
    sandbox: SandboxServer, make_group: Callable[..., Group]
) -> None:
    group, published = _processed_group(sandbox, make_group, 20, seed=32)
    committed = group.committed()
    later = simulate(8, seed=33)
    added = group.publish(later)  # after the member stopped: never posted
    producer = Producer({"bootstrap.servers": group.bootstrap})
    producer.produce(group.topic, key=b"ord_poison", value=b"not avro", partition=0)
    assert producer.flush(30) == 0
    posts = _posts(sandbox)

    preview = _preview(group, sandbox)

    assert preview["totals"] == {
        "records": published + added + 1,
        "reread": published,
        "already_applied": published,
        "would_post": added,
        "bad_records": 1,
    }
    expected: dict[str, list[str]] = {}
    for event in later.events:
        expected.setdefault(event.order_id, []).append(event.event_id)
    assert {o["order_id"]: sorted(o["event_ids"]) for o in preview["orders_to_post"]} == {
        order: sorted(ids) for order, ids in expected.items()
    }
    assert group.committed() == committed, "a dry run moved offsets"
    assert _posts(sandbox) == posts, "a dry run posted"

    verbose = _dry_run(group, "--dr-api-url", sandbox.url, "--dr-api-key", TEST_KEY, "--verbose")
    assert verbose.exit_code == 0, verbose.output
    assert all(order in verbose.output for order in expected)

    bounded = _dry_run(
        group, "--dr-api-url", sandbox.url, "--dr-api-key", TEST_KEY, "--max-records", "5"
    )
    assert bounded.exit_code == 1
    assert "--max-records 5" in bounded.output


@pytest.mark.parametrize(
    ("args", "setting"),
    [
        (["--dr-api-url", "ftp://dr.example", "--dr-api-key", TEST_KEY], "DR_API_URL"),
        (["--dr-api-url", "http://dr.example.com", "--dr-api-key", TEST_KEY], "DR_API_URL"),
        (["--dr-api-url", "https://dr.example.com", "--dr-api-key", "pk_test_1"], "DR_API_KEY"),
        (["--dr-api-key", TEST_KEY], "DR_API_URL"),
    ],
)
def test_a_dry_run_with_a_bad_dr_url_names_the_setting(
    kafka_bootstrap: str, unique_name: Callable[[str], str], args: list[str], setting: str
) -> None:
    topic = unique_name("events")
    create_topics(kafka_bootstrap, topic, 1)
    common = ["--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--group", f"g-{topic}"]

    result = CliRunner().invoke(
        main, ["replay", *common, "--to-earliest", "--dry-run", *args], catch_exceptions=False
    )

    assert result.exit_code == 2
    assert setting in result.output
    assert TEST_KEY not in result.output
