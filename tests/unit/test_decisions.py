"""The one decision vocabulary: what a stop tells the operator, what a lone conflict parks."""

from __future__ import annotations

from typing import get_args

import pytest

from consumer.core.decisions import (
    Answer,
    Applied,
    Decision,
    Fenced,
    Park,
    Reconcile,
    RetryLater,
    Stop,
    TripDecision,
)


@pytest.mark.parametrize(
    ("stop", "names"),
    [
        (Stop("unauthorized", 401, "unauthorized"), "DR_API_KEY"),
        (Stop("forbidden", 403, None), "DR_API_KEY"),
        (Stop("api_key_expired", 400, "api_key_expired"), "DR_API_KEY"),
        (Stop("unexpected_status", 302, None), "DR_API_URL"),
    ],
)
def test_a_stop_names_the_setting_to_fix(stop: Stop, names: str) -> None:
    assert names in stop.describe()
    assert str(stop.status) in stop.describe()


def test_a_refused_request_shape_says_every_request_is_refused() -> None:
    said = Stop("request_shape_rejected", 400, "too_many_metadata_pairs").describe()
    assert said == (
        "Digital River refuses every request of this shape (400 too_many_metadata_pairs)"
    )


def test_a_conflict_no_look_explains_parks_with_what_digital_river_said() -> None:
    conflict = Reconcile("conflict", 409, "quantity_too_large", "Quantity exceeds what is left.")
    assert conflict.unexplained() == Park(
        "conflict", 409, "quantity_too_large", "Quantity exceeds what is left."
    )


def test_a_trip_never_ends_in_reconcile_and_an_answer_is_never_fenced() -> None:
    assert set(get_args(Decision)) == {Applied, Reconcile, RetryLater, Park, Stop, Fenced}
    assert Reconcile not in get_args(TripDecision)
    assert Fenced not in get_args(Answer)
