"""Injected trouble: the per-key rate limit and the seeded fault draw.

Pure: time comes in as `now` (seconds, monotonic); randomness from one `random.Random(seed)`, so
the same seed and request order give the same faults.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from consumer.sandbox.config import FaultSettings

Fault = Literal["error", "timeout", "apply_then_fail"]
APPLY_THEN_FAIL_STATUSES = (500, 502, 503)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per API key: `rate` requests/s, bursts up to one second's worth.

    `admit(key, now)` returns 0 when the request may go ahead (and spends a token), else the
    whole seconds (>= 1) the caller must wait: the `Retry-After` value. A refused request spends
    nothing. `rate == 0` admits everything.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, key: str, now: float) -> int:
        if self.rate <= 0:
            return 0
        capacity = max(1.0, self.rate)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0
        return max(1, math.ceil((1.0 - bucket.tokens) / self.rate))


class FaultInjector:
    """One draw per API request decides its fault (or none), from the current `FaultSettings`."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.rate_limit)
        self._random = random.Random(settings.seed)

    def replace(self, settings: FaultSettings, *, reseed: bool) -> None:
        """Switch to new settings. The RNG restarts from `settings.seed` when `reseed` or the seed
        changed; the rate limiter's buckets restart only when the rate changed."""
        if reseed or settings.seed != self.settings.seed:
            self._random = random.Random(settings.seed)
        if settings.rate_limit != self.settings.rate_limit:
            self.limiter = RateLimiter(settings.rate_limit)
        self.settings = settings

    def draw(self) -> Fault | None:
        s = self.settings
        if not (s.error_rate or s.timeout_rate or s.apply_then_fail_rate):
            return None
        roll = self._random.random()
        if roll < s.error_rate:
            return "error"
        if roll < s.error_rate + s.timeout_rate:
            return "timeout"
        if roll < s.error_rate + s.timeout_rate + s.apply_then_fail_rate:
            return "apply_then_fail"
        return None

    def apply_then_fail_status(self) -> int:
        return self._random.choice(APPLY_THEN_FAIL_STATUSES)
