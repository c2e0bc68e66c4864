"""The Digital River routes and the pipeline every one of them goes through.

Per request, in order: logged on arrival (`seq`), latency fault, `Authorization: Bearer <key>`
(401 `unauthorized` / 403 `forbidden`), `Accept` (406), the key's rate limit (429 +
`Retry-After`, nothing applied), the fault draw (error: `errorStatus`; timeout: held
`timeout_hold_s` then 504; neither applies anything), the handler, and for apply-then-fail a
201 replaced by 500/502/503 after the fulfillment was applied. Every answer carries
`x-dr-requestid`; every non-2xx has Digital River's error body.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumer.sandbox.errors import ApiError, server_fault, too_many_requests
from consumer.sandbox.listing import list_fulfillments
from consumer.sandbox.requestlog import RequestRecord
from consumer.sandbox.state import SandboxState
from consumer.sandbox.validation import parse_fulfillment_request

Reply = tuple[int, Any]
Handler = Callable[[SandboxState, Request, RequestRecord, str], Awaitable[Reply]]
Endpoint = Callable[[Request], Awaitable[Response]]
_ACCEPTABLE = ("application/json", "application/*", "*/*")


def api_routes(state: SandboxState) -> list[Route]:
    """The four Digital River routes, bound to `state`."""

    def route(path: str, handler: Handler, method: str) -> Route:
        return Route(path, _endpoint(state, path, handler), methods=[method])

    return [
        route("/fulfillments", _create_fulfillment, "POST"),
        route("/fulfillments", _list_fulfillments, "GET"),
        route("/fulfillments/{id}", _get_fulfillment, "GET"),
        route("/orders/{id}", _get_order, "GET"),
    ]


def problem_response(problem: ApiError) -> Response:
    headers = None if problem.retry_after is None else {"Retry-After": str(problem.retry_after)}
    return JSONResponse(problem.body(), status_code=problem.status, headers=headers)


def utc_now_iso(timespec: str = "seconds") -> str:
    return datetime.now(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def _endpoint(state: SandboxState, template: str, handler: Handler) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        log = state.log  # a reset while this request is held must not touch the new log
        record = log.open(request.method, request.url.path, template, utc_now_iso("milliseconds"))
        record.request_id = str(uuid.uuid4())
        record.upstream_id = request.headers.get("upstream-id")
        record.user_agent = request.headers.get("user-agent")
        record.query = request.url.query
        try:
            status, body = await _answer(state, handler, request, record)
            response: Response = JSONResponse(body, status_code=status)
            log.close(record, status)
        except ApiError as problem:
            response = problem_response(problem)
            log.close(record, problem.status, problem.code)
        response.headers["x-dr-requestid"] = record.request_id
        return response

    return endpoint


async def _answer(
    state: SandboxState, handler: Handler, request: Request, record: RequestRecord
) -> Reply:
    if request.method == "POST":
        record.body = await _json_body(request, record)
    settings = state.injector.settings
    if settings.latency_ms > 0:
        state.log.latency_injected += 1
        await asyncio.sleep(settings.latency_ms / 1000)
    key = _authorize(state, request)
    wait = state.injector.limiter.admit(key, state.clock())
    if wait:
        record.fault = "rate_limited"
        raise too_many_requests(wait)
    fault = state.injector.draw()
    if fault == "error":
        record.fault = "error"
        raise server_fault(settings.error_status)
    if fault == "timeout":
        record.fault = "timeout"
        await asyncio.sleep(settings.timeout_hold_s)
        raise server_fault(504)
    status, body = await handler(state, request, record, key)
    if fault == "apply_then_fail" and status == 201:
        record.fault = "apply_then_fail"
        raise server_fault(state.injector.apply_then_fail_status())
    return status, body


async def _json_body(request: Request, record: RequestRecord) -> Any:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        record.body = raw.decode("utf-8", "replace")
        return record.body
    if isinstance(body, dict) and isinstance(body.get("orderId"), str):
        record.order_id = body["orderId"]
    return body


def _authorize(state: SandboxState, request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not state.config.accepts_key(key):
        raise ApiError(401, "unauthorized", "Authorization", "A valid secret key is required.")
    if key in state.config.forbidden_keys:
        raise ApiError(403, "forbidden", "Authorization", "This key may not use this resource.")
    accept = request.headers.get("accept")
    if accept and not any(kind in accept for kind in _ACCEPTABLE):
        raise ApiError(406, "not_acceptable", "Accept", "Only application/json is served.")
    return key


async def _create_fulfillment(
    state: SandboxState, request: Request, record: RequestRecord, key: str
) -> Reply:
    parsed = parse_fulfillment_request(record.body)
    fulfillment = state.ledger.apply(
        parsed,
        now=state.clock(),
        live_mode=not key.startswith("sk_test_"),
        fulfillment_id=f"ful_{uuid.uuid4()}",
        created_time=utc_now_iso(),
    )
    record.fulfillment_id = fulfillment.id
    return 201, fulfillment.to_json()


async def _list_fulfillments(
    state: SandboxState, request: Request, record: RequestRecord, key: str
) -> Reply:
    record.order_id = request.query_params.get("orderId")
    return 200, list_fulfillments(state.ledger, request.query_params.multi_items())


async def _get_fulfillment(
    state: SandboxState, request: Request, record: RequestRecord, key: str
) -> Reply:
    fulfillment_id = request.path_params["id"]
    fulfillment = state.ledger.by_id.get(fulfillment_id)
    if fulfillment is None:
        raise ApiError(404, "not_found", "id", f"Fulfillment '{fulfillment_id}' not found.")
    record.order_id = fulfillment.order_id
    return 200, fulfillment.to_json()


async def _get_order(
    state: SandboxState, request: Request, record: RequestRecord, key: str
) -> Reply:
    order_id = record.order_id = request.path_params["id"]
    order = state.ledger.order_of(order_id, state.clock())
    if order is None:
        raise ApiError(404, "not_found", "id", f"Order '{order_id}' not found.")
    return 200, order.to_json()
