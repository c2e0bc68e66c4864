"""What `redrive` puts back: everything parked since the order's last redrive, in event order."""

from __future__ import annotations

from consumer.core.deadletters import Headers, parking_headers, redrive_marker_headers
from consumer.tools.redrive import ParkedRecord, read_through, redriven_headers, select


def parked(
    offset: int, order: str, value: bytes, position: int, partition: int = 0
) -> ParkedRecord:
    headers = parking_headers(
        order_id=order,
        reason="conflict",
        status=409,
        code=None,
        dr_message=None,
        topic="events",
        partition=partition,
        offset=position + 100,  # where this copy was read: a redriven copy sits further on
        timestamp_ms=None,
        parked_at_ms=1,
        original=(("trace", value),),
        position=position,
    )
    return ParkedRecord(partition, offset, order.encode(), value, headers)


def marker(offset: int, order: str, through: int) -> ParkedRecord:
    headers: Headers = redrive_marker_headers(
        order_id=order, topic="events", partition=0, through=through, landed=50
    )
    return ParkedRecord(0, offset, order.encode(), None, headers)


def test_a_record_parked_while_a_redrive_ran_is_redriven_next_time() -> None:
    records = [
        parked(0, "ord_a", b"e1", position=1),
        parked(1, "ord_a", b"e2", position=2),  # parked after the redrive read through 0
        marker(2, "ord_a", through=0),
    ]
    assert [r.value for r in select(records, "ord_a")] == [b"e2"]


def test_an_orders_records_go_back_in_the_order_the_events_were_first_read() -> None:
    records = [
        parked(0, "ord_a", b"e1", position=1),
        marker(1, "ord_a", through=0),
        parked(2, "ord_a", b"e3", position=30),  # still in the input when e1 was redriven
        parked(3, "ord_a", b"e1", position=1),  # e1 redriven, parked behind e3
        parked(4, "ord_b", b"x", position=5),
    ]
    assert [r.value for r in select(records, "ord_a")] == [b"e1", b"e3"]
    assert [r.value for r in select(records, None)] == [b"e1", b"e3", b"x"]


def test_only_the_first_redriven_record_of_an_order_is_marked_first() -> None:
    records = [parked(0, "ord_a", b"e1", position=1), parked(1, "ord_a", b"e2", position=2)]
    through = read_through(records)
    assert through == {0: 1}
    first, second = (
        dict(redriven_headers(r, through=through[0], first=i == 0)) for i, r in enumerate(records)
    )
    assert first["fc.redrive.first"] == b"1"
    assert "fc.redrive.first" not in second
    assert first["fc.redrive.through"] == second["fc.redrive.through"] == b"1"
    assert (first["fc.redrive.position"], first["trace"]) == (b"1", b"e1")
