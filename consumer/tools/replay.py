"""`fulfillment-consumer replay`: move the group's committed offsets, keeping the horizon. [io]

Contract: every partition's new commit carries `encode_commit_metadata(H)` with
H = max(new offset, old committed offset, old dispatch horizon). The next owner of the partition
therefore treats every record in [new offset, H) as suspect and asks Digital River which of
their events it already has before posting (`consumer.core.reconcile`): a replay re-applies nothing
(PRODUCT guarantee 8). An old commit without our metadata (moved by another tool) gives no
horizon; then the partition's end offset stands in for it, the safe upper bound. A group that
never committed starts fresh, as its members treat it (`SuspectRange`, the one rule for both).

Like `kafka-consumer-groups --reset-offsets`, it shows the plan and changes nothing unless
`--execute` is given, and the move is refused (exit 2) while the group has members: a live
member would overwrite the commit with its own on the next interval. The commit itself is made
by a consumer that never joins the group, which the broker accepts only while the group is
empty, so a member joining between the check and the commit fails it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

import click
from rich.console import Console
from rich.table import Table

from consumer.core.errors import ConfigurationError, InfrastructureError, RetryableFailure
from consumer.core.reconcile import SuspectRange, decode_commit_metadata, encode_commit_metadata
from consumer.core.replay_targets import (
    offsets_csv,
    parse_duration,
    parse_partitions,
    read_offsets_csv,
    split_topic,
)
from consumer.kafka.admin import GroupAdmin
from consumer.tools.options import (
    BadSetting,
    EnvCommand,
    group_option,
    kafka_cluster,
    kafka_options,
)
from consumer.tools.replay_preview import (
    PreviewTooLarge,
    Span,
    emit_json,
    preview_options,
    preview_request,
    report_dry_run,
)

IDLE_STATES = frozenset({"EMPTY", "DEAD"})
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """What the broker says about one partition of the topic for the group."""

    partition: int
    committed: int | None  # None: the group never committed it
    metadata: str | None
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class Move:
    """One partition's planned commit: `new` with `horizon` in its metadata."""

    partition: int
    old: int | None
    new: int
    end: int
    horizon: int

    @property
    def reread(self) -> int:
        """Records the group already got past that it will read again."""
        return max(0, min(self.old if self.old is not None else 0, self.end) - self.new)

    @property
    def span(self) -> Span:
        """What members started after the move read: [new, end), re-read below `old`."""
        return Span(self.partition, self.new, self.end, self.old)


def plan_move(offsets: PartitionOffsets, target: int) -> Move:
    """Clamp `target` into the partition's records and carry the horizon forward. [pure]"""
    new = min(max(target, offsets.low), offsets.high)
    known = decode_commit_metadata(offsets.metadata) if offsets.committed is not None else None
    horizon = SuspectRange.at_assignment(offsets.committed, known, offsets.high).carry(new)
    return Move(offsets.partition, offsets.committed, new, offsets.high, horizon)


Resolver = Callable[[PartitionOffsets], int]


def resolver(
    *,
    to_earliest: bool,
    to_latest: bool,
    to_offset: int | None,
    shift_by: int | None,
    timestamps: dict[int, int] | None,
    targets: Mapping[int, int] | None = None,
) -> Resolver:
    """The target offset of each partition, from exactly one of the `--to-*`/`--shift-by`
    (--to-current is a shift by 0), `timestamps` (--to-datetime, --by-duration) or `targets`
    (--from-file)."""
    if to_earliest:
        return lambda p: p.low
    if to_latest:
        return lambda p: p.high
    if to_offset is not None:
        return lambda p: to_offset
    if shift_by is not None:
        return lambda p: (p.low if p.committed is None else p.committed) + shift_by
    found = targets if targets is not None else timestamps
    assert found is not None
    # offsets_for_times answers -1 when no record is that recent: the end
    return lambda p: found[p.partition] if found[p.partition] >= 0 else p.high


def read_offsets(
    admin: GroupAdmin, topic: str, partitions: Sequence[int]
) -> list[PartitionOffsets]:
    """The group's committed offsets of `partitions` with their watermarks."""
    committed = admin.committed(topic, partitions)
    marks = admin.watermarks(topic, partitions)
    return [
        PartitionOffsets(c.partition, c.offset, c.metadata, *marks[c.partition]) for c in committed
    ]


