"""What the consumer decides about a batch, in one vocabulary. [pure]

One answer from Digital River (outcomes.py), one look at an order's fulfillments (reconcile.py)
and one whole trip of a batch (digitalriver/delivery.py) all end in one of these; the engine
carries a trip's decision out through settle.py.

    Applied      Digital River has the events: settle them          201, or found there by looking
    Reconcile    look at the order's fulfillments before deciding   409, a 201 without an id
    RetryLater   nothing settled: try again after `delay` seconds   429, 408, 5xx, no answer
    Park         permanent for this order: park it from here on     400/404/405/406, a real conflict
    Stop         configuration: stop work, dead-letter nothing      401/403, a refused request shape
    Fenced       the member's lease ended: nothing was sent         (a trip only)

`Answer` is what one answer can mean; a trip resolves every `Reconcile` by looking, so a
`TripDecision` never is one. Reasons are a closed vocabulary (`Reason`) so that logs, metrics and
parking headers can be counted by them; Digital River's own `code` and `message` ride along
when it sent them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from consumer.core.lanes import PendingEvent

Reason: TypeAlias = Literal[
    # what one answer to POST /fulfillments says (outcomes.py)
    "conflict",
    "created_without_id",
    "rate_limited",
    "request_timeout",
    "server_error",
    "connect_failed",
    "client_timeout",
    "connection_reset",
    "protocol_error",
    "rejected",
    "not_found",
    "unauthorized",
    "forbidden",
    "api_key_expired",
    "request_shape_rejected",
    "unexpected_status",
    # what a trip adds (delivery.py, the engine)
    "conflict_persisted",
    "split_interrupted",
    "reconcile_read_failed",
    "reconcile_read_refused",
    "internal_error",
]

Events: TypeAlias = tuple[PendingEvent, ...]


@dataclass(frozen=True, slots=True)
class Applied:
    """Digital River has the events: `posted` by this trip (as fulfillment `fulfillment_id`),
    `already` found there by looking. An answer alone names no events: the trip fills them in."""

    fulfillment_id: str | None
    posted: Events = ()
    already: Events = ()


@dataclass(frozen=True, slots=True)
class Reconcile:
    """Decide by looking: list the order's fulfillments and split applied from remaining events."""

    reason: Reason
    status: int
    code: str | None
    message: str | None = None

    def unexplained(self) -> Park:
        """Looking did not explain it (none of the batch is there): the order parks, with what
        Digital River said."""
        return Park(self.reason, self.status, self.code, self.message)


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Nothing settled; try again after `delay` s. `ambiguous`: Digital River may have applied
    it, so look before posting again. `systemic`: it says Digital River is failing as a whole
    (no answer, 408, 5xx), not something about this order or our pace (breaker.py)."""

    delay: float
    ambiguous: bool
    reason: Reason
    status: int | None
    systemic: bool


@dataclass(frozen=True, slots=True)
class Park:
    """Permanent for this order: park it (this event and every later one of the order). A split
    of a refused batch (refusal.py) may have applied its first events (`posted`), and a look may
    have found some there (`already`): those settle, the rest parks."""

    reason: Reason
    status: int | None
    code: str | None
    message: str | None = None
    posted: Events = ()
    already: Events = ()


@dataclass(frozen=True, slots=True)
class Stop:
    """Configuration is wrong: stop work, alert, dead-letter nothing."""

    reason: Reason
    status: int | None
    code: str | None

    def describe(self) -> str:
        """What an operator must fix, in one line."""
        said = f"{self.status} {self.code or self.reason}"
        if self.reason in ("unauthorized", "forbidden", "api_key_expired"):
            return f"Digital River refused the key ({said}): check DR_API_KEY / DR_API_KEY_FILE"
        if self.reason == "unexpected_status":
            return f"Digital River answered {said}: is DR_API_URL Digital River?"
        return f"Digital River refuses every request of this shape ({said})"


@dataclass(frozen=True, slots=True)
class Fenced:
    """The member's lease (lease.py) ended before a POST or before a look was acted on: nothing
    was sent, the member may have lost the partition. The batch waits, and looks first."""


Answer: TypeAlias = Applied | Reconcile | RetryLater | Park | Stop
TripDecision: TypeAlias = Applied | RetryLater | Park | Stop | Fenced
Decision: TypeAlias = Applied | Reconcile | RetryLater | Park | Stop | Fenced
