"""Why a member stops working before it is told to, and who hears of it. [io]

Digital River (or the schema registry) refusing our credentials, or too many bad records in a
row, stop work: nothing more is decoded or dispatched, the loop ends and the member shuts down
cleanly (committing what is settled) with an exit code that says why.
"""

from __future__ import annotations

import structlog

from consumer.ops.health import HealthServer

_log = structlog.get_logger("engine")
EXIT_OK = 0
EXIT_CONFIGURATION = 3  # Digital River (or the schema registry) refused us: fix settings, not data
EXIT_DEAD_LETTER_LIMIT = 4  # most recent records were bad: a producer or schema deploy is wrong


class WorkStop:
    """Set once (the first reason wins); readiness reported to `health` when there is one."""

    def __init__(self, health: HealthServer | None) -> None:
        self._health = health
        self.reason: str | None = None
        self.exit_code = EXIT_OK

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def stop(self, reason: str, exit_code: int) -> None:
        if self.reason is not None:
            return
        self.reason, self.exit_code = reason, exit_code
        if exit_code == EXIT_CONFIGURATION:
            _log.error("member_stopped_by_configuration", reason=reason)
            if self._health is not None:
                self._health.fail_configuration(reason)
        else:
            _log.error("member_stopped", reason=reason)
            if self._health is not None:
                self._health.set_ready(False, reason)

    def refused(self, reason: str) -> None:
        """Our credentials were refused: configuration, not data, must change."""
        self.stop(reason, EXIT_CONFIGURATION)

    def overwhelmed(self, reason: str) -> None:
        """Too many recent records were bad: nothing more is dead-lettered."""
        self.stop(reason, EXIT_DEAD_LETTER_LIMIT)

    def joined(self) -> None:
        """The member joined the group (an empty assignment counts): ready, unless stopped."""
        if self._health is not None and self.reason is None:
            self._health.set_ready(True)
