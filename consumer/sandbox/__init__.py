"""A local stand-in for Digital River's fulfillment API (DR-API.md): tests, demo, benchmarks.

The service never imports this package. Read it as: `config` (settings) -> `validation` (request
body rules) -> `ledger` (orders, lines, fulfillments, the 409 rules) -> `listing` (GET filters
and pages) -> `faults` (rate limit, injected failures) -> `requestlog` -> `api` (the Digital
River routes and their pipeline) -> `admin` (`/_admin`) -> `app` (`create_app`) -> `server`
(uvicorn, in a thread or in the foreground) -> `cli` (`fulfillment-consumer sandbox`).
"""

from consumer.sandbox.app import create_app
from consumer.sandbox.config import FaultSettings, SandboxConfig

__all__ = ["FaultSettings", "SandboxConfig", "create_app"]
