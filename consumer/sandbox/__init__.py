"""A local stand-in for Digital River's fulfillment API (DR-API.md): tests, demo, benchmarks.

The service never imports this package. Read it in this order:

    config      settings (frozen)                     validation  request body -> 400s
    orders      orders, lines, fulfillments           ledger      the rules: 404 / 409, atomicity
    listing     GET /fulfillments filters and pages   faults      rate limit, injected failures
    requestlog  every request, counters               api         the Digital River routes
    admin       /_admin                               app         create_app
    server      uvicorn, foreground or thread         cli         `fulfillment-consumer sandbox`
    testing     an in-process httpx2 client for tests
"""

from consumer.sandbox.app import create_app
from consumer.sandbox.config import FaultSettings, SandboxConfig

__all__ = ["FaultSettings", "SandboxConfig", "create_app"]
