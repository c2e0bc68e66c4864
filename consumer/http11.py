"""A lean HTTP/1.1 keep-alive transport for httpx, on asyncio streams. [io]

`httpx.AsyncClient(transport=PooledHTTP11Transport(max_connections=128), base_url=...)`: the
httpx client layer stays; httpcore's per-request pool bookkeeping, anyio scopes and h11 go.

- Reuse: one idle deque per (scheme, host, port), newest first. A connection goes back only when
  its response was read to the end, is HTTP/1.1 and did not say `Connection: close`. An idle one
  the peer closed or wrote to, or idle longer than `keepalive_expiry`, is discarded and a new one
  opened BEFORE anything is sent.
- Bound: at most `max_connections` requests in flight and connections open; others wait.
- `request.extensions["timeout"]`: pool -> `PoolTimeout`, connect -> `ConnectTimeout`, write ->
  `WriteTimeout`, read (no progress while reading the answer) -> `ReadTimeout`. Refused,
  unreachable or TLS failures -> `ConnectError` (nothing sent). A peer closing or resetting once
  the request is written -> `ReadError` / `RemoteProtocolError`.
- Never retried: once a request's bytes are written the server may have applied it (a POST is
  not idempotent), so every failure from then on goes to the caller.
- https verifies certificates and host names (`ssl.create_default_context()` unless a context is
  given). Heads are parsed by httptools when importable, otherwise by a pure-Python parser.
- `aclose()` closes the idle connections; in-flight ones close when they finish. The transport
  stays usable afterwards (it opens new connections), so closing twice is harmless.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

try:  # optional: installed with uvicorn[standard], not a core dependency
    import httptools
except ImportError:  # pragma: no cover - exercised by the `parser="pure"` tests
    httptools = None  # type: ignore[assignment]

Header = tuple[bytes, bytes]
Origin = tuple[bytes, bytes, int]
ParserChoice = Literal["auto", "httptools", "pure"]
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def is_stale(self, now: float, expiry: float) -> bool:
        # A server may write (a 408, say) then close an idle connection: at_eof() stays False
        # while those bytes are buffered, and they would be read as the next request's answer.
        unread: bytes = getattr(self.reader, "_buffer", b"")
        closed = self.reader.at_eof() or self.writer.transport.is_closing()
        return bool(unread) or closed or now - self.idle_since > expiry

    def close(self) -> None:
        self.writer.transport.abort()


class _HeadCollector(list[Header]):
    """httptools calls `on_header` for each header of the head it is fed."""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.append((name, value))


def parse_head_pure(head: bytes) -> tuple[bytes, int, list[Header]]:
    """A response head (status line, header lines, blank line) -> (version, status, headers)."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}")
    headers: list[Header] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name[-1:] in b" \t":
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}")
        headers.append((name, value.strip(b" \t")))
    return parts[0], int(parts[1]), headers


def parse_head_httptools(head: bytes) -> tuple[bytes, int, list[Header]]:
    collector = _HeadCollector()
    parser = httptools.HttpResponseParser(collector)
    try:
        parser.feed_data(head)
    except httptools.HttpParserError as exc:
        raise httpx.RemoteProtocolError(f"malformed response head: {exc}") from exc
    version = b"HTTP/" + parser.get_http_version().encode()
    return version, parser.get_status_code(), collector


