"""The sandbox's settings: frozen values, read once at start (CLI or test) and handed down.

`FaultSettings` is also what `PUT /_admin/faults` replaces at runtime; `SandboxConfig.faults` is
only the starting point (and what `POST /_admin/reset` goes back to).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Digital River's own declared 5xx answers; an injected error or apply-then-fail uses one of them.
FAULT_STATUSES = frozenset({408, 500, 502, 503, 504})


class ConfigError(ValueError):
    """A setting is out of range; the message names it."""


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """What goes wrong, and how often, on the Digital River routes (never on `/_admin`).

    Rates are probabilities per request drawn from one seeded RNG, so a given `seed` and request
    order reproduce the same faults. Their sum must not exceed 1: one draw picks at most one of
    error / timeout / apply-then-fail.

    - `latency_ms`: every API request waits this long before anything else happens.
    - `error_rate` + `error_status`: answer `error_status` without applying anything.
    - `timeout_rate`: hold the request `timeout_hold_s` seconds (longer than any client timeout),
      then answer 504; nothing is applied.
    - `apply_then_fail_rate`: apply a POST that would succeed, then answer 500/502/503 instead of
      201 (the fulfillment exists; the client cannot know).
    - `rate_limit`: requests per second per API key (token bucket, burst = one second's worth);
      0 means no limit. Over it: 429 `too_many_requests` with `Retry-After`, nothing applied.
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    timeout_rate: float = 0.0
    timeout_hold_s: float = 60.0
    apply_then_fail_rate: float = 0.0
    rate_limit: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate", "apply_then_fail_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        total = self.error_rate + self.timeout_rate + self.apply_then_fail_rate
        if total > 1.0 + 1e-9:
            raise ConfigError(f"error, timeout and apply-then-fail rates add up to {total} > 1")
        if self.error_status not in FAULT_STATUSES:
            raise ConfigError(f"error_status must be one of {sorted(FAULT_STATUSES)}")
        if self.latency_ms < 0 or self.timeout_hold_s < 0 or self.rate_limit < 0:
            raise ConfigError("latency_ms, timeout_hold_s and rate_limit must not be negative")


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """How one sandbox instance behaves.

    - `strict_orders`: True -> only seeded orders exist (unknown order: 404 `not_found`);
      False (lenient) -> an unknown order is created on its first POST with the lines it names,
      each ordered `lenient_quantity` units, and such an order accepts new lines later too.
    - `api_keys`: the accepted secret keys; empty -> any key starting `sk_` (which covers
      `sk_test_`). `forbidden_keys` are recognised but answered 403 on every call.
    - `complete_after_s`: a `fulfilled` order reads as `complete` this long after its last line
      was done (Digital River moves it once the captures settle).
    """

    strict_orders: bool = False
    lenient_quantity: int = 1_000_000
    api_keys: tuple[str, ...] = ()
    forbidden_keys: tuple[str, ...] = ()
    complete_after_s: float = 5.0
    faults: FaultSettings = field(default_factory=FaultSettings)

    def __post_init__(self) -> None:
        if self.lenient_quantity < 1:
            raise ConfigError("lenient_quantity must be at least 1")
        if self.complete_after_s < 0:
            raise ConfigError("complete_after_s must not be negative")

    def accepts_key(self, key: str) -> bool:
        """True when `key` is a known secret key (forbidden keys are known, too)."""
        if key in self.forbidden_keys:
            return True
        if self.api_keys:
            return key in self.api_keys
        return key.startswith("sk_") and len(key) > 3
