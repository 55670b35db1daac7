"""The shop's route table as API Gateway's HTTP API applies it, for the local gateway (services/shop/gateway.py).

The table is the stack file's own (`container-platform:services.<name>.routes` in Pulumi.shop.yaml), validated by
components/config.py exactly as `pulumi up` validates it, so the local gateway and the deployed HTTP API can never
disagree on which routes exist. Matching follows API Gateway's rules for HTTP APIs:

- a route key is `METHOD /path`; a `{name}` segment matches one non-empty path segment, a last `{name+}` segment
  one or more (so `ANY /{proxy+}` does not match `/`);
- of the routes whose method (or `ANY`) and path match, the most specific wins: a route without a greedy segment
  before one with it, then, segment by segment from the left, a literal before a `{name}`, then, for the same
  path, the exact method before `ANY` (API Gateway's "full match, then greedy match" order);
- throttling is a token bucket per route: `httpApi.routeThrottling` for the routes listed there, the stage's
  `throttlingBurstLimit`/`throttlingRateLimit` for every other route.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.config import HTTP_METHODS, ROUTE, StackConfig, is_route, parse_stack_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SHOP_STACK_FILE = REPO_ROOT / "Pulumi.shop.yaml"

# Segment ranks: a higher rank is more specific.
GREEDY, PARAMETER, LITERAL = 0, 1, 2


def load_stack_config(stack_file: Path = SHOP_STACK_FILE) -> StackConfig:
    """The typed, validated config of a stack file (`Pulumi.<stack>.yaml`), as `pulumi up` would see it.

    Raises components.config.ConfigError listing every problem, or ValueError when the file is not a stack file."""
    document = yaml.safe_load(stack_file.read_text())
    if not isinstance(document, Mapping) or not isinstance(document.get("config"), Mapping):
        raise ValueError(f"{stack_file}: not a Pulumi stack file; allowed: a YAML mapping with a `config:` mapping")
    config: Mapping[str, Any] = document["config"]
    prefix = f"{_project_name(stack_file.parent)}:"
    raw = {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}
    region = config.get("aws:region")
    return parse_stack_config(raw, region if isinstance(region, str) else None)


def _project_name(directory: Path) -> str:
    project = yaml.safe_load((directory / "Pulumi.yaml").read_text())
    return str(project["name"])


@dataclass(frozen=True, slots=True)
class Route:
    """One route key and the service it is sent to."""

    key: str
    method: str
    segments: tuple[str, ...]
    """Literal text per literal segment, the `{name}` / `{name+}` text otherwise."""
    ranks: tuple[int, ...]
    service: str

    @property
    def greedy(self) -> bool:
        return bool(self.ranks) and self.ranks[-1] == GREEDY

    def precedence(self, method: str) -> tuple[bool, tuple[int, ...], bool]:
        """Higher is more specific for a request with `method`: no greedy segment, then segment by segment a
        literal before a variable (a longer literal prefix among greedy routes), then the exact method."""
        return (not self.greedy, self.ranks, self.method == method)

    @property
    def pattern(self) -> str:
        """A regular expression for the paths this route matches."""
        if not self.segments:
            return "/"
        return "".join(
            f"/{_segment_pattern(segment, rank)}" for segment, rank in zip(self.segments, self.ranks, strict=True)
        )


def _segment_pattern(segment: str, rank: int) -> str:
    if rank == LITERAL:
        return re.escape(segment)
    if rank == PARAMETER:
        return "[^/]+"
    return ".*[^/].*"  # one or more segments, not all empty


def parse_route(key: str, service: str) -> Route:
    """A route key checked with the stack config's own route grammar; ValueError says what is allowed."""
    if not is_route(key):
        raise ValueError(f"route {key!r} of service {service!r} is not a route; allowed: {ROUTE}")
    method, _, path = key.partition(" ")
    segments = tuple(path[1:].split("/")) if path != "/" else ()
    return Route(key, method, segments, tuple(_rank(segment) for segment in segments), service)


def _rank(segment: str) -> int:
    if segment.endswith("+}"):
        return GREEDY
    return PARAMETER if segment.startswith("{") else LITERAL


class _Matcher:
    """The routes a method may take, most specific first, as one regular expression: the first alternative that
    matches a path is the most specific route for it."""

    def __init__(self, routes: tuple[Route, ...], method: str) -> None:
        candidates = [route for route in routes if route.method in (method, "ANY")]
        self.routes = sorted(candidates, key=lambda route: route.precedence(method), reverse=True)
        # One capturing group per route and none inside: `lastindex` is the matching route's position.
        pattern = "|".join(f"({route.pattern})" for route in self.routes)
        self.regex = re.compile(pattern, re.DOTALL) if self.routes else None

    def match(self, path: str) -> Route | None:
        found = self.regex.fullmatch(path) if self.regex is not None else None
        if found is None or found.lastindex is None:
            return None
        return self.routes[found.lastindex - 1]


class RouteTable:
    """Route keys -> services, matched like the HTTP API matches them (see the module docstring)."""

    def __init__(self, routes: Mapping[str, str]) -> None:
        """`routes`: route key (e.g. `GET /products/{id}`) -> the service it is sent to."""
        self.routes = tuple(parse_route(key, service) for key, service in routes.items())
        # A route without variables matching the whole path is the most specific there is: one dict lookup.
        self._literal = {
            (route.method, "/" + "/".join(route.segments)): route
            for route in self.routes
            if all(rank == LITERAL for rank in route.ranks)
        }
        self._by_method = {method: _Matcher(self.routes, method) for method in HTTP_METHODS if method != "ANY"}
        self._any_only = _Matcher(self.routes, "ANY")  # a method no route names: only ANY routes take it

    @classmethod
    def from_config(cls, config: StackConfig) -> RouteTable:
        return cls({route: name for name, spec in config.services.items() for route in spec.routes})

    def match(self, method: str, path: str) -> Route | None:
        """The route a request goes to, or None (the HTTP API's 404)."""
        path = path or "/"
        exact = self._literal.get((method, path)) or self._literal.get(("ANY", path))
        if exact is not None:
            return exact
        return self._by_method.get(method, self._any_only).match(path)


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket's size (requests) and refill rate (requests per second), as API Gateway's throttling."""

    burst: int
    rate: float

    def __post_init__(self) -> None:
        if self.burst < 1 or self.rate <= 0:
            raise ValueError(f"throttling burst {self.burst}, rate {self.rate}; allowed: burst >= 1 and rate > 0")


class TokenBucket:
    """Starts full (`burst` tokens); each request takes one; tokens come back at `rate` per second."""

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, limit: Limit) -> None:
        self.burst = float(limit.burst)
        self.rate = limit.rate
        self._tokens = self.burst
        self._updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def route_limits(config: StackConfig) -> dict[str, Limit]:
    """Each route's throttling: its `httpApi.routeThrottling` entry, or else the stage's default limits."""
    api = config.httpApi
    default = Limit(api.throttlingBurstLimit, api.throttlingRateLimit)
    own = {key: Limit(limit.burst, limit.rate) for key, limit in api.routeThrottling.items()}
    return {route.key: own.get(route.key, default) for route in RouteTable.from_config(config).routes}
