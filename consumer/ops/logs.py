"""Logging set-up: structlog, JSON in production, readable console output on a terminal.

Events are snake_case facts (`fulfillment_posted`, `offsets_committed`, `order_parked`) with the
record's context bound (`partition`, `offset`, `order_id`, `event_ids`, `status`, `dr_request_id`).
The standard library's records (httpx, asyncio, uvicorn, Python warnings) go through the same
processors and renderer via the root logger, so in JSON mode every line on stderr is JSON.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

# One line per HTTP request at INFO: the member's own events say more, at a fraction of the CPU;
# shown with LOG_LEVEL=DEBUG only.
_CHATTY_BELOW_WARNING = ("httpx", "httpx2", "httpcore", "httpcore2")


class _OurHandler(logging.StreamHandler[TextIO]):
    """Marks the root handler this module installed, so a second call replaces only it."""


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto",
    level: str = "INFO",
    *,
    stream: TextIO | None = None,
) -> None:
    """Idempotent; call once at the entry point. `stream` defaults to sys.stderr."""
    out = sys.stderr if stream is None else stream
    numeric = logging.getLevelNamesMapping()[level.upper()]
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tracebacks: structlog.typing.Processor = (
        structlog.processors.StackInfoRenderer()
        if use_console
        else structlog.processors.dict_tracebacks
    )
    structlog.configure(
        processors=[*shared, tracebacks, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    handler = _OurHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                tracebacks,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    chatty = numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    for name in _CHATTY_BELOW_WARNING:
        logging.getLogger(name).setLevel(chatty)
    logging.captureWarnings(True)  # warnings.warn -> logger "py.warnings" -> the handler above
