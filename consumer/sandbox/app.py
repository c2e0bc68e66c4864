"""`create_app`: the sandbox as one Starlette application.

Mount it in-process (`httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(cfg)))`) or
serve it with uvicorn (`consumer.sandbox.server`). Unknown paths and wrong methods answer in
Digital River's error shape too (404 `not_found`, 405 `method_not_allowed`).
"""

from __future__ import annotations

import time
import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from consumer.sandbox.admin import admin_routes
from consumer.sandbox.api import api_routes, problem_response
from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.errors import ApiError
from consumer.sandbox.state import Clock, SandboxState


def create_app(config: SandboxConfig, *, clock: Clock = time.monotonic) -> Starlette:
    """A fresh sandbox (empty ledger, `config.faults` active); `app.state.sandbox` holds its
    `SandboxState`. `clock` (monotonic seconds) drives the rate limit and order completion."""
    state = SandboxState(config, clock)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request")
        response = problem_response(
            ApiError(status, code, "", f"{request.method} {request.url.path}")
        )
        response.headers["x-dr-requestid"] = str(uuid.uuid4())
        return response

    app = Starlette(
        routes=[*api_routes(state), *admin_routes(state)],
        exception_handlers={HTTPException: http_error},
    )
    app.state.sandbox = state
    return app
