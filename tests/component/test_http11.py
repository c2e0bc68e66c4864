"""PooledHTTP11Transport on real loopback sockets: the sandbox, and small scripted servers.

Each test is sync and runs its scenario with `asyncio.run`; scripted servers live on the same
loop as the client. Parsing tests run with both the httptools and the pure-Python head parser.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from consumer.http11 import ParserChoice, PooledHTTP11Transport
from consumer.sandbox import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer

KEY = {"Authorization": "Bearer sk_test_http11"}
BODY = {"orderId": "ord_1", "items": [{"itemId": "itm_a", "quantity": 1}]}
PARSERS = pytest.mark.parametrize("parser", ["pure", "httptools"])
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# (number of the request on its connection, its raw bytes) -> (raw answer, close afterwards)
Script = Callable[[int, bytes], Coroutine[Any, Any, tuple[bytes, bool]]]


async def answer_ok(n: int, request: bytes) -> tuple[bytes, bool]:
    return OK, False


class ScriptedServer:
    """An asyncio HTTP/1.1 server that answers each request with what `script` returns."""

    def __init__(self, script: Script = answer_ok, *, ssl_context: ssl.SSLContext | None = None):
        self.script = script
        self.ssl_context = ssl_context
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.handlers)  # each ends once its connection is closed
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        try:
            for n in range(1, 10_000):
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                raw, close = await self.script(n, request)
                writer.write(raw)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            writer.close()


def client(transport: PooledHTTP11Transport, url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url=url, headers=KEY, **kwargs)


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 2 s")


@PARSERS
def test_post_to_the_sandbox_answers_201_with_json_and_a_request_id(parser: ParserChoice) -> None:
    async def scenario(url: str) -> httpx.Response:
        async with client(PooledHTTP11Transport(parser=parser), url) as c:
            return await c.post("/fulfillments", json=BODY)

    with SandboxServer(SandboxConfig()) as sandbox:
        resp = asyncio.run(scenario(sandbox.url))
    assert resp.status_code == 201
    assert resp.json()["orderId"] == "ord_1"
    assert resp.json()["id"].startswith("ful_")
    assert resp.headers["x-dr-requestid"]
    assert resp.http_version == "HTTP/1.1"


def test_get_with_query_parameters_lists_what_was_posted_over_one_connection() -> None:
    transport = PooledHTTP11Transport()

    async def scenario(url: str) -> tuple[httpx.Response, int]:
        async with client(transport, url) as c:
            for i in range(20):
                posted = await c.post("/fulfillments", json={**BODY, "orderId": f"ord_{i % 2}"})
                assert posted.status_code == 201
            listed = await c.get("/fulfillments", params={"orderId": "ord_1", "limit": 5})
            return listed, transport._open

    with SandboxServer(SandboxConfig()) as sandbox:
        listed, open_connections = asyncio.run(scenario(sandbox.url))
    assert listed.status_code == 200
    assert len(listed.json()["data"]) == 5
    assert {f["orderId"] for f in listed.json()["data"]} == {"ord_1"}
    assert open_connections == 1, "21 sequential requests reused one connection"


def test_sequential_requests_reuse_one_connection_and_aclose_closes_it() -> None:
    async def scenario() -> None:
        async with ScriptedServer() as server:
            transport = PooledHTTP11Transport()
            async with client(transport, server.url) as c:
                for _ in range(50):
                    assert (await c.get("/ping")).text == "ok"
            assert transport._open == 0
            assert server.connections == 1
            assert len(server.requests) == 50

    asyncio.run(scenario())


@PARSERS
def test_a_chunked_response_with_extensions_and_trailers_is_read_whole(
    parser: ParserChoice,
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )

    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return chunked, False

    async def scenario() -> None:
        async with ScriptedServer(script) as server:
            async with client(PooledHTTP11Transport(parser=parser), server.url) as c:
                first, second = await c.get("/a"), await c.get("/b")
            assert first.text == second.text == "hello, world"
            assert server.connections == 1, "a fully read chunked body leaves it reusable"

    asyncio.run(scenario())


@PARSERS
def test_a_response_without_length_is_read_until_close_and_not_reused(parser: ParserChoice) -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 100_000, True

    async def scenario() -> None:
        async with ScriptedServer(script) as server:
            transport = PooledHTTP11Transport(parser=parser)
            async with client(transport, server.url) as c:
                first, second = await c.get("/a"), await c.get("/b")
                assert transport._open == 0
            assert first.content == second.content == b"x" * 100_000
            assert server.connections == 2

    asyncio.run(scenario())


@PARSERS
def test_connection_close_http10_head_and_204_are_handled(parser: ParserChoice) -> None:
    answers = {  # by request number across connections
        1: b"HTTP/1.1 204 No Content\r\n\r\n",
        2: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",  # to a HEAD: no body follows
        3: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        4: b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    }

    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return answers.get(len(server.requests), OK), False

    server = ScriptedServer(script)

    async def scenario() -> None:
        async with server:
            async with client(PooledHTTP11Transport(parser=parser), server.url) as c:
                assert (await c.delete("/x")).status_code == 204
                head = await c.head("/x")
                assert (head.status_code, head.content) == (200, b"")
                assert (await c.get("/x")).text == "ok", "a 100 Continue is skipped"
                old = await c.get("/x")
                assert (old.text, old.http_version) == ("ok", "HTTP/1.0")
                assert (await c.get("/x")).text == "ok"
            assert server.connections == 2, "HTTP/1.0 answers are not kept alive"

    asyncio.run(scenario())


def test_a_gzip_body_is_decoded_by_httpx() -> None:
    packed = gzip.compress(b'{"ok": true}')
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%b" % (
        len(packed),
        packed,
    )

    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return raw, False

    async def scenario() -> None:
        async with (
            ScriptedServer(script) as server,
            client(PooledHTTP11Transport(), server.url) as c,
        ):
            assert (await c.get("/x")).json() == {"ok": True}

    asyncio.run(scenario())


@PARSERS
def test_a_peer_closing_mid_body_raises_and_the_post_is_not_retried(parser: ParserChoice) -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"id":', True

    async def scenario() -> None:
        async with ScriptedServer(script) as server:
            async with client(PooledHTTP11Transport(parser=parser), server.url) as c:
                with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                    await c.post("/fulfillments", json=BODY)
            assert len(server.requests) == 1

    asyncio.run(scenario())


def test_a_peer_closing_before_answering_raises_and_the_post_is_not_retried() -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return (OK, False) if n == 1 else (b"", True)

    async def scenario() -> None:
        async with ScriptedServer(script) as server:
            async with client(PooledHTTP11Transport(), server.url) as c:
                await c.get("/warm")  # the POST below goes out on a reused connection
                with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                    await c.post("/fulfillments", json=BODY)
            assert len(server.requests) == 2

    asyncio.run(scenario())


@PARSERS
def test_a_malformed_status_line_is_a_protocol_error(parser: ParserChoice) -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return b"HTTP/1.1 OK fine\r\n\r\n", True

    async def scenario() -> None:
        async with (
            ScriptedServer(script) as server,
            client(PooledHTTP11Transport(parser=parser), server.url) as c,
        ):
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get("/x")

    asyncio.run(scenario())


def test_an_idle_connection_the_peer_closed_is_replaced_before_sending() -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        return OK, True  # keep-alive answer, then the server drops the idle connection

    async def scenario() -> None:
        async with ScriptedServer(script) as server:
            transport = PooledHTTP11Transport()
            async with client(transport, server.url) as c:
                await c.post("/fulfillments", json=BODY)
                idle = next(iter(transport._idle.values()))
                await wait_until(idle[0].reader.at_eof)
                assert (await c.post("/fulfillments", json=BODY)).text == "ok"
            assert server.connections == 2
            assert len(server.requests) == 2

    asyncio.run(scenario())


def test_bytes_a_peer_sent_on_an_idle_connection_are_never_read_as_an_answer() -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        if server.connections == 1:  # answer, then a stray 408 on the idle connection
            return OK + b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n", False
        return b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi", False

    server = ScriptedServer(script)

    async def scenario() -> None:
        async with server:
            transport = PooledHTTP11Transport()
            async with client(transport, server.url) as c:
                await c.get("/warm")
                await asyncio.sleep(0.05)  # let the stray bytes land in the idle buffer
                assert (await c.post("/fulfillments", json=BODY)).status_code == 201
            assert server.connections == 2

    asyncio.run(scenario())


def test_a_held_request_raises_read_timeout() -> None:
    config = SandboxConfig(faults=FaultSettings(timeout_rate=1.0, timeout_hold_s=5))

    async def scenario(url: str) -> None:
        async with client(PooledHTTP11Transport(), url, timeout=0.5) as c:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpx.ReadTimeout):
                await c.post("/fulfillments", json=BODY)
            assert loop.time() - started < 2

    with SandboxServer(config) as sandbox:
        asyncio.run(scenario(sandbox.url))


def test_a_refused_connection_raises_connect_error() -> None:
    async def scenario() -> None:
        with socket.socket() as reserved:  # a port nothing listens on
            reserved.bind(("127.0.0.1", 0))
            port = reserved.getsockname()[1]
        async with client(PooledHTTP11Transport(), f"http://127.0.0.1:{port}") as c:
            with pytest.raises(httpx.ConnectError):
                await c.get("/x")

    asyncio.run(scenario())


def test_max_connections_holds_under_200_concurrent_requests() -> None:
    in_flight = peak = 0

    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return OK, False

    async def scenario() -> None:
        async with ScriptedServer(script) as server:
            transport = PooledHTTP11Transport(max_connections=10)
            async with client(transport, server.url) as c:
                answers = await asyncio.gather(*(c.get(f"/{i}") for i in range(200)))
                assert transport._open <= 10
            assert [a.text for a in answers] == ["ok"] * 200
            assert server.connections <= 10
            assert peak == 10

    asyncio.run(scenario())


def test_waiting_longer_than_the_pool_timeout_raises_pool_timeout() -> None:
    async def script(n: int, request: bytes) -> tuple[bytes, bool]:
        await asyncio.sleep(0.5)
        return OK, False

    async def scenario() -> None:
        async with ScriptedServer(script) as server:
            timeout = httpx.Timeout(5, pool=0.1)
            async with client(PooledHTTP11Transport(max_connections=1), server.url) as c:
                slow = asyncio.create_task(c.get("/slow"))
                await wait_until(lambda: bool(server.requests))
                with pytest.raises(httpx.PoolTimeout):
                    await c.get("/queued", timeout=timeout)
                assert (await slow).text == "ok"

    asyncio.run(scenario())


def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    async def scenario() -> None:
        async with ScriptedServer() as server:
            async with client(PooledHTTP11Transport(), server.url) as c:
                with pytest.raises(httpx.LocalProtocolError):
                    await c.get("/x", headers={"X-Note": "a\r\nInjected: yes"})
            assert server.requests == []

    asyncio.run(scenario())


def test_https_verifies_certificates_and_host_names() -> None:
    context = PooledHTTP11Transport().ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_refuses_an_untrusted_certificate_and_accepts_a_trusted_one(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)

    async def scenario() -> None:
        async with ScriptedServer(ssl_context=served) as server:
            async with client(PooledHTTP11Transport(), server.url) as c:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.get("/x")
            trusting = PooledHTTP11Transport(ssl_context=ssl.create_default_context(cafile=cert))
            async with client(trusting, server.url) as c:
                assert (await c.get("/x")).text == "ok"

    asyncio.run(scenario())
