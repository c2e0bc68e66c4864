"""Helpers for code that tests against the sandbox in-process (no socket).

app = create_app(SandboxConfig(strict_orders=True))
async with sandbox_client(app) as client:
    await client.post("/_admin/orders", json={...})
    response = await client.post("/fulfillments", json={...})
"""

from __future__ import annotations

import httpx2
from starlette.applications import Starlette

from consumer.sandbox.state import SandboxState

TEST_KEY = "sk_test_sandbox"


def sandbox_client(app: Starlette, key: str | None = TEST_KEY) -> httpx2.AsyncClient:
    """An httpx2 client mounted on `app` via `ASGITransport`, sending `Bearer <key>` (None: no
    Authorization header). Use it as an async context manager."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://sandbox.test", headers=headers
    )


def state_of(app: Starlette) -> SandboxState:
    """The state behind an app from `create_app` (only safe on the loop that serves it)."""
    state: SandboxState = app.state.sandbox
    return state
