"""`/metrics`, `/healthz` and `/readyz` on `HEALTH_PORT`, served from a daemon thread.

Semantics (docs/metrics.md):

- `/healthz`: 200 while the engine loop has turned (`mark_alive`) within the last
  `LIVENESS_WINDOW_SECONDS`, else 503. The window starts at construction, so start-up (group join,
  first poll) has the same 30 s.
- `/readyz`: 200 when the member has joined the group (`set_ready(True, None)`), no dependency
  is down (`set_dependency_down`, e.g. the schema registry while it is unreachable) and no
  configuration failure stopped it (`fail_configuration`, sticky), else 503 with a one-line reason.
  The reason is the caller's text, cut to one line; callers must never put a secret in it.
- `/metrics`: the `Metrics` registry in the Prometheus text format (prometheus_client's WSGI app:
  content negotiation, gzip, `name[]` filters).

The engine calls `mark_alive` / `set_ready` from its loop thread; the server thread only reads.
"""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import make_wsgi_app

from consumer.ops.metrics import Metrics

LIVENESS_WINDOW_SECONDS: Final = 30.0
_MAX_REASON_CHARS: Final = 200
_TEXT: Final = [("Content-Type", "text/plain; charset=utf-8")]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn, a reverse DNS lookup that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: probes arrive every few seconds; structlog owns our output."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def _one_line(reason: str) -> str:
    return " ".join(reason.split())[:_MAX_REASON_CHARS]


class HealthServer:
    """Serves the three endpoints for one member; `start()` binds, `stop()` closes (idempotent)."""

    def __init__(
        self,
        metrics: Metrics,
        port: int,
        host: str = "0.0.0.0",  # noqa: S104 (probes and scrapes come from outside the pod)
        *,
        clock: Callable[[], float] = time.monotonic,
        liveness_window: float = LIVENESS_WINDOW_SECONDS,
    ) -> None:
        self._metrics = metrics
        self._requested = (host, port)
        self._clock = clock
        self._window = liveness_window
        self._last_turn = clock()
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "not joined the consumer group yet"
        self._config_failure: str | None = None
        self._down: dict[str, str] = {}  # dependency -> why it is down
        self._metrics_app = make_wsgi_app(metrics.registry)
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        metrics.set_ready(False)

    # -- what the engine reports -------------------------------------------------------------
    def mark_alive(self, now: float | None = None) -> None:
        """The loop turned at `now` (default: this server's clock, the same timebase)."""
        self._last_turn = self._clock() if now is None else now

    def set_ready(self, ready: bool, reason: str | None = None) -> None:
        """Joined (True) or not (False, with the reason `/readyz` shows). No effect after
        `fail_configuration`."""
        with self._lock:
            if self._config_failure is not None:
                return
            self._ready = ready
            self._reason = "" if ready else _one_line(reason or "not ready")
        self._metrics.set_ready(self.readiness()[0])

    def set_dependency_down(self, name: str, reason: str | None) -> None:
        """`name` (e.g. "schema registry") cannot be used (`reason`), or works again (None).
        Not ready while any dependency is down; joining the group does not clear it."""
        with self._lock:
            if reason is None:
                self._down.pop(name, None)
            else:
                self._down[name] = _one_line(f"{name} unavailable: {reason}")
        self._metrics.set_ready(self.readiness()[0])

    def fail_configuration(self, reason: str) -> None:
        """Work stopped by wrong configuration (401/403): not ready from now on, whatever comes."""
        line = _one_line(f"configuration failure: {reason}")
        with self._lock:
            self._config_failure = line
            self._ready = False
            self._reason = line
        self._metrics.set_ready(False)
        self._metrics.set_configuration_failure(True)

    # -- the probes, as values (the HTTP layer only formats them) ----------------------------
    def liveness(self) -> tuple[bool, str]:
        age = self._clock() - self._last_turn
        if age <= self._window:
            return True, "ok"
        return False, f"engine loop has not turned for {age:.0f} s"

    def readiness(self) -> tuple[bool, str]:
        with self._lock:
            if not self._ready or self._config_failure is not None:
                return False, self._reason
            if self._down:
                return False, next(iter(self._down.values()))
            return True, "ok"

    # -- HTTP ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with 0); the requested one before
        `start()`."""
        return self._server.server_port if self._server is not None else self._requested[1]

    def start(self) -> None:
        """Bind and serve on a daemon thread. Raises `OSError` if the port cannot be bound."""
        if self._server is not None:
            return
        host, port = self._requested
        server = make_server(
            host, port, self._app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="health", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; waits up to 5 s for the thread. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = self._thread = None

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            exposition: Iterable[bytes] = self._metrics_app(environ, start_response)
            return exposition
        if path == "/healthz":
            ok, text = self.liveness()
        elif path == "/readyz":
            ok, text = self.readiness()
        else:
            start_response("404 Not Found", list(_TEXT))
            return [b"not found: /metrics /healthz /readyz\n"]
        start_response("200 OK" if ok else "503 Service Unavailable", list(_TEXT))
        return [text.encode("utf-8") + b"\n"]
