"""`fulfillment-consumer status`: one look at the group, for operators. [io]

Per partition of the input topic: the group's committed offset, the end offset, the lag, the
dispatch horizon from the commit metadata (`consumer.core.commit_metadata`) and the member that owns
it. The records the next owner will reconcile with Digital River before any POST are the ones
the commit's dispatch log leaves unsure (`partition.inherited_log`, the members' own rule): a
commit without our metadata leaves everything up to the end unsure; a group that never committed
starts fresh.
Plus the group's state and members, and the depth (records still held) of the dead-letter and
parking topics.

Read only: nothing joins the group and nothing is committed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import click
from rich.console import Console, Group
from rich.table import Table

from consumer.config.settings import check_topic
from consumer.core.commit_metadata import decode as decode_metadata
from consumer.core.dispatch_log import UNSURE
from consumer.core.errors import ConfigurationError, InfrastructureError, TopicMissingError
from consumer.core.partition import inherited_log
from consumer.kafka.admin import GroupAdmin
from consumer.tools.options import (
    BadSetting,
    EnvCommand,
    group_option,
    kafka_cluster,
    kafka_options,
)
from consumer.tools.replay import PartitionOffsets, read_offsets


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[int, ...]  # of the input topic


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    partition: int
    committed: int | None  # None: the group never committed it
    start: int
    end: int
    horizon: int | None  # None: unknown (no commit, or one without our metadata)
    owner: str | None
    runs: str | None = None  # the commit's dispatch log (settled / unsure / never dispatched)

    @property
    def lag(self) -> int:
        """Records the group has still to get past (from the start when never committed)."""
        return max(0, self.end - (self.start if self.committed is None else self.committed))

    @property
    def to_reconcile(self) -> int:
        """Records the next owner checks with Digital River before posting (the members' rule:
        `partition.inherited_log`), up to the end offset."""
        inherited = inherited_log(self.committed, self.horizon, self.runs, self.end)
        return sum(
            max(0, min(b, self.end) - a) for a, b, kind in inherited.intervals() if kind == UNSURE
        )


def partition_status(offsets: PartitionOffsets, owner: str | None) -> PartitionStatus:
    """Combine the broker's offsets with the group's assignment. [pure]"""
    found = None if offsets.committed is None else decode_metadata(offsets.metadata)
    return PartitionStatus(
        offsets.partition,
        offsets.committed,
        offsets.low,
        offsets.high,
        None if found is None else found.horizon,
        owner,
        None if found is None else found.runs,
    )


def report(
    *,
    topic: str,
    group: str,
    state: str,
    members: Sequence[Member],
    partitions: Sequence[PartitionStatus],
    side_depths: Mapping[str, tuple[str, int | None]],
) -> dict[str, Any]:
    """The facts as one JSON-ready document with stable keys. [pure]"""
    return {
        "topic": topic,
        "group": group,
        "state": state,
        "members": [{**asdict(m), "partitions": list(m.partitions)} for m in members],
        "partitions": [
            {**asdict(p), "lag": p.lag, "to_reconcile": p.to_reconcile} for p in partitions
        ],
        "totals": {
            "records": sum(p.end - p.start for p in partitions),
            "lag": sum(p.lag for p in partitions),
            "to_reconcile": sum(p.to_reconcile for p in partitions),
        },
        **{
            role: {"topic": name, "depth": "missing" if depth is None else depth}
            for role, (name, depth) in side_depths.items()
        },
    }


def collect(
    config: Mapping[str, Any], topic: str, group: str, side: Mapping[str, str]
) -> dict[str, Any]:
    """Ask the brokers once; every call is bounded by admin.TIMEOUT. Raises TopicMissingError,
    or InfrastructureError when the brokers fail."""
    with GroupAdmin(config, group) as admin:
        listed = admin.topics()
        if not listed.get(topic):
            raise TopicMissingError(topic, setting="FULFILLMENT_TOPIC")
        found = admin.describe()
        members = [
            Member(m.member_id, m.client_id, m.host, m.partitions_of(topic)) for m in found.members
        ]
        owners = {p: m.member_id for m in members for p in m.partitions}
        read = read_offsets(admin, topic, listed[topic])
        depths = {
            role: (name, _depth(admin.watermarks(name, listed[name])) if name in listed else None)
            for role, name in side.items()
        }
    return report(
        topic=topic,
        group=group,
        state=found.state,
        members=members,
        partitions=[partition_status(p, owners.get(p.partition)) for p in read],
        side_depths=depths,
    )


def _depth(marks: Mapping[int, tuple[int, int]]) -> int:
    """Records still held: the sum of end - start over the partitions."""
    return sum(high - low for low, high in marks.values())


def render(doc: Mapping[str, Any]) -> Group:
    """The document as rich tables."""
    members = Table(title=f"group {doc['group']}: {doc['state']}, {len(doc['members'])} member(s)")
    for column in ("member id", "client id", "host", "partitions"):
        members.add_column(column)
    for m in doc["members"]:
        members.add_row(m["member_id"], m["client_id"], m["host"], _ints(m["partitions"]))
    parts = Table(title=f"topic {doc['topic']}")
    for column in ("partition", "committed", "end", "lag", "horizon", "to reconcile"):
        parts.add_column(column, justify="right")
    parts.add_column("owner")
    for p in doc["partitions"]:
        cells = (p["partition"], p["committed"], p["end"], p["lag"], p["horizon"])
        parts.add_row(*map(_cell, cells), str(p["to_reconcile"]), p["owner"] or "-")
    totals = doc["totals"]
    parts.add_section()
    parts.add_row("total", "", "", str(totals["lag"]), "", str(totals["to_reconcile"]), "")
    side = Table(title="dead letters and parked orders")
    for column in ("", "topic", "depth"):
        side.add_column(column)
    for role in ("dead_letter", "parking"):
        side.add_row(role.replace("_", "-"), doc[role]["topic"], str(doc[role]["depth"]))
    return Group(members, parts, side)


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _ints(values: Sequence[int]) -> str:
    return ",".join(map(str, values)) or "-"


@click.command("status", cls=EnvCommand)
@kafka_options
@group_option
@click.option("--dlq-topic", envvar="DLQ_TOPIC", default=None, help="[default: <topic>.dlq]")
@click.option(
    "--parking-topic", envvar="PARKING_TOPIC", default=None, help="[default: <topic>.parked]"
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (stable keys).")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.5),
    default=None,
    help="Refresh every N s until Ctrl-C (with --json: one document a line).",
)
def status_command(
    *,
    bootstrap_servers: str,
    topic: str,
    group: str,
    dlq_topic: str | None,
    parking_topic: str | None,
    as_json: bool,
    watch: float | None,
) -> None:
    """Group state, members, per-partition lag and horizon, dead-letter and parking depth."""
    try:
        side = {
            "dead_letter": check_topic(dlq_topic or f"{topic}.dlq", "DLQ_TOPIC"),
            "parking": check_topic(parking_topic or f"{topic}.parked", "PARKING_TOPIC"),
        }
        check_topic(topic, "FULFILLMENT_TOPIC")
    except ConfigurationError as exc:
        raise BadSetting(exc) from None
    config = kafka_cluster(bootstrap_servers)
    console = Console()
    try:
        while True:
            try:
                doc = collect(config, topic, group, side)
            except TopicMissingError:
                click.echo(
                    f"error: topic {topic} does not exist (FULFILLMENT_TOPIC / --topic)", err=True
                )
                sys.exit(2)
            except InfrastructureError as exc:
                raise click.ClickException(str(exc)) from exc
            if as_json:
                click.echo(json.dumps(doc, sort_keys=True))
            else:
                if watch is not None:
                    console.clear()
                console.print(render(doc))
            if watch is None:
                return
            time.sleep(watch)
    except KeyboardInterrupt:
        return
