"""Digital River's error answers: `{"type": ..., "errors": [{"code", "parameter", "message"}]}`.

Every non-2xx answer of the sandbox is built from one `ApiError`; like Digital River, only the
first problem found in a request is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# HTTP status -> the `type` of Digital River's `Errors` schema.
ERROR_TYPES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


@dataclass(frozen=True, slots=True)
class ApiError(Exception):
    """A refused request: its status, and the one error Digital River would report."""

    status: int
    code: str
    parameter: str
    message: str
    retry_after: int | None = None  # seconds; a 429 sends it as `Retry-After`

    @property
    def type(self) -> str:
        return ERROR_TYPES.get(self.status, "bad_request")

    def body(self) -> dict[str, Any]:
        """The JSON body, in the shape of Digital River's `Errors` schema."""
        error = {"code": self.code, "parameter": self.parameter, "message": self.message}
        return {"type": self.type, "errors": [error]}


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429, "too_many_requests", "", "Too many requests for this key; retry later.", retry_after
    )


def bad_request(code: str, parameter: str, message: str) -> ApiError:
    return ApiError(400, code, parameter, message)


def conflict(code: str, parameter: str, message: str) -> ApiError:
    return ApiError(409, code, parameter, message)


def server_fault(status: int) -> ApiError:
    """An injected failure: same body shape as a real one, so clients cannot tell them apart."""
    codes = {
        408: "request_timeout",
        500: "internal_server_error",
        502: "bad_gateway",
        503: "service_unavailable",
        504: "gateway_timeout",
    }
    code = codes.get(status, "internal_server_error")
    return ApiError(status, code, "", "An unexpected error occurred; try again later.")
