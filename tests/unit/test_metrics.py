"""Metrics: every series of docs/metrics.md, with its type and labels, and bounded label values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from consumer.ops.metrics import DR_ERROR_CODES, PREFIX, Metrics, normalise_code

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| (?P<type>\w+) \| (?P<labels>[^|]*) \|")


def contract() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, labels), read from the table of docs/metrics.md itself."""
    rows: dict[str, tuple[str, frozenset[str]]] = {}
    for line in CONTRACT.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            labels = frozenset(
                part.strip() for part in match["labels"].split(",") if part.strip() not in {"—", ""}
            )
            rows[match["name"]] = (match["type"], labels)
    return rows


def families(metrics: Metrics) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def exercise_every_verb(metrics: Metrics) -> None:
    metrics.record_consumed(0)
    metrics.record_decoded(0)
    metrics.record_dead_lettered(0, "undecodable")
    metrics.record_parked(0, 2)
    metrics.record_settled(0, "applied", 3)
    metrics.record_dr_call("POST", 201, None, 0.02)
    metrics.record_post_applied(3)
    metrics.record_reconcile_read("suspect")
    metrics.record_request("capture", "applied")
    metrics.set_rate_limit(30)
    metrics.set_in_flight(4)
    metrics.set_partition(0, committed=10, end=15, oldest_unsettled_age=1.5, paused=True)
    metrics.add_budget_wait(0.25)
    metrics.set_budget_rate(12.5)
    metrics.set_circuit_open(True)
    metrics.set_ready(True)
    metrics.set_configuration_failure(False)


def sample_value(metrics: Metrics, sample_name: str, **labels: str) -> float | None:
    for family in families(metrics).values():
        for sample in family.samples:
            if sample.name == sample_name and sample.labels == labels:
                return float(sample.value)
    return None


def test_the_contract_table_lists_twenty_two_metrics() -> None:
    assert len(contract()) == 22


def test_every_metric_of_the_contract_exists_with_its_type_and_labels() -> None:
    metrics = Metrics()
    exercise_every_verb(metrics)
    found = families(metrics)
    for name, (kind, labels) in contract().items():
        family_name = PREFIX + name.removesuffix("_total") if kind == "counter" else PREFIX + name
        assert family_name in found, name
        family = found[family_name]
        assert family.type == kind, name
        main = {"counter": "_total", "histogram": "_count", "gauge": ""}[kind]
        samples = [s for s in family.samples if s.name == family_name + main]
        assert samples, name
        assert {frozenset(s.labels) for s in samples} == {labels}, name


def test_the_registry_holds_no_metric_outside_the_contract() -> None:
    metrics = Metrics()
    exercise_every_verb(metrics)
    # prometheus_client adds a `<counter|histogram>_created` gauge beside each (its default).
    names = {n.removeprefix(PREFIX) for n in families(metrics) if not n.endswith("_created")}
    expected = {n.removesuffix("_total") for n in contract()}
    assert names == expected


def test_counters_count_and_partition_gauges_report_the_lag() -> None:
    metrics = Metrics()
    exercise_every_verb(metrics)
    metrics.record_consumed(0)
    assert sample_value(metrics, PREFIX + "records_consumed_total", partition="0") == 2
    assert sample_value(metrics, PREFIX + "events_parked_total", partition="0") == 2
    settled = sample_value(
        metrics, PREFIX + "events_settled_total", partition="0", outcome="applied"
    )
    assert settled == 3
    assert sample_value(metrics, PREFIX + "partition_lag", partition="0") == 5
    assert sample_value(metrics, PREFIX + "partition_paused", partition="0") == 1
    assert sample_value(metrics, PREFIX + "rate_budget_wait_seconds_total") == 0.25


def test_lag_is_left_unset_until_both_offsets_are_known() -> None:
    metrics = Metrics()
    metrics.set_partition(3, committed=None, end=40, oldest_unsettled_age=0.0, paused=False)
    assert sample_value(metrics, PREFIX + "partition_end_offset", partition="3") == 40
    assert sample_value(metrics, PREFIX + "partition_lag", partition="3") == 0
    metrics.set_partition(3, committed=50, end=40, oldest_unsettled_age=0.0, paused=False)
    assert sample_value(metrics, PREFIX + "partition_lag", partition="3") == 0  # never negative


