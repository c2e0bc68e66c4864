"""`replay`'s operator input in Kafka's formats: durations, `topic:0,3`, the offsets CSV."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.replay_targets import (
    offsets_csv,
    parse_duration,
    parse_partitions,
    read_offsets_csv,
    split_topic,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1H", timedelta(hours=1)),
        ("PT15M", timedelta(minutes=15)),
        ("PT30S", timedelta(seconds=30)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1D", timedelta(days=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P2DT3H4M5S", timedelta(days=2, hours=3, minutes=4, seconds=5)),
        ("pt1h", timedelta(hours=1)),
    ],
)
def test_iso_8601_durations_parse_as_javas_duration_does(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1H", "PT1", "P1Y", "P1W", "-PT1H", "T1H"])
def test_malformed_durations_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="PT1H"):
        parse_duration(text)


@given(st.integers(0, 400), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59))
def test_every_written_duration_reads_back(
    days: int, hours: int, minutes: int, seconds: int
) -> None:
    text = f"P{days}DT{hours}H{minutes}M{seconds}S"
    assert parse_duration(text) == timedelta(
        days=days, hours=hours, minutes=minutes, seconds=seconds
    )


def test_a_topic_with_partitions_splits_as_kafkas_topic_option() -> None:
    assert split_topic("orders:0,3") == ("orders", [0, 3])
    assert split_topic("orders:3,0,3") == ("orders", [0, 3])
    assert split_topic("warehouse.fulfillment-events") == ("warehouse.fulfillment-events", None)


@pytest.mark.parametrize("text", ["", ",", "a", "0,x", "-1"])
def test_partition_lists_that_are_not_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="0,3,5"):
        parse_partitions(text)


def test_the_export_is_kafkas_csv() -> None:
    assert offsets_csv("orders", [(0, 3), (2, 17)]) == "orders,0,3\norders,2,17\n"


_OFFSETS = st.dictionaries(st.integers(0, 500), st.integers(0, 10**12), min_size=1)


@given(_OFFSETS)
def test_an_exported_plan_reads_back_as_the_same_offsets(offsets: dict[int, int]) -> None:
    text = offsets_csv("orders", sorted(offsets.items()))
    assert read_offsets_csv(text, topic="orders", group="g") == offsets


def test_kafkas_four_column_form_is_read_for_the_named_group() -> None:
    text = "fc,orders,0,5\n\nfc,orders,1,7\n"
    assert read_offsets_csv(text, topic="orders", group="fc") == {0: 5, 1: 7}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("other,orders,0,5\n", "group 'other'"),
        ("billing,0,5\n", "topic 'billing'"),
        ("orders,0\n", "line 1"),
        ("orders,0,5\norders,zero,5\n", "line 2"),
        ("orders,0,-1\n", "negative"),
        ("orders,0,5\norders,0,6\n", "twice"),
        ("\n\n", "no topic,partition,offset"),
    ],
)
def test_a_bad_offsets_file_is_refused_saying_where(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        read_offsets_csv(text, topic="orders", group="fc")
