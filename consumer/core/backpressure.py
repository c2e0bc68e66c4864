"""Which partitions to pause and resume, by how many records each holds unsettled. [pure]

A partition holding `limit` unsettled records or more is paused (Kafka stops fetching it); it
is resumed once it holds half the limit or less. The gap between the two keeps a partition near
its bound from flapping between pause and resume on every pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consumer.core.partition import PartitionState


@dataclass(frozen=True, slots=True)
class FlowChange:
    """Partitions to pause and to resume now (each listed only when its state changes)."""

    pause: list[int]
    resume: list[int]


def should_pause(paused: bool, buffered: int, limit: int) -> bool:
    """Whether a partition holding `buffered` unsettled records is paused after this pass."""
    if paused:
        return buffered > limit // 2
    return buffered >= limit


def flow_changes(buffered: Mapping[int, int], paused: Mapping[int, bool], limit: int) -> FlowChange:
    """The partitions of `buffered` whose paused state changes, given the current one."""
    pause, resume = [], []
    for p, held in buffered.items():
        was = paused.get(p, False)
        now = should_pause(was, held, limit)
        if now and not was:
            pause.append(p)
        elif was and not now:
            resume.append(p)
    return FlowChange(pause, resume)


def apply_backpressure(partitions: Mapping[int, PartitionState[Any]], limit: int) -> FlowChange:
    """`flow_changes` for the partitions a member holds, recorded in each state's `paused`."""
    change = flow_changes(
        {p: ps.buffered for p, ps in partitions.items()},
        {p: ps.paused for p, ps in partitions.items()},
        limit,
    )
    for p in change.pause:
        partitions[p].paused = True
    for p in change.resume:
        partitions[p].paused = False
    return change
