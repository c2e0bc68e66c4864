"""DigitalRiverClient's network settings: proxies from the environment, the CAs, the pool's cap.

The sandbox runs on a real loopback socket (https with a test CA where TLS matters) and a small
forward proxy sits between it and the client, recording every request line it is handed: a
request the proxy did not record did not go through it. Proxies come from the environment as
operators set them (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), with httpx2's semantics: a
`NO_PROXY` entry names a host exactly as the URL spells it (`localhost` does not cover
`127.0.0.1`).
"""

from __future__ import annotations

import asyncio
import http.client
import http.server
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trustme

from consumer.config.settings import Secret
from consumer.core.errors import ConfigurationError, TransportFailure
from consumer.digitalriver.client import DigitalRiverClient, DrResponse
from consumer.sandbox.config import FaultSettings, SandboxConfig
from consumer.sandbox.server import SandboxServer

KEY = "sk_test_Dr7NetworkDistinctiveKey511"
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads `requests` instead."""

    def do_CONNECT(self) -> None:
        self.server.requests.append(f"CONNECT {self.path}")
        host, _, port = self.path.rpartition(":")
        upstream = socket.create_connection((host, int(port)), timeout=10)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        with upstream, selectors.DefaultSelector() as sel:
            sel.register(self.connection, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, self.connection)
            while not self.server.stopping.is_set():
                for key, _ in sel.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)

    def _forward(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)  # absolute form: http://host:port/path?query
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=10)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, body=body, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = _forward  # noqa: N815 - http.server's naming


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]
    stopping: threading.Event


@pytest.fixture
def proxy() -> Iterator[_ProxyServer]:
    """A forward proxy on loopback; `proxy.requests` lists the request lines it was handed."""
    server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
    server.requests = []
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def proxy_url(server: _ProxyServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA variable of the machine running the tests leaks into them."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def test_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_bundle(test_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    test_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def tls_sandbox(test_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An https sandbox on 127.0.0.1, its certificate signed by the test CA only."""
    folder = tmp_path_factory.mktemp("tls")
    cert = test_ca.issue_cert("127.0.0.1")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    with SandboxServer(SandboxConfig(), tls=(str(certfile), str(keyfile))) as sandbox:
        yield sandbox.url


@pytest.fixture(scope="module")
def http_sandbox() -> Iterator[str]:
    with SandboxServer(SandboxConfig()) as sandbox:
        yield sandbox.url


def create(url: str, ca_bundle: str | None = None) -> DrResponse:
    """One POST /fulfillments from a fresh client, as a member sends it."""

    async def scenario() -> DrResponse:
        client = DigitalRiverClient(url, Secret(KEY), ca_bundle=ca_bundle, timeout=10)
        try:
            return await client.create_fulfillment(
                {"orderId": "ord_net_1", "items": [{"itemId": "itm_1", "quantity": 1}]}
            )
        finally:
            await client.aclose()

    return asyncio.run(scenario())


# --- proxies -----------------------------------------------------------------------------------


def test_an_https_request_tunnels_through_the_https_proxy_of_the_environment(
    tls_sandbox: str, ca_bundle: str, proxy: _ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy_url(proxy))
    answer = create(tls_sandbox, ca_bundle)
    assert answer.status == 201
    assert proxy.requests == [f"CONNECT {urlsplit(tls_sandbox).netloc}"]


def test_a_plain_http_request_is_forwarded_by_the_http_proxy_of_the_environment(
    http_sandbox: str, proxy: _ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy_url(proxy))
    answer = create(http_sandbox)
    assert answer.status == 201
    assert proxy.requests == [f"POST {http_sandbox}/fulfillments"]


def test_the_lowercase_proxy_variable_is_honoured_too(
    tls_sandbox: str, ca_bundle: str, proxy: _ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", proxy_url(proxy))
    assert create(tls_sandbox, ca_bundle).status == 201
    assert proxy.requests == [f"CONNECT {urlsplit(tls_sandbox).netloc}"]


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "example.com, 127.0.0.1", "*"])
def test_a_host_listed_in_no_proxy_is_reached_directly(
    no_proxy: str,
    tls_sandbox: str,
    ca_bundle: str,
    proxy: _ProxyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy_url(proxy))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert create(tls_sandbox, ca_bundle).status == 201
    assert proxy.requests == []


def test_no_proxy_localhost_does_not_cover_a_loopback_address(
    tls_sandbox: str, ca_bundle: str, proxy: _ProxyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx2 matches NO_PROXY against the host as written: list 127.0.0.1 to bypass it."""
    monkeypatch.setenv("HTTPS_PROXY", proxy_url(proxy))
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert create(tls_sandbox, ca_bundle).status == 201
    assert len(proxy.requests) == 1


def test_without_proxy_variables_the_request_goes_directly(
    tls_sandbox: str, ca_bundle: str, proxy: _ProxyServer
) -> None:
    assert create(tls_sandbox, ca_bundle).status == 201
    assert proxy.requests == []


def test_an_unreachable_proxy_is_a_connect_failure(
    tls_sandbox: str, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(TransportFailure) as caught:
        create(tls_sandbox, ca_bundle)
    assert caught.value.kind == "connect"


# --- the CAs trusted -----------------------------------------------------------------------------


def test_a_server_signed_by_an_unknown_ca_is_refused_as_a_connect_failure(
    tls_sandbox: str,
) -> None:
    with pytest.raises(TransportFailure) as caught:
        create(tls_sandbox)
    assert caught.value.kind == "connect"


def test_the_configured_ca_bundle_is_trusted(tls_sandbox: str, ca_bundle: str) -> None:
    assert create(tls_sandbox, ca_bundle).status == 201


def test_the_ca_bundle_replaces_the_system_cas_rather_than_adding_to_them(
    tls_sandbox: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(TransportFailure) as caught:
        create(tls_sandbox, str(other))
    assert caught.value.kind == "connect"


def test_ssl_cert_file_is_honoured_when_no_ca_bundle_is_configured(
    tls_sandbox: str, ca_bundle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_bundle)
    assert create(tls_sandbox).status == 201


def test_a_ca_bundle_that_is_not_pem_is_a_configuration_error_naming_dr_ca_bundle(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError) as caught:
        DigitalRiverClient("https://api.digitalriver.com", Secret(KEY), ca_bundle=str(garbage))
    assert caught.value.setting == "DR_CA_BUNDLE"
    assert "DR_CA_BUNDLE" in str(caught.value)


# --- the pool ------------------------------------------------------------------------------------


def test_requests_beyond_the_pools_cap_wait_for_a_free_connection() -> None:
    """6 POSTs at once through 2 connections to a sandbox answering after 300 ms: 3 rounds."""
    config = SandboxConfig(faults=FaultSettings(latency_ms=300))
    with SandboxServer(config) as sandbox:

        async def scenario() -> list[DrResponse]:
            client = DigitalRiverClient(sandbox.url, Secret(KEY), max_connections=2, timeout=30)
            try:
                return await asyncio.gather(
                    *(
                        client.create_fulfillment(
                            {"orderId": f"ord_{i}", "items": [{"itemId": "itm", "quantity": 1}]}
                        )
                        for i in range(6)
                    )
                )
            finally:
                await client.aclose()

        started = time.monotonic()
        answers = asyncio.run(scenario())
        elapsed = time.monotonic() - started
    assert [answer.status for answer in answers] == [201] * 6
    assert elapsed >= 0.85, f"6 x 300 ms over 2 connections took only {elapsed:.2f} s"
