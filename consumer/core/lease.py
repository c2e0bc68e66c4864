"""Fencing by time: may this member still act for its partitions? [pure]

A member frozen longer than the group's session timeout (a GC pause, a stalled node, SIGSTOP)
has lost its partitions without knowing it: another member owns and reconciles them. When it
wakes with batches in hand it must not post them. The broker cannot stop a request that leaves
our process, so the member stops itself: every POST (and every reconcile read acted upon) needs
a valid `MembershipLease`.

The lease lasts `length` seconds from the *start* of the last Kafka-thread call that confirmed
membership: a `consume()` (librdkafka heartbeats in its own thread while the process runs) or a
synchronous commit the group coordinator accepted (it checks the member's generation/epoch).
Taking the start, not the return, means a call that spanned a freeze renews nothing past it.

Once the lease has lapsed (the process was frozen, or the Kafka thread was blocked — a commit to
an unreachable coordinator, a long drain — while completions kept dispatching on the event loop),
a `consume()` no longer renews it: librdkafka may not yet know that the session expired. Only
*proof* does: a commit the coordinator accepted, which a fenced member's commit never is.

`length` must stay below the session timeout by the heartbeat interval and a margin, so the lease
ends before the broker can evict the member (`derived_lease_seconds`). Time is passed in.
"""

from __future__ import annotations

import math
from typing import Final

# librdkafka's session.timeout.ms; also the KIP-848 broker's group.consumer.session.timeout.ms
DEFAULT_SESSION_TIMEOUT_MS: Final = 45_000
LEASE_SHARE_OF_SESSION: Final = 2 / 3


def derived_lease_seconds(session_timeout_ms: int | None) -> float:
    """The default lease: two thirds of the session timeout (30 s of librdkafka's 45 s), which
    leaves room for the heartbeat interval (librdkafka's 3 s, ours 1 s) and request transit."""
    session = DEFAULT_SESSION_TIMEOUT_MS if session_timeout_ms is None else session_timeout_ms
    return session / 1000 * LEASE_SHARE_OF_SESSION


class MembershipLease:
    """Contract: `valid(now)` is True only while `now` is less than `length` after the start of
    the last confirmation that counted. `heard(at)` (a consume that began at `at`) counts only while
    the lease is valid at `at` or before the first confirmation; `proven(at)` (an accepted commit
    that began at `at`) always counts. Confirmations never move the lease backwards."""

    def __init__(self, length: float) -> None:
        if not (length > 0 and math.isfinite(length)):
            raise ValueError(f"lease length must be a positive number of seconds, got {length}")
        self.length = length
        self._until: float | None = None  # end of the lease; None before any confirmation

    def heard(self, at: float) -> None:
        """A `consume()` that started at `at` returned: renews a lease that had not lapsed."""
        if self._until is None or at < self._until:
            self._extend(at)

    def proven(self, at: float) -> None:
        """The coordinator accepted a commit sent after `at`: membership proven at `at`."""
        self._extend(at)

    def valid(self, now: float) -> bool:
        return self._until is not None and now < self._until

    def lapsed(self, now: float) -> bool:
        """Confirmed once, expired since: only a proof (an accepted commit) renews it now."""
        return self._until is not None and now >= self._until

    def remaining(self, now: float) -> float:
        return 0.0 if self._until is None else max(0.0, self._until - now)

    def _extend(self, at: float) -> None:
        until = at + self.length
        if self._until is None or until > self._until:
            self._until = until
