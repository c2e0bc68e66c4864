"""The member's Prometheus metrics: the contract of docs/metrics.md, behind verbs the engine calls.

`Metrics` owns its own `CollectorRegistry` (never the process-global one), so tests and several
engines in one process never share a series. Every metric is named `fulfillment_consumer_<name>`
with exactly the type and labels of the table in docs/metrics.md.

Labels stay bounded: `partition` is the topic's partition number; `error_class`, `outcome`,
`reason` and `method` are closed vocabularies (an unknown value raises `ValueError`, a bug in the
caller); `status` is the HTTP status or `none`; `code` is a Digital River error code from the
closed list of ../shared/DR-API.md, `other` for any other code, `none` when absent.

The verbs are on the engine's hot path (~1000 calls/s): label children are cached in dicts keyed by
the raw arguments, so a repeated call costs a dict lookup and the child's own increment. All verbs
are thread-safe (prometheus_client locks each value) and never raise except for a closed-vocabulary
violation. `forget_partition` drops a revoked partition's gauges; counters keep their series (they
are this member's history; removing them would lose increments not yet scraped).
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from consumer.core.errors import BadInputClass

PREFIX: Final = "fulfillment_consumer_"

SettleOutcome: TypeAlias = Literal[
    "applied", "already_applied", "duplicate", "dead_lettered", "parked"
]
ReconcileReason: TypeAlias = Literal["suspect", "ambiguous", "conflict"]
HttpMethod: TypeAlias = Literal["POST", "GET"]
RequestPurpose: TypeAlias = Literal["capture", "cancel", "retry", "reconcile_read", "bulk_page"]
RequestResult: TypeAlias = Literal["applied", "answered", "rate_limited", "failed"]

DR_ERROR_CODES: Final = frozenset(
    {
        # 409 conflict codes
        "order_fulfilled",
        "order_complete",
        "order_cancelled",
        "item_fulfilled",
        "item_cancelled",
        "quantity_too_large",
        # the other codes DR-API.md lists
        "invalid_parameter",
        "missing_parameter",
        "unknown_parameter",
        "invalid_integer",
        "invalid_quantity_amount",
        "invalid_metadata_key",
        "invalid_metadata_value",
        "too_many_metadata_pairs",
        "not_found",
        "api_key_expired",
    }
)
"""Digital River error codes kept as label values; any other code is counted as `other`."""

# Connectors use 10-30 s client timeouts, so the top buckets reach 30 s.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Up to fulfillments.MAX_EVENTS_PER_REQUEST (133) events per POST.
EVENTS_PER_POST_BUCKETS: Final = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 133.0)

_ERROR_CLASSES: Final = frozenset(get_args(BadInputClass))
_OUTCOMES: Final = frozenset(get_args(SettleOutcome))
_REASONS: Final = frozenset(get_args(ReconcileReason))
_METHODS: Final = frozenset(get_args(HttpMethod))
_PURPOSES: Final = frozenset(get_args(RequestPurpose))
_RESULTS: Final = frozenset(get_args(RequestResult))


def normalise_code(code: str | None) -> str:
    """A Digital River error code as a bounded label value: itself if known, else `other`/`none`."""
    if code is None:
        return "none"
    return code if code in DR_ERROR_CODES else "other"


def _check(value: str, allowed: frozenset[str], label: str) -> str:
    if value not in allowed:
        raise ValueError(f"{label}={value!r} is not one of {sorted(allowed)}")
    return value


class Metrics:
    """Every metric of docs/metrics.md in a registry of its own (`.registry`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=r)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=r)

        p = ("partition",)
        self._consumed = counter("records_consumed_total", "Records read from the input topic", p)
        self._decoded = counter("records_decoded_total", "Records decoded into valid events", p)
        self._dead_lettered = counter(
            "records_dead_lettered_total",
            "Records sent to the dead-letter topic",
            ("partition", "error_class"),
        )
        self._parked = counter("events_parked_total", "Events sent to the parking topic", p)
        self._settled = counter(
            "events_settled_total", "Events settled, by outcome", ("partition", "outcome")
        )
        self._dr_requests = counter(
            "dr_requests_total", "Digital River calls by answer", ("method", "status", "code")
        )
        self._dr_duration = Histogram(
            PREFIX + "dr_request_duration_seconds",
            "Digital River call latency",
            ("method",),
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self._events_per_post = Histogram(
            PREFIX + "events_per_post",
            "Events carried by each applied POST",
            registry=r,
            buckets=EVENTS_PER_POST_BUCKETS,
        )
        self._by_purpose = counter(
            "dr_requests_by_purpose_total",
            "Digital River calls by what they were for and how they ended",
            ("purpose", "result"),
        )
        self._rate_limit = gauge(
            "rate_limit_requests_per_second", "The whole group's Digital River rate limit"
        )
        self._reconcile_reads = counter(
            "reconcile_reads_total", "Reads of an order's fulfillments, by reason", ("reason",)
        )
        self._in_flight = gauge("orders_in_flight", "Orders with a request in flight")
        self._committed = gauge("partition_committed_offset", "Last committed offset", p)
        self._end = gauge("partition_end_offset", "End offset (high watermark) when last polled", p)
        self._lag = gauge("partition_lag", "End offset - committed offset", p)
        self._oldest = gauge(
            "partition_oldest_unsettled_age_seconds",
            "Age of the oldest consumed record not yet settled (0 when none)",
            p,
        )
        self._paused = gauge("partition_paused", "1 while paused for backpressure", p)
        self._budget_wait = counter(
            "rate_budget_wait_seconds_total", "Time spent waiting for this member's rate share"
        )
        self._budget_rate = gauge(
            "rate_budget_requests_per_second", "This member's current share of the rate limit"
        )
        self._circuit_open = gauge("circuit_open", "1 while Digital River is considered down")
        self._ready = gauge("member_ready", "1 when /readyz answers 200")
        self._config_failure = gauge("configuration_failure", "1 after a 401/403 stopped work")
        self._partition_gauges = (self._committed, self._end, self._lag, self._oldest, self._paused)

        # Label-child caches, keyed by the raw arguments (values validated on first use).
        self._by_partition: dict[Counter, dict[int, Counter]] = {
            self._consumed: {},
            self._decoded: {},
            self._parked: {},
        }
        self._dead_lettered_children: dict[tuple[int, str], Counter] = {}
        self._settled_children: dict[tuple[int, str], Counter] = {}
        self._dr_children: dict[tuple[str, int | None, str], tuple[Counter, Histogram]] = {}
        self._reconcile_children: dict[str, Counter] = {}
        self._purpose_children: dict[tuple[str, str], Counter] = {}
        self._gauge_children: dict[int, tuple[Gauge, Gauge, Gauge, Gauge, Gauge]] = {}

    # -- records and events ------------------------------------------------------------------
    def _partition_counter(self, metric: Counter, partition: int) -> Counter:
        cache = self._by_partition[metric]
        child = cache.get(partition)
        if child is None:
            child = cache[partition] = metric.labels(str(partition))
        return child

    def record_consumed(self, partition: int, count: int = 1) -> None:
        self._partition_counter(self._consumed, partition).inc(count)

    def record_decoded(self, partition: int, count: int = 1) -> None:
        self._partition_counter(self._decoded, partition).inc(count)

    def record_dead_lettered(self, partition: int, error_class: BadInputClass) -> None:
        """Raises `ValueError` for an error class outside `errors.BadInputClass`."""
        key = (partition, error_class)
        child = self._dead_lettered_children.get(key)
        if child is None:
            _check(error_class, _ERROR_CLASSES, "error_class")
            child = self._dead_lettered.labels(str(partition), error_class)
            self._dead_lettered_children[key] = child
        child.inc()

    def record_parked(self, partition: int, events: int) -> None:
        self._partition_counter(self._parked, partition).inc(events)

    def record_settled(self, partition: int, outcome: SettleOutcome, count: int = 1) -> None:
        """Raises `ValueError` for an outcome outside `SettleOutcome`."""
        key = (partition, outcome)
        child = self._settled_children.get(key)
        if child is None:
            _check(outcome, _OUTCOMES, "outcome")
            child = self._settled_children[key] = self._settled.labels(str(partition), outcome)
        child.inc(count)

    # -- Digital River -----------------------------------------------------------------------
    def record_dr_call(
        self, method: HttpMethod, status: int | None, code: str | None, seconds: float
    ) -> None:
        """One call's answer (`status` None: transport failure) and latency."""
        norm = "none" if code is None else code if code in DR_ERROR_CODES else "other"
        key = (method, status, norm)
        children = self._dr_children.get(key)
        if children is None:
            _check(method, _METHODS, "method")
            label_status = "none" if status is None else str(status)
            children = (
                self._dr_requests.labels(method, label_status, norm),
                self._dr_duration.labels(method),
            )
            self._dr_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def record_request(self, purpose: RequestPurpose, result: RequestResult) -> None:
        """Where the budget went: one call, what for, how it ended. Raises `ValueError` outside
        the closed vocabularies."""
        key = (purpose, result)
        child = self._purpose_children.get(key)
        if child is None:
            _check(purpose, _PURPOSES, "purpose")
            _check(result, _RESULTS, "result")
            child = self._purpose_children[key] = self._by_purpose.labels(purpose, result)
        child.inc()

    def set_rate_limit(self, rps: float) -> None:
        self._rate_limit.set(rps)

    def record_post_applied(self, events: int) -> None:
        self._events_per_post.observe(events)

    def record_reconcile_read(self, reason: ReconcileReason) -> None:
        """Raises `ValueError` for a reason outside `ReconcileReason`."""
        child = self._reconcile_children.get(reason)
        if child is None:
            _check(reason, _REASONS, "reason")
            child = self._reconcile_children[reason] = self._reconcile_reads.labels(reason)
        child.inc()

    # -- state gauges ------------------------------------------------------------------------
    def set_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def set_partition(
        self,
        partition: int,
        committed: int | None,
        end: int | None,
        oldest_unsettled_age: float,
        paused: bool,
    ) -> None:
        """A partition's position; None for an offset not known yet (its gauge is left as is).

        The lag is set only when both offsets are known, and never below 0.
        """
        children = self._gauge_children.get(partition)
        if children is None:
            label = str(partition)
            committed_g, end_g, lag_g, oldest_g, paused_g = (
                g.labels(label) for g in self._partition_gauges
            )
            children = (committed_g, end_g, lag_g, oldest_g, paused_g)
            self._gauge_children[partition] = children
        committed_g, end_g, lag_g, oldest_g, paused_g = children
        if committed is not None:
            committed_g.set(committed)
        if end is not None:
            end_g.set(end)
        if committed is not None and end is not None:
            lag_g.set(max(end - committed, 0))
        oldest_g.set(oldest_unsettled_age)
        paused_g.set(1 if paused else 0)

    def forget_partition(self, partition: int) -> None:
        """Remove a revoked partition's gauge series (its new owner reports them). Idempotent."""
        if self._gauge_children.pop(partition, None) is None:
            return
        for gauge in self._partition_gauges:
            gauge.remove(str(partition))

    def add_budget_wait(self, seconds: float) -> None:
        if seconds > 0:
            self._budget_wait.inc(seconds)

    def set_budget_rate(self, rps: float) -> None:
        self._budget_rate.set(rps)

    def set_circuit_open(self, is_open: bool) -> None:
        self._circuit_open.set(1 if is_open else 0)

    def set_ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    def set_configuration_failure(self, failed: bool) -> None:
        self._config_failure.set(1 if failed else 0)

    def render(self) -> bytes:
        """The registry in the Prometheus text format (what `/metrics` serves)."""
        return generate_latest(self.registry)