def active_members(admin: GroupAdmin) -> list[str]:
    """Members of the group if it is not empty (`client-id@host (member-id)`)."""
    found = admin.describe()
    if found.state in IDLE_STATES:
        return []
    members = [f"{m.client_id}@{m.host} ({m.member_id})" for m in found.members]
    return members or [f"(none listed; group state {found.state})"]


def commit_moves(admin: GroupAdmin, topic: str, moves: Sequence[Move]) -> None:
    """One synchronous commit of every move, each with its horizon; refused by the broker
    (InfrastructureError) if a member joined."""
    admin.commit(topic, {m.partition: (m.new, encode_commit_metadata(m.horizon)) for m in moves})


def _operator_input(parse: Callable[[], T], option: str) -> T:
    try:
        return parse()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@dataclass(frozen=True, slots=True)
class _Selection:
    """The topic, the partitions named (None: all) and --from-file's offsets."""

    topic: str
    partitions: list[int] | None
    targets: Mapping[int, int] | None


def _selection(
    topic_option: str, partitions: str | None, from_file: TextIO | None, group: str
) -> _Selection:
    topic, named = _operator_input(lambda: split_topic(topic_option), "--topic")
    if partitions:
        if named is not None:
            raise click.UsageError("give the partitions once: --topic TOPIC:0,3 or --partitions")
        named = _operator_input(lambda: parse_partitions(partitions), "--partitions")
    if from_file is None:
        return _Selection(topic, named, None)
    if named is not None:
        raise click.UsageError("--from-file names its own partitions")
    text = from_file.read()
    targets = _operator_input(
        lambda: read_offsets_csv(text, topic=topic, group=group), "--from-file"
    )
    return _Selection(topic, sorted(targets), targets)


def _since_ms(to_datetime: str | None, by_duration: str | None, now: float) -> int | None:
    """The moment of --to-datetime or --by-duration (before `now`, in s), in ms."""
    if to_datetime is not None:
        return _timestamp_ms(to_datetime)
    if by_duration is not None:
        duration = _operator_input(lambda: parse_duration(by_duration), "--by-duration")
        return int((now - duration.total_seconds()) * 1000)
    return None


def _timestamp_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 date-time: {text!r}") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _table(topic: str, group: str, moves: Sequence[Move]) -> Table:
    table = Table(title=f"replay of {topic} for group {group}")
    for column in ("partition", "committed", "new", "end", "re-read", "horizon written"):
        table.add_column(column, justify="right")
    for m in moves:
        old = "-" if m.old is None else str(m.old)
        row = (m.partition, old, m.new, m.end, m.reread, m.horizon)
        table.add_row(*map(str, row))
    return table


def _report_commit(document: dict[str, object], count: int, *, as_json: bool, export: bool) -> None:
    if as_json:
        emit_json(document | {"committed": True})
    else:  # after --export's CSV on stdout: on stderr
        Console(stderr=export).print(
            f"committed {count} partition(s); start the members to reprocess"
        )