class PooledHTTP11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive and a bounded pool; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        parser: ParserChoice = "auto",
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._open = 0
        self._generation = 0  # bumped by aclose(): older connections are not reused
        use_httptools = parser == "httptools" or (parser == "auto" and httptools is not None)
        self._parse_head = parse_head_httptools if use_httptools else parse_head_pure

    def ssl_context(self) -> ssl.SSLContext:
        """The context for https: certificate and host-name verification on."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        scheme = url.raw_scheme
        origin = (scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))
        payload = self._serialize(request, await request.aread())
        if self._slots.locked():
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await self._slots.acquire()
            except TimeoutError as exc:
                raise httpx.PoolTimeout("no connection free in time", request=request) from exc
        else:
            await self._slots.acquire()  # returns at once: no timer needed
        try:
            conn = self._take_idle(origin) or await self._connect(origin, timeouts, request)
            generation = self._generation
            try:
                response, reusable = await self._exchange(conn, payload, request, timeouts)
            except BaseException:
                self._discard(conn)
                raise
            if reusable and generation == self._generation:
                conn.idle_since = asyncio.get_running_loop().time()
                self._idle.setdefault(origin, deque()).append(conn)
            else:
                self._discard(conn)
            return response
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        self._generation += 1
        for idle in self._idle.values():
            while idle:
                self._discard(idle.pop())

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.is_stale(asyncio.get_running_loop().time(), self._expiry):
                return conn
            self._discard(conn)
        return None

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1

    async def _connect(
        self, origin: Origin, timeouts: dict[str, float | None], request: httpx.Request
    ) -> _Connection:
        if self._open >= self._max:  # we hold a slot, so some other origin has an idle one
            oldest = min(
                (idle for idle in self._idle.values() if idle), key=lambda d: d[0].idle_since
            )
            self._discard(oldest.popleft())
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        tls: dict[str, Any] = {"ssl": self.ssl_context(), "server_hostname": host}
        self._open += 1  # counted before the await, so concurrent connects see it
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, **(tls if scheme == b"https" else {})
                )
        except BaseException as exc:
            self._open -= 1
            if isinstance(exc, TimeoutError):  # before OSError: TimeoutError is one
                raise httpx.ConnectTimeout(f"connect to {host}:{port}", request=request) from exc
            if isinstance(exc, OSError):  # refused, unreachable, DNS, TLS (SSLError is one)
                raise httpx.ConnectError(f"{host}:{port}: {exc}", request=request) from exc
            raise
        return _Connection(reader, writer)

    @staticmethod
    def _serialize(request: httpx.Request, body: bytes) -> bytes:
        parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
        chunked = False
        for name, value in request.headers.raw:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
                raise httpx.LocalProtocolError(f"illegal header {name!r}", request=request)
            chunked = chunked or (name.lower() == b"transfer-encoding" and value == b"chunked")
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        if chunked:  # a streamed request body, read whole by aread(): send it as one chunk
            body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        parts.append(body)
        return b"".join(parts)

    async def _exchange(
        self,
        conn: _Connection,
        payload: bytes,
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> tuple[httpx.Response, bool]:
        writer = conn.writer
        writer.write(payload)
        if writer.transport.get_write_buffer_size():  # the kernel did not take it all at once
            try:
                async with asyncio.timeout(timeouts.get("write")):
                    await writer.drain()
            except TimeoutError as exc:
                raise httpx.WriteTimeout("request not written in time", request=request) from exc
            except OSError as exc:
                raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc
        read_timeout = timeouts.get("read")
        try:
            async with asyncio.timeout(read_timeout) as deadline:
                return await self._read_response(conn.reader, request, deadline, read_timeout)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("no response in time", request=request) from exc
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise httpx.RemoteProtocolError(
                f"peer closed or sent a malformed response: {exc!r}", request=request
            ) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def _read_response(
        self,
        reader: asyncio.StreamReader,
        request: httpx.Request,
        deadline: asyncio.Timeout,
        read_timeout: float | None,
    ) -> tuple[httpx.Response, bool]:
        def progress() -> None:  # the read timeout is inactivity, not the whole response
            if read_timeout is not None:
                deadline.reschedule(asyncio.get_running_loop().time() + read_timeout)

        version, status, headers = self._parse_head(await reader.readuntil(b"\r\n\r\n"))
        while 100 <= status < 200:  # interim answers (100 Continue, 103): the real one follows
            version, status, headers = self._parse_head(await reader.readuntil(b"\r\n\r\n"))
        length, chunked, close = -1, False, False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length" and (length := int(value)) < 0:
                raise ValueError("negative Content-Length")
            chunked = chunked or (
                lname == b"transfer-encoding" and value.lower().endswith(b"chunked")
            )
            close = close or (lname == b"connection" and b"close" in value.lower())
        if request.method == "HEAD" or status in NO_BODY_STATUSES:
            body = b""
        elif chunked:
            body = await _read_chunked(reader, progress)
        elif length >= 0:
            body = await reader.readexactly(length)
        else:  # delimited by the peer closing: the connection cannot be reused
            pieces = []
            while piece := await reader.read(65536):
                pieces.append(piece)
                progress()
            body, close = b"".join(pieces), True
        response = httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(body),
            extensions={"http_version": version},
        )
        return response, not close and version == b"HTTP/1.1"


async def _read_chunked(reader: asyncio.StreamReader, progress: Callable[[], None]) -> bytes:
    pieces = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size < 0:
            raise ValueError("negative chunk size")
        if size == 0:
            break
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        pieces.append(chunk[:-2])
        progress()
    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers: read and dropped
        pass
    return b"".join(pieces)
