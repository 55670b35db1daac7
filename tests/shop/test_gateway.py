"""The local gateway: the HTTP API's route precedence on the shop's table and on tricky ones, and its behaviour
over real sockets (uvicorn in threads) with tiny upstream services: forwarding, streaming, pooling, and the HTTP
API's 404/413/429/503/504 answers."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from components.config import ROUTE
from services.shop.common.observability import parse_traceparent
from services.shop.gateway import Gateway, GatewayConfig, gateway_config, parse_arguments, server_config
from services.shop.routes import Limit, RouteTable, load_stack_config, route_limits

VALID_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# --- Route precedence ---------------------------------------------------------------------------------

SHOP_CASES = [
    ("GET", "/products", "GET /products"),
    ("GET", "/products/42", "GET /products/{id}"),
    ("GET", "/products/42/reviews", None),
    ("GET", "/products/", None),
    ("POST", "/products", None),
    ("POST", "/orders", "POST /orders"),
    ("GET", "/orders", "GET /orders"),
    ("GET", "/orders/7", "GET /orders/{id}"),
    ("DELETE", "/orders/7", None),
    ("POST", "/users", "POST /users"),
    ("POST", "/auth/token", "POST /auth/token"),
    ("GET", "/users/me", "GET /users/me"),
    ("GET", "/users/42", None),
    ("GET", "/payments", None),
    ("GET", "/", None),
]


@pytest.mark.parametrize(("method", "path", "expected"), SHOP_CASES)
def test_the_shop_table_routes_like_the_http_api(method: str, path: str, expected: str | None) -> None:
    table = RouteTable.from_config(load_stack_config())
    route = table.match(method, path)
    assert (route.key if route else None) == expected


def test_the_shop_table_sends_each_route_to_the_service_that_declares_it() -> None:
    config = load_stack_config()
    table = RouteTable.from_config(config)
    declared = {route: name for name, spec in config.services.items() for route in spec.routes}
    assert {route.key: route.service for route in table.routes} == declared
    assert set(declared.values()) == {"users", "products", "orders"}


# The example of API Gateway's developer guide ("Routing API requests" for HTTP APIs).
DOCS_TABLE = {"GET /pets/dog/1": "a", "GET /pets/dog/{id}": "b", "GET /pets/{proxy+}": "c", "ANY /{proxy+}": "d"}
TRICKY_CASES = [
    (DOCS_TABLE, "GET", "/pets/dog/1", "GET /pets/dog/1"),
    (DOCS_TABLE, "GET", "/pets/dog/2", "GET /pets/dog/{id}"),
    (DOCS_TABLE, "GET", "/pets/cat/1", "GET /pets/{proxy+}"),
    (DOCS_TABLE, "POST", "/pets/dog/1", "ANY /{proxy+}"),
    (DOCS_TABLE, "GET", "/", None),  # a greedy variable needs at least one segment
    # Segment by segment from the left, a literal beats a variable.
    ({"GET /a/{x}/c": "a", "GET /{y}/b/c": "b"}, "GET", "/a/b/c", "GET /a/{x}/c"),
    # A full match beats a greedy one, whatever the greedy route's literals.
    ({"GET /a/{x}/c": "a", "GET /a/b/{proxy+}": "b"}, "GET", "/a/b/c", "GET /a/{x}/c"),
    ({"GET /a/{x}/c": "a", "GET /a/b/{proxy+}": "b"}, "GET", "/a/b/d", "GET /a/b/{proxy+}"),
    # The longest literal prefix wins among greedy routes.
    ({"ANY /{p+}": "a", "ANY /api/{p+}": "b", "ANY /api/v1/{p+}": "c"}, "PUT", "/api/v1/x/y", "ANY /api/v1/{p+}"),
    ({"ANY /{p+}": "a", "ANY /api/{p+}": "b", "ANY /api/v1/{p+}": "c"}, "PUT", "/api/v2/x", "ANY /api/{p+}"),
    ({"ANY /{p+}": "a", "ANY /api/{p+}": "b", "ANY /api/v1/{p+}": "c"}, "PUT", "/api/v1", "ANY /api/{p+}"),
    # On the same path the exact method beats ANY; ANY takes the methods not defined there.
    ({"ANY /items/{id}": "a", "GET /items/{id}": "b"}, "GET", "/items/1", "GET /items/{id}"),
    ({"ANY /items/{id}": "a", "GET /items/{id}": "b"}, "DELETE", "/items/1", "ANY /items/{id}"),
    # A more specific path beats a method match on a less specific one.
    ({"ANY /items/special": "a", "GET /items/{id}": "b"}, "GET", "/items/special", "ANY /items/special"),
    # A method-specific route takes no other method, even when nothing else matches.
    ({"GET /files/{path+}": "a"}, "POST", "/files/x", None),
    ({"ANY /": "a", "ANY /{proxy+}": "b"}, "GET", "/", "ANY /"),
    ({"ANY /": "a", "ANY /{proxy+}": "b"}, "GET", "/x", "ANY /{proxy+}"),
    ({"GET /a/{id}": "a"}, "GET", "/a/", None),  # an empty segment is no value for a variable
    ({"GET /A": "a"}, "GET", "/a", None),  # paths are case-sensitive
]


@pytest.mark.parametrize(("routes", "method", "path", "expected"), TRICKY_CASES)
def test_tricky_tables_route_like_the_http_api(
    routes: dict[str, str], method: str, path: str, expected: str | None
) -> None:
    route = RouteTable(routes).match(method, path)
    assert (route.key if route else None) == expected


@pytest.mark.parametrize("key", ["FETCH /a", "GET a", "GET /a/{p+}/b", "GET /a b", "GET /{}"])
def test_a_route_outside_the_stack_config_grammar_is_refused_naming_what_is_allowed(key: str) -> None:
    with pytest.raises(ValueError, match="is not a route; allowed") as caught:
        RouteTable({key: "orders"})
    assert repr(key) in str(caught.value)
    assert ROUTE in str(caught.value)


def test_throttling_comes_from_route_throttling_else_the_stage_defaults() -> None:
    config = load_stack_config()
    limits = route_limits(config)
    assert limits["POST /orders"] == Limit(burst=200, rate=100)
    assert limits["POST /auth/token"] == Limit(burst=50, rate=40)
    stage = Limit(config.httpApi.throttlingBurstLimit, config.httpApi.throttlingRateLimit)
    assert limits["GET /products"] == stage
    assert set(limits) == {route.key for route in RouteTable.from_config(config).routes}


def test_the_gateway_config_of_the_stack_file_points_each_routed_service_at_its_port() -> None:
    config = gateway_config()
    assert config.upstreams == {
        "users": "http://127.0.0.1:8081",
        "products": "http://127.0.0.1:8082",
        "orders": "http://127.0.0.1:8083",
    }
    assert gateway_config(throttling=False).limits == {}


def test_a_route_to_a_service_without_an_upstream_is_refused() -> None:
    with pytest.raises(ValueError, match="'GET /x' goes to 'xs', which has no upstream; allowed: one of ys"):
        GatewayConfig(RouteTable({"GET /x": "xs"}), {"ys": "http://127.0.0.1:1"})


@pytest.mark.parametrize("url", ["https://127.0.0.1:1", "http://127.0.0.1:1/base", "127.0.0.1:1"])
def test_an_upstream_that_is_not_a_plain_http_origin_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"allowed: http://host:port \(no path, no query\)"):
        GatewayConfig(RouteTable({"GET /x": "xs"}), {"xs": url})


def test_limits_for_unknown_routes_are_refused() -> None:
    with pytest.raises(ValueError, match="limits: 'GET /y' is not a route; allowed: GET /x"):
        GatewayConfig(RouteTable({"GET /x": "xs"}), {"xs": "http://127.0.0.1:1"}, {"GET /y": Limit(1, 1)})


def test_an_upstream_argument_without_a_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--upstream", "http://127.0.0.1:8081"])
    assert "allowed: NAME=http://host:port" in capsys.readouterr().err


# --- Over real sockets --------------------------------------------------------------------------------


def listening_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class ServerThread:
    """An ASGI app served by uvicorn on its own thread and event loop."""

    def __init__(self, config: uvicorn.Config, port: int = 0) -> None:
        self._sock = listening_socket(port)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended before it started serving")
            self._thread.join(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


def upstream_config(app: Any) -> uvicorn.Config:
    # No proxy headers: the echoed client address must be the gateway's connection, not x-forwarded-for.
    return uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1, proxy_headers=False)


@dataclass
class Upstream:
    """A tiny service: echoes what it received, streams, sleeps or answers early, by path."""

    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.requests.append(scope["path"])
        if scope["path"] == "/slow":
            while not self.release.is_set():
                await asyncio.sleep(0.05)
        if scope["path"] == "/early":
            await _respond(send, 413, b'{"error":"payload_too_large"}')
            return
        if scope["path"] == "/stream":
            await self._stream(send)
            return
        body = hashlib.sha256()
        length = 0
        while True:
            message = await receive()
            body.update(message.get("body", b""))
            length += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        echo = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(),
            "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
            "body_length": length,
            "body_sha256": body.hexdigest(),
            "client_port": scope["client"][1],
        }
        extra = [(b"x-upstream", b"echo"), (b"keep-alive", b"timeout=5")]
        await _respond(send, 200, orjson.dumps(echo), extra)

    @staticmethod
    async def _stream(send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for index in range(48):
            await send({"type": "http.response.body", "body": bytes([65 + index % 26]) * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


ROUTES = {
    "ANY /echo/{proxy+}": "svc",
    "GET /slow": "svc",
    "GET /stream": "svc",
    "POST /early": "svc",
    "GET /limited": "svc",
    "GET /down": "down",
}


def free_port() -> int:
    with listening_socket() as sock:
        return sock.getsockname()[1]


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, ServerThread]]:
    app = Upstream()
    with ServerThread(upstream_config(app)) as server:
        yield app, server
        app.release.set()


GatewayFactory = Callable[..., ServerThread]


@pytest.fixture
def start_gateway(upstream: tuple[Upstream, ServerThread]) -> Iterator[GatewayFactory]:
    started: list[ServerThread] = []

    def start(**overrides: Any) -> ServerThread:
        config = GatewayConfig(
            RouteTable(ROUTES),
            {"svc": upstream[1].url, "down": f"http://127.0.0.1:{free_port()}"},
            **overrides,
        )
        server = ServerThread(server_config(Gateway(config), "127.0.0.1", 0))
        started.append(server.__enter__())
        return server

    yield start
    for server in started:
        server.__exit__()


@pytest.fixture
def gateway(start_gateway: GatewayFactory) -> Iterator[httpx.Client]:
    server = start_gateway(integration_timeout_seconds=1.0, max_payload_bytes=2_000_000)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_no_route_is_the_http_api_s_404(gateway: httpx.Client) -> None:
    response = gateway.get("/nowhere")
    assert response.status_code == 404
    assert response.content == b'{"message":"Not Found"}'
    assert response.headers["content-type"] == "application/json"


def test_method_path_query_body_and_end_to_end_headers_are_forwarded(
    gateway: httpx.Client, upstream: tuple[Upstream, ServerThread]
) -> None:
    body = b"x" * 5000
    response = gateway.request(
        "PATCH",
        "/echo/a%20b/c",
        params={"q": "1", "r": "two words"},
        content=body,
        headers={
            "authorization": "Bearer abc",
            "x-custom": "kept",
            "x-forwarded-for": "203.0.113.7",
            "connection": "keep-alive, x-hop",
            "x-hop": "dropped",
            "te": "trailers",
            "proxy-authorization": "Basic secret",
        },
    )
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == "PATCH"
    assert echo["raw_path"] == "/echo/a%20b/c"
    assert echo["query"] == "q=1&r=two+words"
    assert (echo["body_length"], echo["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    headers = dict(echo["headers"])
    assert headers["authorization"] == "Bearer abc"
    assert headers["x-custom"] == "kept"
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["host"] == f"127.0.0.1:{upstream[1].port}"
    assert headers["content-length"] == str(len(body))
    for hop_by_hop in ("x-hop", "te", "proxy-authorization"):
        assert hop_by_hop not in headers
    assert response.headers["x-upstream"] == "echo"
    assert "keep-alive" not in response.headers


def test_a_valid_traceparent_is_kept(gateway: httpx.Client) -> None:
    echo = gateway.get("/echo/x", headers={"traceparent": VALID_TRACEPARENT, "tracestate": "k=v"}).json()
    headers = dict(echo["headers"])
    assert headers["traceparent"] == VALID_TRACEPARENT
    assert headers["tracestate"] == "k=v"


@pytest.mark.parametrize("sent", [None, "00-zz-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01"])
def test_a_missing_or_invalid_traceparent_becomes_a_new_trace(gateway: httpx.Client, sent: str | None) -> None:
    headers = {"tracestate": "k=v"} | ({"traceparent": sent} if sent else {})
    echo = gateway.get("/echo/x", headers=headers).json()
    forwarded = dict(echo["headers"])
    assert parse_traceparent(forwarded["traceparent"]) is not None
    assert forwarded["traceparent"] != sent
    assert "tracestate" not in forwarded  # it belonged to the trace that was not continued


def test_every_request_gets_its_own_trace(gateway: httpx.Client) -> None:
    first, second = (dict(gateway.get("/echo/x").json()["headers"])["traceparent"] for _ in range(2))
    assert first.split("-")[1] != second.split("-")[1]


def test_sequential_requests_reuse_one_pooled_connection(gateway: httpx.Client) -> None:
    ports = {gateway.get("/echo/x").json()["client_port"] for _ in range(5)}
    assert len(ports) == 1


def test_a_streamed_response_arrives_whole(gateway: httpx.Client) -> None:
    with gateway.stream("GET", "/stream") as response:
        assert response.status_code == 200
        received = b"".join(response.iter_bytes())
    assert received == b"".join(bytes([65 + index % 26]) * 65536 for index in range(48))


def test_a_chunked_request_body_is_streamed_to_the_service(gateway: httpx.Client) -> None:
    pieces = [bytes([index]) * 100_000 for index in range(15)]
    response = gateway.post("/echo/upload", content=iter(pieces))
    echo = response.json()
    assert echo["body_length"] == 1_500_000
    assert echo["body_sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert dict(echo["headers"]).get("transfer-encoding") == "chunked"


def test_a_head_request_gets_headers_only(gateway: httpx.Client) -> None:
    response = gateway.head("/echo/x")
    assert response.status_code == 200
    assert response.content == b""
    assert gateway.get("/echo/after-head").status_code == 200


def test_a_body_over_the_limit_is_refused_before_the_service_sees_it(
    gateway: httpx.Client, upstream: tuple[Upstream, ServerThread]
) -> None:
    response = gateway.post("/echo/big", content=b"x" * 2_000_001)
    assert response.status_code == 413
    assert response.content == b'{"message":"Request Entity Too Large"}'
    assert "/echo/big" not in upstream[0].requests


def test_a_chunked_body_is_cut_off_at_the_limit(gateway: httpx.Client) -> None:
    response = gateway.post("/echo/big", content=iter([b"x" * 500_000] * 5))
    assert response.status_code == 413
    assert response.content == b'{"message":"Request Entity Too Large"}'


def test_a_service_answering_before_it_read_the_body_is_forwarded(gateway: httpx.Client) -> None:
    response = gateway.post("/early", content=b"x" * 1_000_000)
    assert response.status_code == 413
    assert response.content == b'{"error":"payload_too_large"}'
    assert gateway.get("/echo/after-early").status_code == 200


def test_a_route_over_its_burst_is_throttled_and_others_are_not(start_gateway: GatewayFactory) -> None:
    server = start_gateway(limits={"GET /limited": Limit(burst=2, rate=0.001)})
    with httpx.Client(base_url=server.url) as client:
        statuses = [client.get("/limited").status_code for _ in range(3)]
        throttled = client.get("/limited")
        other = client.get("/echo/x")
    assert statuses == [200, 200, 429]
    assert throttled.status_code == 429
    assert throttled.content == b'{"message":"Too Many Requests"}'
    assert other.status_code == 200


def test_a_service_that_is_down_is_a_503(gateway: httpx.Client) -> None:
    response = gateway.get("/down")
    assert response.status_code == 503
    assert response.content == b'{"message":"Service Unavailable"}'


def test_a_service_slower_than_the_integration_timeout_is_a_504(gateway: httpx.Client) -> None:
    response = gateway.get("/slow")
    assert response.status_code == 504
    assert response.content == b'{"message":"Gateway Timeout"}'


def test_a_restarted_service_is_reached_again_after_a_503(start_gateway: GatewayFactory) -> None:
    app = Upstream()
    first = ServerThread(upstream_config(app)).__enter__()
    port = first.port
    config = GatewayConfig(RouteTable({"ANY /echo/{proxy+}": "svc"}), {"svc": first.url})
    with (
        ServerThread(server_config(Gateway(config), "127.0.0.1", 0)) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/echo/before").status_code == 200  # leaves a pooled connection to the first process
        first.__exit__()
        assert client.get("/echo/while-down").status_code == 503
        with ServerThread(upstream_config(app), port=port):
            assert client.get("/echo/after").status_code == 200


@pytest.mark.parametrize("seconds", ["0", "31"])
def test_an_integration_timeout_beyond_api_gateway_s_is_refused(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--integration-timeout", seconds])
    assert "allowed: above 0 up to 30 seconds (API Gateway's limit)" in capsys.readouterr().err
