"""`replay` as `kafka-consumer-groups --reset-offsets`: a plan unless --execute, the Kafka
targets (--by-duration, --to-current), the CSV of --export / --from-file and `--topic t:0,3`,
against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.cli import main
from consumer.core.reconcile import encode_commit_metadata
from tests.integration.group_harness import Group

pytestmark = pytest.mark.kafka

PARTITIONS = 4
PER_PARTITION = 10
HOUR_MS = 3_600_000


@pytest.fixture
def group(kafka_bootstrap: str, unique_name: Callable[[str], str], tmp_path: Path) -> Group:
    """4 partitions of 10 records, committed at 10 with horizon 10. Records 0-4 of each
    partition are 2 hours old, 5-9 are 10 minutes old."""
    made = Group.create(
        kafka_bootstrap, unique_name("events"), partitions=PARTITIONS, sandbox_url="", logs=tmp_path
    )
    now_ms = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for p in range(PARTITIONS):
        for i in range(PER_PARTITION):
            age = 2 * HOUR_MS if i < 5 else 600_000
            producer.produce(made.topic, value=b"%d" % i, partition=p, timestamp=now_ms - age)
    assert producer.flush(30) == 0
    _commit(made, dict.fromkeys(range(PARTITIONS), PER_PARTITION), with_horizon=True)
    return made


def _commit(group: Group, offsets: dict[int, int], *, with_horizon: bool) -> None:
    setter = Consumer({"bootstrap.servers": group.bootstrap, "group.id": group.group})
    try:
        horizon = encode_commit_metadata(PER_PARTITION)
        setter.commit(
            offsets=[
                TopicPartition(group.topic, p, o, metadata=horizon)
                if with_horizon
                else TopicPartition(group.topic, p, o)
                for p, o in offsets.items()
            ],
            asynchronous=False,
        )
    finally:
        setter.close()


def _replay(group: Group, *args: str, topic: str | None = None) -> Result:
    common = ["--bootstrap-servers", group.bootstrap, "--group", group.group]
    return CliRunner().invoke(
        main, ["replay", *common, "--topic", topic or group.topic, *args], catch_exceptions=False
    )


UNMOVED = dict.fromkeys(range(PARTITIONS), PER_PARTITION)


@pytest.mark.parametrize(
    "target",
    [
        ["--to-earliest"],
        ["--to-latest"],
        ["--to-current"],
        ["--to-offset", "3"],
        ["--shift-by", "-4"],
        ["--by-duration", "PT1H"],
        ["--to-datetime", "2020-01-01T00:00:00Z"],
    ],
    ids=lambda t: t[0],
)
def test_replay_without_execute_shows_the_plan_and_moves_nothing(
    group: Group, target: list[str]
) -> None:
    before = group.committed_with_metadata()
    result = _replay(group, *target)
    assert result.exit_code == 0, result.output
    assert "nothing committed" in result.output
    assert "--execute" in result.output
    assert group.committed_with_metadata() == before


def test_replay_by_duration_moves_to_the_first_record_of_that_window(group: Group) -> None:
    result = _replay(group, "--by-duration", "PT1H", "--execute")
    assert result.exit_code == 0, result.output
    assert group.committed() == dict.fromkeys(range(PARTITIONS), 5)
    result = _replay(group, "--by-duration", "P1D", "--execute")
    assert group.committed() == dict.fromkeys(range(PARTITIONS), 0)


def test_replay_by_duration_shorter_than_the_newest_record_moves_to_the_end(group: Group) -> None:
    _commit(group, dict.fromkeys(range(PARTITIONS), 2), with_horizon=True)
    assert _replay(group, "--by-duration", "PT1M", "--execute").exit_code == 0
    assert group.committed() == UNMOVED


def test_replay_by_duration_refuses_a_malformed_duration(group: Group) -> None:
    result = _replay(group, "--by-duration", "1 hour", "--execute")
    assert result.exit_code == 2
    assert "PT1H" in result.output
    assert group.committed() == UNMOVED


def test_replay_to_current_keeps_the_offsets_and_writes_the_horizon(group: Group) -> None:
    # moved by another tool: no horizon in the metadata
    _commit(group, {0: 7, 1: 10, 2: 0, 3: 4}, with_horizon=False)
    assert _replay(group, "--to-current", "--execute").exit_code == 0
    end = encode_commit_metadata(PER_PARTITION)  # no horizon known: the end stands in for it
    assert group.committed_with_metadata() == {0: (7, end), 1: (10, end), 2: (0, end), 3: (4, end)}


def test_topic_with_partitions_moves_only_those_partitions(group: Group) -> None:
    result = _replay(group, "--to-offset", "2", "--execute", topic=f"{group.topic}:0,3")
    assert result.exit_code == 0, result.output
    assert group.committed() == {0: 2, 1: 10, 2: 10, 3: 2}


def test_topic_partitions_and_the_partitions_option_are_not_both_accepted(group: Group) -> None:
    result = _replay(
        group, "--to-offset", "2", "--partitions", "1", "--execute", topic=f"{group.topic}:0"
    )
    assert result.exit_code == 2
    assert group.committed() == UNMOVED


def test_export_prints_the_plan_as_kafkas_csv_and_moves_nothing(group: Group) -> None:
    result = _replay(group, "--to-offset", "3", "--partitions", "0,2", "--export")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{group.topic},0,3\n{group.topic},2,3\n"
    assert group.committed() == UNMOVED


def test_an_exported_plan_executes_from_file_to_the_same_offsets(
    group: Group, tmp_path: Path
) -> None:
    plan = _replay(group, "--shift-by", "-6", "--partitions", "1,3", "--export")
    assert plan.exit_code == 0, plan.output
    path = tmp_path / "plan.csv"
    path.write_text(plan.stdout)

    shown = _replay(group, "--from-file", str(path))
    assert shown.exit_code == 0, shown.output
    assert group.committed() == UNMOVED

    done = _replay(group, "--from-file", str(path), "--execute")
    assert done.exit_code == 0, done.output
    assert group.committed() == {0: 10, 1: 4, 2: 10, 3: 4}
    # and the current positions export back as the same lines for those partitions
    again = _replay(group, "--to-current", "--partitions", "1,3", "--export")
    assert again.stdout == plan.stdout


def test_from_file_accepts_kafkas_group_column_and_refuses_another_topic(
    group: Group, tmp_path: Path
) -> None:
    with_group = tmp_path / "with-group.csv"
    with_group.write_text(f"{group.group},{group.topic},2,1\n")
    assert _replay(group, "--from-file", str(with_group), "--execute").exit_code == 0
    assert group.committed() == {0: 10, 1: 10, 2: 1, 3: 10}

    other = tmp_path / "other.csv"
    other.write_text("someone.elses.topic,0,0\n")
    result = _replay(group, "--from-file", str(other), "--execute")
    assert result.exit_code == 2
    assert "someone.elses.topic" in result.output
    assert group.committed() == {0: 10, 1: 10, 2: 1, 3: 10}
