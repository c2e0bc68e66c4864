"""What the engine's collaborators share: partitions, the in-flight count, why work stopped."""

from __future__ import annotations

from consumer.core.dispatch_log import DispatchLog
from consumer.core.lanes import CoalescingPolicy
from consumer.member.holdings import Holdings, State
from consumer.member.stop import EXIT_CONFIGURATION, EXIT_DEAD_LETTER_LIMIT, EXIT_OK, WorkStop
from tests.event_builders import shipment


def state(partition: int) -> State:
    return State(partition, CoalescingPolicy(10), 0, DispatchLog(0))


def test_a_dropped_partition_takes_its_proposed_batches_out_of_the_in_flight_count() -> None:
    held = Holdings()
    ps = state(3)
    for offset, order in enumerate(["a", "b"]):
        ps.lanes.add(offset, shipment(f"e{offset}", order))
    ps.proposed += ps.lanes.next_batches(0.0, 2)
    held.partitions[3] = ps
    held.in_flight = 5  # two proposed here, three out elsewhere
    assert held.drop(3) is ps
    assert held.in_flight == 3
    assert held.drop(3) is None
    assert held.in_flight == 3


def test_a_partition_state_replaced_by_a_new_assignment_is_no_longer_owned() -> None:
    held = Holdings()
    old, new = state(1), state(1)
    held.partitions[1] = old
    assert held.owns(old)
    held.partitions[1] = new
    assert not held.owns(old)
    assert held.owns(new)


def test_work_goes_on_until_something_stops_it() -> None:
    stop = WorkStop(health=None)
    assert not stop.stopped
    assert stop.exit_code == EXIT_OK


def test_the_first_reason_to_stop_wins() -> None:
    stop = WorkStop(health=None)
    stop.overwhelmed("dead-letter limit")
    stop.refused("401 from Digital River")
    assert stop.stopped
    assert (stop.reason, stop.exit_code) == ("dead-letter limit", EXIT_DEAD_LETTER_LIMIT)


def test_refused_credentials_stop_with_the_configuration_exit_code() -> None:
    stop = WorkStop(health=None)
    stop.refused("401 from Digital River")
    assert stop.exit_code == EXIT_CONFIGURATION
