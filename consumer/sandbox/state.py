"""Everything one sandbox instance holds, in one object the routes share.

Owned by a single event loop: handlers mutate it without awaiting in between, which is what
makes each `POST /fulfillments` atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.faults import FaultInjector
from consumer.sandbox.ledger import Ledger
from consumer.sandbox.requestlog import RequestLog

Clock = Callable[[], float]


def new_ledger(config: SandboxConfig) -> Ledger:
    return Ledger(
        strict_orders=config.strict_orders,
        lenient_quantity=config.lenient_quantity,
        complete_after_s=config.complete_after_s,
    )


@dataclass(slots=True)
class SandboxState:
    """The ledger, the request log and the fault injector, plus the clock they read.

    `clock` returns monotonic seconds (rate limit, order completion); `config` never changes, the
    live fault settings are `injector.settings`.
    """

    config: SandboxConfig
    clock: Clock = time.monotonic
    ledger: Ledger = field(init=False)
    log: RequestLog = field(init=False)
    injector: FaultInjector = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the state at start: no orders, no requests, the configured faults."""
        self.ledger = new_ledger(self.config)
        self.log = RequestLog()
        self.injector = FaultInjector(self.config.faults)
