"""Every line is JSON in JSON mode: structlog's own events and the standard library's (httpx,
asyncio, uvicorn, warnings) alike."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from consumer.ops.logs import configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A fresh stream for configure_logging; logging and structlog restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {n: logging.getLogger(n).level for n in ("httpx", "httpx2", "httpcore", "httpcore2")}
    with warnings.catch_warnings():  # captureWarnings' showwarning is undone on exit
        yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_standard_library_record_is_rendered_as_json(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    logging.getLogger("uvicorn.error").warning("port %d in use", 8080)
    (line,) = _lines(stream)
    assert line["event"] == "port 8080 in use"
    assert line["level"] == "warning"
    assert line["logger"] == "uvicorn.error"
    assert "timestamp" in line


def test_a_standard_library_traceback_stays_inside_one_json_line(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    (line,) = _lines(stream)
    assert line["exception"][0]["exc_type"] == "ValueError"


def test_a_python_warning_is_a_json_line(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    warnings.simplefilter("always")
    warnings.warn("old API", DeprecationWarning, stacklevel=1)
    (line,) = _lines(stream)
    assert line["logger"] == "py.warnings"
    assert "old API" in line["event"]


def test_structlog_events_and_stdlib_records_share_the_stream(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    structlog.get_logger("cli").info("health_listening", port=8000)
    logging.getLogger("asyncio").error("loop stalled")
    assert [line["event"] for line in _lines(stream)] == ["health_listening", "loop stalled"]


def test_log_level_filters_both_kinds_of_records(stream: io.StringIO) -> None:
    configure_logging("json", "WARNING", stream=stream)
    structlog.get_logger("cli").info("health_listening", port=8000)
    logging.getLogger("asyncio").info("noise")
    logging.getLogger("asyncio").warning("kept")
    assert [line["event"] for line in _lines(stream)] == ["kept"]


def test_httpx_request_lines_show_only_at_debug(stream: io.StringIO) -> None:
    configure_logging("json", "INFO", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: POST /fulfillments 201")
    assert _lines(stream) == []
    configure_logging("json", "DEBUG", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: POST /fulfillments 201")
    assert [line["logger"] for line in _lines(stream)] == ["httpx"]


def test_configuring_twice_keeps_one_handler(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    configure_logging("json", stream=stream)
    logging.getLogger("asyncio").warning("once")
    assert len(_lines(stream)) == 1


def test_a_members_stdlib_log_lines_are_json_on_stderr() -> None:
    """A real `run` process: asyncio's own DEBUG line at start comes out as JSON too."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # nothing listens: the member just waits
        "DR_API_URL": "http://127.0.0.1:1",
        "DR_API_KEY": "sk_test_logging",
        "HEALTH_PORT": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "DRAIN_TIMEOUT_SECONDS": "1",
    }
    member = subprocess.Popen(
        [sys.executable, "-m", "consumer", "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert member.stderr is not None
        deadline = time.monotonic() + 60
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = member.stderr.readline()
            if not line:
                break
            seen.append(line)
            if '"health_listening"' in line:
                break
        member.send_signal(signal.SIGTERM)
        _, rest = member.communicate(timeout=60)
    finally:
        if member.poll() is None:
            member.kill()
            member.wait()
    lines = [json.loads(line) for line in [*seen, *rest.splitlines()] if line.strip()]
    assert any(line.get("logger") == "asyncio" for line in lines), lines[:5]
    assert any(line["event"] == "health_listening" for line in lines)
