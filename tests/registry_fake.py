"""A fake Confluent Schema Registry on a loopback socket (real HTTP), in a thread.

Speaks the subset of the REST API our client uses — `GET /schemas/ids/{id}` and
`POST /subjects/{subject}/versions` — with Confluent's error bodies (`{"error_code", "message"}`),
checks basic-auth credentials or a bearer token when configured, and has switches for an outage
(`down`: every connection is dropped without an answer, as a registry that went away) and for
error answers (`fail_with`). Every subject accepts every schema (compatibility NONE); ids count
from 1, one per distinct schema text, as Confluent's registry does.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class FakeRegistry:
    def __init__(
        self,
        *,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: serve https with this server-side context (one that requires client
        certificates makes it a mutual-TLS registry)."""
        self.basic_auth = basic_auth
        self.bearer_token = bearer_token
        self.ids: dict[str, int] = {}
        self.schema_types: dict[int, str] = {}
        self.subjects: defaultdict[str, list[int]] = defaultdict(list)
        self.requests: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.down = False
        self.fail_with: int | None = None
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, schema_text: str, schema_type: str | None = None) -> int:
        """Put a schema in the registry directly; its id."""
        with self._lock:
            schema_id = self.ids.setdefault(schema_text, len(self.ids) + 1)
            if schema_type is not None:
                self.schema_types[schema_id] = schema_type
            return schema_id

    def url_with(self, user: str, password: str) -> str:
        parts = urlsplit(self.url)
        return parts._replace(netloc=f"{user}:{password}@{parts.netloc}").geturl()

    def _authorized(self, header: str | None) -> bool:
        if self.basic_auth is not None:
            token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            return header == f"Basic {token}"
        if self.bearer_token is not None:
            return header == f"Bearer {self.bearer_token}"
        return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if not self.admit():
                    return
                path = urlsplit(self.path).path
                wanted = int(path.removeprefix("/schemas/ids/"))
                with registry._lock:
                    found = [text for text, i in registry.ids.items() if i == wanted]
                    schema_type = registry.schema_types.get(wanted)
                if not found:
                    self.answer(404, {"error_code": 40403, "message": f"Schema {wanted} not found"})
                    return
                body: dict[str, object] = {"schema": found[0]}
                if schema_type is not None:
                    body["schemaType"] = schema_type
                self.answer(200, body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length)) if length else {}
                if not self.admit():
                    return
                path = urlsplit(self.path).path
                subject = unquote(path.removeprefix("/subjects/").removesuffix("/versions"))
                schema_id = registry.add(body["schema"])
                with registry._lock:
                    registry.subjects[subject].append(schema_id)
                self.answer(200, {"id": schema_id})

            def admit(self) -> bool:
                """Count the request; False when it was answered already (outage, auth, fault)."""
                with registry._lock:
                    registry.requests[f"{self.command} {urlsplit(self.path).path}"] += 1
                    registry.headers.append(dict(self.headers.items()))
                if registry.down:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # no answer at all
                    return False
                if not registry._authorized(self.headers.get("Authorization")):
                    self.answer(401, {"error_code": 401, "message": "Unauthorized"})
                    return False
                if registry.fail_with is not None:
                    self.answer(registry.fail_with, {"error_code": registry.fail_with * 100,
                                                     "message": "injected failure"})  # fmt: skip
                    return False
                return True

            def answer(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
