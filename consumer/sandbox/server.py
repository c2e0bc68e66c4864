"""Serving the sandbox with uvicorn: in the foreground (`serve`) or in a thread (`SandboxServer`).

One worker, uvloop + httptools when installed: the sandbox must never be what limits a
benchmark. Held requests (the timeout fault) are cancelled `GRACE_S` after a stop is asked for.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from consumer.sandbox.app import create_app
from consumer.sandbox.config import SandboxConfig
from consumer.sandbox.state import SandboxState

GRACE_S = 1


def uvicorn_config(app: Starlette, *, log_level: str = "warning", **options: Any) -> uvicorn.Config:
    """uvicorn settings for the sandbox; `log_config=None` leaves the host's logging alone."""
    options.setdefault("log_config", None)
    return uvicorn.Config(
        app,
        loop="auto",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level=log_level,
        backlog=4096,
        timeout_graceful_shutdown=GRACE_S,
        proxy_headers=False,  # loopback tool: no proxy in front, and it saves work per request
        date_header=False,
        **options,
    )


def serve(config: SandboxConfig, host: str, port: int) -> None:
    """Run the sandbox until SIGINT/SIGTERM. Blocks; uvicorn logs to the console."""
    app = create_app(config)
    uvicorn.Server(
        uvicorn_config(
            app, log_level="info", host=host, port=port, log_config=uvicorn.config.LOGGING_CONFIG
        )
    ).run()


class SandboxServer:
    """A sandbox on a real loopback socket, served from a background thread with its own loop.

    `with SandboxServer(config) as sandbox: httpx2.get(sandbox.url + "/_admin/stats")`. The socket
    is bound in the constructor (`port=0` picks a free one), so `url` is known at once;
    `__enter__`/`start` return once the server accepts connections (or raise `RuntimeError`);
    `__exit__`/`stop` ask it to stop, cancel held requests after `GRACE_S`, and join the thread.
    Inspect the state through `/_admin`: `state` belongs to the server's event loop.
    """

    def __init__(
        self,
        config: SandboxConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """`tls=(certfile, keyfile)` serves https (tests of the client's CA and proxy settings)."""
        self.config = config
        self.app = create_app(config)
        self._socket = socket.create_server((host, port), backlog=4096)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.scheme = "https" if tls else "http"
        ssl_files = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
        self._server = uvicorn.Server(uvicorn_config(self.app, **ssl_files))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            daemon=True,
            name=f"sandbox-{self.port}",
        )

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def state(self) -> SandboxState:
        sandbox: SandboxState = self.app.state.sandbox
        return sandbox

    def start(self, timeout_s: float = 10.0) -> SandboxServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = GRACE_S + 5.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._socket.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