@click.command("replay", cls=EnvCommand)
@kafka_options
@group_option
@click.option("--to-earliest", is_flag=True, help="The first record still in each partition.")
@click.option("--to-latest", is_flag=True, help="The end: skip everything not yet committed.")
@click.option("--to-current", is_flag=True, help="Where the group is (rewrites the commit only).")
@click.option("--to-offset", type=int, default=None, help="This offset (clamped to the records).")
@click.option("--to-datetime", default=None, help="First record at or after (ISO 8601, UTC).")
@click.option("--by-duration", default=None, help="First record of the last PT1H, P1DT12H, ...")
@click.option("--shift-by", type=int, default=None, help="Move by N (negative: back).")
@click.option(
    "--from-file",
    type=click.File("r"),
    default=None,
    help="Offsets in Kafka's CSV (topic,partition,offset lines), e.g. from --export.",
)
@click.option(
    "--partitions",
    default=None,
    help="Comma-separated, e.g. 0,3,5 (or --topic TOPIC:0,3,5) [default: all].",
)
@click.option("--execute", is_flag=True, help="Commit the plan. Without it nothing changes.")
@click.option("--dry-run", is_flag=True, help="Show the plan only (as without --execute).")
@click.option("--export", is_flag=True, help="Print the plan as Kafka's CSV instead of a table.")
@preview_options
def replay_command(
    *,
    bootstrap_servers: str,
    topic: str,
    group: str,
    to_earliest: bool,
    to_latest: bool,
    to_current: bool,
    to_offset: int | None,
    to_datetime: str | None,
    by_duration: str | None,
    shift_by: int | None,
    from_file: TextIO | None,
    partitions: str | None,
    execute: bool,
    dry_run: bool,
    export: bool,
    **options: Any,
) -> None:
    """Plan a move of the group's committed offsets; with --execute, commit it.

    As `kafka-consumer-groups --reset-offsets`: the plan is shown and nothing changes unless
    --execute is given. Stop every member first (refused with exit 2 otherwise). Each new
    commit keeps the old dispatch horizon, so records the group already passed are reconciled
    with Digital River at runtime before any POST: replayed events it has are not re-applied.

    Without --execute and with --dr-api-url, the records to be read again are decoded and
    looked up at Digital River: per partition, how many it already has and how many would be
    posted.
    """
    chosen = (to_earliest, to_latest, to_current, to_offset is not None, to_datetime,
              by_duration, shift_by is not None, from_file)  # fmt: skip
    if sum(map(bool, chosen)) != 1:
        raise click.UsageError(
            "give exactly one of --to-earliest, --to-latest, --to-current, --to-offset, "
            "--to-datetime, --by-duration, --shift-by, --from-file"
        )
    if execute and dry_run:
        raise click.UsageError("give --execute or --dry-run, not both")
    chosen_partitions = _selection(topic, partitions, from_file, group)
    topic, named = chosen_partitions.topic, chosen_partitions.partitions
    since_ms = _since_ms(to_datetime, by_duration, time.time())
    try:
        wanted = None if execute else preview_request(options)  # before any broker call
        config = kafka_cluster(bootstrap_servers)
        with GroupAdmin(config, group) as admin:
            members = active_members(admin)
            if members:
                click.echo(
                    f"error: group {group} has active members; stop them first: "
                    f"{', '.join(members)}",
                    err=True,
                )
                sys.exit(2)
            existing = admin.partitions(topic)
            if existing is None:
                raise click.ClickException(f"topic {topic} does not exist")
            unknown = sorted(set(named or ()) - set(existing))
            if unknown:
                raise click.BadParameter(f"{topic} has no partition {unknown}")
            selected = named or existing
            times = None if since_ms is None else admin.offsets_for_time(topic, selected, since_ms)
            to = resolver(
                to_earliest=to_earliest,
                to_latest=to_latest,
                to_offset=to_offset,
                shift_by=0 if to_current else shift_by,  # a group that never committed: the start
                timestamps=times,
                targets=chosen_partitions.targets,
            )
            moves = [plan_move(p, to(p)) for p in read_offsets(admin, topic, selected)]
            _show_plan(topic, group, moves, export=export, as_json=bool(options["as_json"]))
            document: dict[str, object] = {
                "topic": topic,
                "group": group,
                "dry_run": not execute,
                "moves": [asdict(m) | {"reread": m.reread} for m in moves],
            }
            if wanted is not None and export:
                click.echo("plan only: nothing committed (add --execute to commit)", err=True)
            elif wanted is not None:
                spans = [m.span for m in moves]
                report_dry_run(
                    Console(), wanted, config=config, topic=topic, document=document, spans=spans
                )
            else:
                commit_moves(admin, topic, moves)
                as_json = bool(options["as_json"]) and not export
                _report_commit(document, len(moves), as_json=as_json, export=export)
    except ConfigurationError as exc:
        raise BadSetting(exc) from None
    except (InfrastructureError, PreviewTooLarge) as exc:  # Kafka's, before Digital River's
        raise click.ClickException(str(exc)) from exc
    except RetryableFailure as exc:
        raise click.ClickException(f"Digital River could not answer: {exc}") from exc


def _show_plan(
    topic: str, group: str, moves: Sequence[Move], *, export: bool, as_json: bool
) -> None:
    if export:
        click.echo(offsets_csv(topic, ((m.partition, m.new) for m in moves)), nl=False)
    elif not as_json:
        Console().print(_table(topic, group, moves))
