"""Every Digital River request the sandbox received, in arrival order, and counters over them.

The log is append-only: an entry is added when a request arrives (`seq` = its 1-based position)
and completed when it is answered, so `after=<seq>` is a slice, not a scan.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from consumer.sandbox.faults import Fault

Incident = Fault | Literal["rate_limited"]


@dataclass(slots=True)
class RequestRecord:
    """One received request; `status` is None until it is answered (e.g. while held)."""

    seq: int
    method: str
    path: str
    route: str  # the path template, e.g. "/fulfillments/{id}"
    received_at: str
    order_id: str | None = None
    upstream_id: str | None = None
    request_id: str | None = None
    query: str = ""
    body: Any = None
    status: int | None = None
    error_code: str | None = None
    fault: Incident | None = None
    fulfillment_id: str | None = None
    user_agent: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "method": self.method,
            "path": self.path,
            "orderId": self.order_id,
            "status": self.status,
            "upstreamId": self.upstream_id,
            "body": self.body,
            "receivedAt": self.received_at,
            "query": self.query,
            "requestId": self.request_id,
            "errorCode": self.error_code,
            "fault": self.fault,
            "fulfillmentId": self.fulfillment_id,
            "userAgent": self.user_agent,
        }


@dataclass(slots=True)
class RequestLog:
    """The log plus the counters `GET /_admin/stats` shows."""

    records: list[RequestRecord] = field(default_factory=list)
    by_route: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    latency_injected: int = 0  # requests delayed by the latency fault

    def open(self, method: str, path: str, route: str, received_at: str) -> RequestRecord:
        record = RequestRecord(len(self.records) + 1, method, path, route, received_at)
        self.records.append(record)
        return record

    def close(self, record: RequestRecord, status: int, error_code: str | None = None) -> None:
        record.status = status
        record.error_code = error_code
        self.by_route[(record.method, record.route, status)] += 1
        if record.fault is not None:
            self.faults[record.fault] += 1

    def after(self, seq: int, order_id: str | None) -> list[dict[str, Any]]:
        chosen = self.records[max(0, seq) :]
        if order_id is not None:
            chosen = [r for r in chosen if r.order_id == order_id]
        return [r.to_json() for r in chosen]

    def stats(self) -> dict[str, Any]:
        by_route: dict[str, dict[str, int]] = {}
        for (method, route, status), count in sorted(self.by_route.items()):
            by_route.setdefault(f"{method} {route}", {})[str(status)] = count
        answered = sum(self.by_route.values())
        return {
            "received": len(self.records),
            "answered": answered,
            "inFlight": len(self.records) - answered,
            "byRoute": by_route,
            "byStatus": _by_status(self.by_route),
            "rateLimited": self.faults.get("rate_limited", 0),
            "faultsInjected": {
                "latency": self.latency_injected,
                "error": self.faults.get("error", 0),
                "timeout": self.faults.get("timeout", 0),
                "applyThenFail": self.faults.get("apply_then_fail", 0),
            },
        }


def _by_status(counts: Counter[tuple[str, str, int]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for (_, _, status), count in counts.items():
        totals[str(status)] += count
    return dict(sorted(totals.items()))
