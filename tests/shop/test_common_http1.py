"""The lean HTTP/1.1 client (services/shop/common/http1.py) against servers on real sockets: scripted raw servers
(asyncio streams, in the test's own event loop, on asyncio's loop and on uvloop) for every framing and failure,
and a TLS server with a certificate made for the test."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.shop.common.http1 import (
    BaseUrl,
    ConnectError,
    ConnectionPool,
    ConnectTimeoutError,
    PeerClosedError,
    ProtocolError,
    ReadTimeoutError,
    TotalTimeoutError,
    WriteTimeoutError,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n"
OK = OK_HEAD + b'{"ok":true}'


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Run a test's coroutine on asyncio's own loop, then on uvloop (what the services run)."""
    return asyncio.run if request.param == "asyncio" else uvloop.run


class RawServer:
    """A TCP server whose every connection runs `handler`; counts connections and keeps what it read."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.open_connections = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        self.most_open = max(self.most_open, self.open_connections)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the test's loop is ending; a cancelled handler task would only be logged as an error
        finally:
            self.open_connections -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request's head and its Content-Length body."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
            0,
        )
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def answering(*responses: bytes, then_close: bool = False) -> Callable[[RawServer], Handler]:
    """A handler answering each request on a connection with the next of `responses` (the last one repeats)."""

    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            index = 0
            while True:
                await server.read_request(reader)
                writer.write(responses[min(index, len(responses) - 1)])
                await writer.drain()
                index += 1
                if then_close:
                    return

        return handle

    return make


def serve(make: Callable[[RawServer], Handler], tls: ssl.SSLContext | None = None) -> RawServer:
    server = RawServer(lambda reader, writer: asyncio.sleep(0), tls)
    server.handler = make(server)
    return server


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(30)


# --- Requests and framing ---


def test_a_get_is_sent_as_http_1_1_with_host_and_the_caller_s_headers(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK)) as server, ConnectionPool(server.url) as pool:
            response = await pool.request("GET", "/a/b?c=d", headers={"traceparent": "00-x", "X-Two": "2"})
            assert response.status_code == 200
            assert response.json() == {"ok": True}
            assert response.headers["Content-Type"] == "application/json"
            assert response.url == f"{server.url}/a/b?c=d"
            host = server.url.removeprefix("http://")
            assert server.requests == [
                f"GET /a/b?c=d HTTP/1.1\r\nhost: {host}\r\ntraceparent: 00-x\r\nX-Two: 2\r\n\r\n".encode()
            ]

    run(main())


def test_a_body_is_sent_with_its_length_and_post_without_one_says_zero(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK)) as server, ConnectionPool(server.url) as pool:
            await pool.request("PUT", "/x", body=b"\x00" * 70_000)
            await pool.request("POST", "/y")
            assert server.requests[0].endswith(b"content-length: 70000\r\n\r\n" + b"\x00" * 70_000)
            assert server.requests[1].endswith(b"content-length: 0\r\n\r\n")

    run(main())


def test_the_base_url_prefix_comes_before_every_path(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK)) as server, ConnectionPool(f"{server.url}/api/v1/") as pool:
            await pool.request("GET", "/items")
            assert server.requests[0].startswith(b"GET /api/v1/items HTTP/1.1\r\n")

    run(main())


def test_chunked_and_interim_responses_are_read_whole(run: Any) -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nSet-Thing: a\r\nset-thing: b\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    async def main() -> None:
        async with serve(answering(chunked)) as server, ConnectionPool(server.url) as pool:
            response = await pool.request("GET", "/")
            assert (response.status_code, response.content) == (201, b"hello world")
            assert response.headers["set-thing"] == "a, b"
            assert response.headers.get_list("Set-Thing") == ["a", "b"]
            assert list(response.headers) == ["transfer-encoding", "set-thing"]
            assert (await pool.request("GET", "/again")).content == b"hello world"
            assert server.connections == 1

    run(main())


def test_a_body_that_ends_with_the_connection_is_read_and_the_connection_not_reused(run: Any) -> None:
    until_close = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=latin-1\r\n\r\ncaf\xe9"

    async def main() -> None:
        async with serve(answering(until_close, then_close=True)) as server, ConnectionPool(server.url) as pool:
            first = await pool.request("GET", "/")
            second = await pool.request("GET", "/")
            assert first.text == second.text == "caf\u00e9"
            assert server.connections == 2

    run(main())


def test_a_head_response_has_no_body(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK_HEAD, OK)) as server, ConnectionPool(server.url) as pool:
            response = await pool.request("HEAD", "/")
            assert (response.status_code, response.content) == (200, b"")
            assert response.headers["content-length"] == "11"

    run(main())


def test_connection_close_is_honoured(run: Any) -> None:
    closing = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"

    async def main() -> None:
        async with serve(answering(closing)) as server, ConnectionPool(server.url) as pool:
            for _ in range(3):
                assert (await pool.request("DELETE", "/x")).status_code == 204
            assert server.connections == 3
            assert pool.idle_connections == 0

    run(main())


# --- The pool ---


def test_sequential_requests_reuse_one_connection(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK)) as server, ConnectionPool(server.url) as pool:
            for _ in range(5):
                await pool.request("GET", "/")
            assert server.connections == 1
            assert pool.idle_connections == 1

    run(main())


def test_concurrent_requests_wait_for_one_of_max_connections(run: Any) -> None:
    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                await asyncio.sleep(0.02)
                writer.write(OK)

        return handle

    async def main() -> None:
        async with serve(make) as server, ConnectionPool(server.url, max_connections=3) as pool:
            responses = await asyncio.gather(*(pool.request("GET", f"/{n}") for n in range(12)))
            assert {response.status_code for response in responses} == {200}
            assert server.connections == 3
            assert server.most_open == 3

    run(main())


def test_at_most_max_idle_connections_are_kept(run: Any) -> None:
    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                await asyncio.sleep(0.02)
                writer.write(OK)

        return handle

    async def main() -> None:
        async with serve(make) as server, ConnectionPool(server.url, max_connections=4, max_idle_connections=1) as pool:
            await asyncio.gather(*(pool.request("GET", "/") for _ in range(4)))
            assert server.connections == 4
            assert pool.idle_connections == 1

    run(main())


def test_a_connection_idle_past_idle_seconds_is_replaced(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK)) as server, ConnectionPool(server.url, idle_seconds=0.05) as pool:
            await pool.request("GET", "/")
            await asyncio.sleep(0.1)
            await pool.request("GET", "/")
            assert server.connections == 2
            await asyncio.sleep(0.01)  # let the server see the expired connection's close
            assert server.open_connections == 1

    run(main())


def test_a_connection_the_server_closed_while_idle_is_not_used(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK, then_close=True)) as server, ConnectionPool(server.url) as pool:
            await pool.request("GET", "/")
            while server.open_connections:  # the server has closed it; give the client its connection_lost
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.01)
            assert (await pool.request("GET", "/")).status_code == 200
            assert server.connections == 2

    run(main())


def test_bytes_arriving_on_an_idle_connection_retire_it(run: Any) -> None:
    def make(server: RawServer) -> Handler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(OK)
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
            await asyncio.sleep(30)

        return handle

    async def main() -> None:
        async with serve(make) as server, ConnectionPool(server.url) as pool:
            await pool.request("GET", "/")
            await asyncio.sleep(0.05)
            assert pool.idle_connections == 1
            server.handler = answering(OK)(server)
            assert (await pool.request("GET", "/", timeout=5)).status_code == 200
            assert server.connections == 2

    run(main())


def test_a_closed_pool_refuses_requests(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(OK)) as server:
            pool = ConnectionPool(server.url)
            await pool.request("GET", "/")
            await pool.aclose()
            assert pool.idle_connections == 0
            with pytest.raises(RuntimeError, match="is closed"):
                await pool.request("GET", "/")

    run(main())


# --- Streaming (the gateway's way) ---


def test_a_streamed_response_is_read_chunk_by_chunk_and_the_connection_reused(run: Any) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: past the read high-water mark, so reading pauses and resumes
    big = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    async def main() -> None:
        async with serve(answering(big)) as server, ConnectionPool(server.url) as pool:
            for _ in range(2):
                connection = await pool.acquire()
                connection.start_request(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                await connection.response_head()
                assert connection.status == 200
                received = bytearray()
                while (chunk := await connection.next_chunk()) is not None:
                    received += chunk
                    await asyncio.sleep(0)  # a slow consumer
                assert bytes(received) == body
                pool.release(connection, connection.reusable)
            assert server.connections == 1

    run(main())


def test_a_server_that_stops_reading_a_streamed_body_is_a_write_timeout(run: Any) -> None:
    async def main() -> None:
        async with RawServer(never_answer) as server, ConnectionPool(server.url, read_timeout=0.2) as pool:
            connection = await pool.acquire()
            connection.start_request(b"PUT / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            piece = b"100000\r\n" + b"x" * 0x100000 + b"\r\n"

            async def send_until_stuck() -> None:
                for _ in range(1024):  # at most 1 GiB; the socket buffers fill long before
                    await connection.write(piece)

            with pytest.raises(WriteTimeoutError, match=r"accepted no more of the request body for 0\.2 s"):
                await send_until_stuck()
            pool.release(connection, reusable=False)
            assert connection.closed

    run(main())


# --- Errors ---


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_a_connect_error(run: Any) -> None:
    async def main() -> None:
        async with ConnectionPool(f"http://127.0.0.1:{free_port()}") as pool:
            with pytest.raises(ConnectError, match=r"cannot connect to 127\.0\.0\.1:"):
                await pool.request("GET", "/")

    run(main())


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose listen queue is full and never accepted from: a connect there hangs (SYNs are dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


def test_a_connect_that_hangs_is_a_connect_timeout(run: Any, full_backlog: int) -> None:
    async def main() -> None:
        async with ConnectionPool(f"http://127.0.0.1:{full_backlog}", connect_timeout=0.2) as pool:
            with pytest.raises(ConnectTimeoutError, match=r"no connection to 127.0.0.1:\d+ within 0.2 s"):
                await pool.request("GET", "/")

    run(main())


def test_a_server_that_does_not_answer_is_a_read_timeout(run: Any) -> None:
    async def main() -> None:
        async with RawServer(never_answer) as server, ConnectionPool(server.url, read_timeout=0.1) as pool:
            with pytest.raises(ReadTimeoutError, match=r"sent no response data for 0\.1 s"):
                await pool.request("GET", "/")
            assert pool.idle_connections == 0

    run(main())


def test_a_trickling_response_is_cut_by_the_total_timeout(run: Any) -> None:
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
        for _ in range(1000):
            writer.write(b"x")
            await asyncio.sleep(0.01)

    async def main() -> None:
        async with RawServer(trickle) as server, ConnectionPool(server.url, read_timeout=1.0) as pool:
            with pytest.raises(
                TotalTimeoutError, match=r"GET http://127.0.0.1:\d+/slow: no complete response within 0.2 s"
            ):
                await pool.request("GET", "/slow", timeout=0.2)
            assert pool.idle_connections == 0

    run(main())


def test_an_invalid_response_is_a_protocol_error(run: Any) -> None:
    async def main() -> None:
        async with serve(answering(b"HELLO THERE\r\n\r\n")) as server, ConnectionPool(server.url) as pool:
            with pytest.raises(ProtocolError, match=r"invalid response from 127\.0\.0\.1:"):
                await pool.request("GET", "/")

    run(main())


def test_a_response_over_max_response_bytes_is_a_protocol_error(run: Any) -> None:
    big = b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + b"x" * 5000

    async def main() -> None:
        async with serve(answering(big)) as server, ConnectionPool(server.url, max_response_bytes=4096) as pool:
            with pytest.raises(ProtocolError, match="is over 4096 bytes"):
                await pool.request("GET", "/")

    run(main())


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"])
def test_a_server_closing_before_the_response_ended_is_peer_closed(run: Any, sent: bytes) -> None:
    async def main() -> None:
        async with serve(answering(sent, then_close=True)) as server, ConnectionPool(server.url) as pool:
            with pytest.raises(PeerClosedError, match="closed the connection before the response was complete"):
                await pool.request("GET", "/")

    run(main())


@pytest.mark.parametrize(
    ("method", "path", "headers", "message"),
    [
        ("GE T", "/", {}, "HTTP method 'GE T'; allowed: a token"),
        ("GET", "relative", {}, "request path 'relative'; allowed: '/' then percent-encoded ASCII"),
        ("GET", "/a b", {}, "request path '/a b'"),
        ("GET", "/\r\nX: 1", {}, "request path"),
        ("GET", "/caf\u00e9", {}, "request path"),
        ("GET", "/", {"X-A": "\u20ac"}, "allowed: Latin-1 text without control characters"),
        ("GET", "/", {"Host": "elsewhere"}, "header 'Host' is set by the client itself"),
        ("GET", "/", {"Transfer-Encoding": "chunked"}, "is set by the client itself"),
    ],
)
def test_invalid_requests_are_refused_with_what_is_allowed(
    method: str, path: str, headers: dict[str, str], message: str
) -> None:
    pool = ConnectionPool("http://127.0.0.1:1")
    with pytest.raises(ValueError, match=message):
        pool.prepare(method, path, headers=headers)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://products:8082", BaseUrl("http", "products", 8082)),
        ("http://products", BaseUrl("http", "products", 80)),
        ("https://products/api/", BaseUrl("https", "products", 443, "/api")),
        ("http://[::1]:9000/x", BaseUrl("http", "::1", 9000, "/x")),
    ],
)
def test_base_urls(url: str, expected: BaseUrl) -> None:
    assert BaseUrl.parse(url) == expected


def test_an_ipv6_base_url_gets_a_bracketed_host_header() -> None:
    assert BaseUrl.parse("http://[::1]:9000").host_header == b"[::1]:9000"


@pytest.mark.parametrize(
    "url", ["products:8082", "ftp://products", "http://", "http://p/?a=1", "http://p/#f", "http://u:pw@p", "http://p:x"]
)
def test_invalid_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"allowed: http\(s\)://host\[:port\]\[/prefix\]"):
        BaseUrl.parse(url)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_connections": 0}, "max_connections 0; allowed: 1 or more"),
        ({"max_connections": 2, "max_idle_connections": 3}, "max_idle_connections 3; allowed: 0 to max_connections"),
        ({"idle_seconds": 0}, "idle_seconds 0; allowed: above 0"),
        ({"read_timeout": 0}, "read_timeout 0; allowed: above 0 seconds, or None"),
        ({"connect_timeout": -1}, "connect_timeout -1; allowed: above 0 seconds"),
        ({"max_response_bytes": -1}, "max_response_bytes -1; allowed: 0 or more"),
    ],
)
def test_invalid_pool_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConnectionPool("http://127.0.0.1:1", **options)


# --- TLS ---


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_https_verifies_the_server_against_the_given_context(run: Any, certificate: tuple[Path, Path]) -> None:
    cert_file, key_file = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))

    async def main() -> None:
        async with serve(answering(OK), tls=server_tls) as server:
            async with ConnectionPool(server.url, ssl_context=trusting) as pool:
                assert (await pool.request("GET", "/")).json() == {"ok": True}
                assert (await pool.request("GET", "/")).status_code == 200
            assert server.connections == 1
            async with ConnectionPool(server.url) as untrusting:  # the system's CAs do not know this certificate
                with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await untrusting.request("GET", "/")

    run(main())
