"""The web console served locally as CloudFront serves it: the built app (web/dist) with the same cache and security
headers (web/security-headers.json), app routes answered with index.html, and `/api/*` proxied to the API with the
prefix stripped and nothing buffered (server-sent events stream through).

    uv run python -m services.console --api http://127.0.0.1:8080 [--port 8000] [--dist web/dist]

`./platform local` starts it next to the API when web/dist is built; the browser tests run against it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mimetypes
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "web" / "dist"
SECURITY_HEADERS_FILE = ROOT / "web" / "security-headers.json"
HASHED_ASSET_CACHE = "public, max-age=31536000, immutable"
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the proxy sets itself; CloudFront drops these too.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}
)


def security_headers(path: Path = SECURITY_HEADERS_FILE) -> dict[str, str]:
    """The headers CloudFront's response headers policy adds (components/static_site.py reads the same file)."""
    raw = json.loads(path.read_text())
    return {
        "Content-Security-Policy": raw["contentSecurityPolicy"],
        "Strict-Transport-Security": f"max-age={raw['strictTransportSecuritySeconds']}; includeSubDomains; preload",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": raw["referrerPolicy"],
    }


def app_path(uri: str) -> str:
    """What the SPA viewer-request function does: an extension-less path is an app route, served index.html."""
    last = uri.rsplit("/", 1)[-1]
    return "/index.html" if "." not in last else uri


def api_path(uri: str) -> str:
    """What the /api/* viewer-request function does: the API's own path."""
    stripped = uri[len("/api") :] if uri == "/api" or uri.startswith("/api/") else uri
    return stripped or "/"


def create_app(api_url: str, dist: Path = DIST) -> Starlette:
    headers = security_headers()
    client = httpx.AsyncClient(base_url=api_url, timeout=httpx.Timeout(30.0, read=None))
    root = dist.resolve()

    async def static(request: Request) -> Response:
        target = (root / app_path(request.url.path).lstrip("/")).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            return PlainTextResponse("not found", status_code=404, headers=headers)
        key = target.relative_to(root).as_posix()
        cache = HASHED_ASSET_CACHE if key.startswith("assets/") else "no-cache"
        media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return FileResponse(target, media_type=media_type, headers={**headers, "Cache-Control": cache})

    async def proxy(request: Request) -> Response:
        forwarded = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        upstream_request = client.build_request(
            request.method,
            api_path(request.url.path),
            params=request.url.query,
            headers=forwarded,
            content=request.stream(),
        )
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.TransportError:
            # What CloudFront answers when the origin does not: 502, and the app shows its "not reachable" banner.
            return PlainTextResponse("origin unreachable", status_code=502, headers=headers)
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}}

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            except httpx.TransportError:
                return  # the API went away mid-stream: end the response, the client reconnects

        return StreamingResponse(
            body(),
            status_code=upstream.status_code,
            headers={**kept, **headers},
            background=BackgroundTask(upstream.aclose),
        )

    methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
    return Starlette(
        routes=[
            Route("/api", proxy, methods=methods),
            Route("/api/{rest:path}", proxy, methods=methods),
            Route("/{rest:path}", static, methods=["GET", "HEAD"]),
        ],
        lifespan=lambda _: _closing(client),
    )


@contextlib.asynccontextmanager
async def _closing(client: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="the API's base URL")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    parser.add_argument("--dist", type=Path, default=DIST, help="the built app (default web/dist)")
    args = parser.parse_args(argv)
    if not (args.dist / "index.html").is_file():
        parser.error(f"{args.dist} has no index.html: run `npm --prefix web ci && npm --prefix web run build`")
    uvicorn.run(create_app(args.api, args.dist), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