def test_an_unknown_digital_river_code_is_counted_as_other() -> None:
    metrics = Metrics()
    metrics.record_dr_call("POST", 409, "order_fulfilled", 0.1)
    metrics.record_dr_call("POST", 400, "a_code_nobody_documented", 0.1)
    metrics.record_dr_call("GET", None, None, 0.1)
    requests = PREFIX + "dr_requests_total"
    assert sample_value(metrics, requests, method="POST", status="409", code="order_fulfilled") == 1
    assert sample_value(metrics, requests, method="POST", status="400", code="other") == 1
    assert sample_value(metrics, requests, method="GET", status="none", code="none") == 1


def test_code_normalisation_keeps_the_closed_list_and_bounds_the_rest() -> None:
    assert all(normalise_code(code) == code for code in DR_ERROR_CODES)
    assert normalise_code("item_fulfilled") == "item_fulfilled"
    assert normalise_code("api_key_expired") == "api_key_expired"
    assert normalise_code("ORDER_FULFILLED") == "other"
    assert normalise_code(None) == "none"


@pytest.mark.parametrize(
    ("verb", "args"),
    [
        ("record_dead_lettered", (0, "made_up_class")),
        ("record_settled", (0, "vanished", 1)),
        ("record_reconcile_read", ("curiosity",)),
        ("record_dr_call", ("DELETE", 200, None, 0.1)),
    ],
)
def test_a_value_outside_a_closed_vocabulary_is_refused(verb: str, args: tuple[Any, ...]) -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="is not one of"):
        getattr(metrics, verb)(*args)
    assert "made_up_class" not in metrics.render().decode()


def test_forget_partition_removes_its_gauge_series_and_keeps_the_others() -> None:
    metrics = Metrics()
    metrics.set_partition(1, committed=5, end=9, oldest_unsettled_age=2.0, paused=False)
    metrics.set_partition(2, committed=7, end=7, oldest_unsettled_age=0.0, paused=False)
    metrics.forget_partition(1)
    metrics.forget_partition(1)  # idempotent
    metrics.forget_partition(99)  # never seen
    text = metrics.render().decode()
    assert 'partition="1"' not in text
    assert sample_value(metrics, PREFIX + "partition_committed_offset", partition="2") == 7
    metrics.set_partition(1, committed=6, end=9, oldest_unsettled_age=0.0, paused=False)
    assert sample_value(metrics, PREFIX + "partition_lag", partition="1") == 3


def test_two_metrics_instances_do_not_share_series() -> None:
    first, second = Metrics(), Metrics()
    first.record_consumed(0)
    first.set_ready(True)
    assert sample_value(first, PREFIX + "records_consumed_total", partition="0") == 1
    assert sample_value(second, PREFIX + "records_consumed_total", partition="0") is None
    assert sample_value(second, PREFIX + "member_ready") == 0


def test_no_series_carries_an_order_or_event_id() -> None:
    metrics = Metrics()
    exercise_every_verb(metrics)
    allowed = {"partition", "error_class", "outcome", "method", "status", "code", "reason", "le"}
    allowed |= {"purpose", "result"}  # closed vocabularies (metrics.RequestPurpose, RequestResult)
    for family in families(metrics).values():
        for sample in family.samples:
            assert set(sample.labels) <= allowed


def test_requests_are_counted_by_purpose_and_result_from_closed_vocabularies() -> None:
    metrics = Metrics()
    metrics.record_request("bulk_page", "answered")
    metrics.record_request("bulk_page", "answered")
    metrics.record_request("capture", "rate_limited")
    name = PREFIX + "dr_requests_by_purpose_total"
    assert sample_value(metrics, name, purpose="bulk_page", result="answered") == 2
    assert sample_value(metrics, name, purpose="capture", result="rate_limited") == 1
    with pytest.raises(ValueError, match="purpose"):
        metrics.record_request("order_ord_1", "applied")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="result"):
        metrics.record_request("capture", "201")  # type: ignore[arg-type]
