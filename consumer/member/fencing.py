"""The membership lease kept by the loop: a member that may have lost its partitions posts
nothing more (core/lease.py decides; here it is renewed and its changes are logged). [io]"""

from __future__ import annotations

import structlog

from consumer.core.lease import MembershipLease

_log = structlog.get_logger("engine")


class Fencing:
    """Renewed from every pass of the loop: an accepted commit proves membership; a consume only
    extends a lease still running."""

    def __init__(self, lease_seconds: float) -> None:
        self._lease = MembershipLease(lease_seconds)
        self._was_valid = False

    def valid(self, now: float) -> bool:
        return self._lease.valid(now)

    def lapsed(self, now: float) -> bool:
        return self._lease.lapsed(now)

    def renew(self, proven: bool, commit_at: float, consume_at: float, now: float) -> None:
        """After a pass: `proven` when its commit was accepted (sent at `commit_at`); its consume
        began at `consume_at`."""
        if proven:
            self._lease.proven(commit_at)
        self._lease.heard(consume_at)
        valid = self._lease.valid(now)
        if valid != self._was_valid:
            self._was_valid = valid
            if valid:
                _log.info("membership_lease_confirmed", lease_seconds=self._lease.length)
            else:
                _log.warning("membership_lease_lapsed", lease_seconds=self._lease.length)
