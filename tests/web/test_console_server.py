"""The local console server behaves as the CloudFront distribution does: the same path rewrites (checked against
the viewer-request functions themselves, run in Node), the same security and cache headers, a 502 when the API
does not answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from components.static_site import HASHED_ASSET_CACHE, SPA_REWRITE_CODE, STRIP_API_PREFIX_CODE, SecurityHeaders
from services.common.jobs import JOB_TYPES
from services.console import api_path, app_path, create_app, security_headers
from services.fauxqs import free_port
from tests.components.test_static_site import run_function

URIS = [
    "/",
    "/jobs",
    "/jobs/9b1d/",
    "/index.html",
    "/assets/index-Ab12.js",
    "/favicon.svg",
    "/api",
    "/api/",
    "/api/jobs",
]


def test_the_rewrites_are_the_cloudfront_functions() -> None:
    assert [app_path(u) for u in URIS] == run_function(SPA_REWRITE_CODE, URIS)
    api_uris = [u for u in URIS if u.startswith("/api")] + ["/api/jobs/1/events", "/apiary"]
    assert [api_path(u) for u in api_uris] == run_function(STRIP_API_PREFIX_CODE, api_uris)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "assets" / "index-Ab12.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("not served")
    # Nothing listens on this port: the API is down.
    return TestClient(create_app(f"http://127.0.0.1:{free_port()}", tmp_path))


def test_app_routes_get_index_html_with_the_distribution_s_headers(client: TestClient) -> None:
    expected = SecurityHeaders.from_file()
    response = client.get("/jobs/123")
    assert response.status_code == 200 and "<title>console</title>" in response.text
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["content-security-policy"] == expected.content_security_policy
    assert response.headers["referrer-policy"] == expected.referrer_policy
    assert response.headers["x-frame-options"] == "DENY" and response.headers["x-content-type-options"] == "nosniff"
    assert security_headers()["Strict-Transport-Security"].startswith(
        f"max-age={expected.strict_transport_security_seconds}"
    )


def test_hashed_assets_are_cached_a_year_and_nothing_outside_the_build_is_served(client: TestClient) -> None:
    asset = client.get("/assets/index-Ab12.js")
    assert asset.headers["cache-control"] == HASHED_ASSET_CACHE
    assert asset.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert client.get("/../secret.txt").status_code == 404
    assert client.get("/missing.png").status_code == 404


def test_an_api_that_does_not_answer_is_a_502(client: TestClient) -> None:
    response = client.get("/api/jobs")
    assert response.status_code == 502
    assert response.headers["content-security-policy"]


def test_the_console_offers_exactly_the_job_types_the_api_accepts() -> None:
    """web/src/api.ts lists the job types (each with its own parameter form); a type added to the API without a
    form in the console, or left in the console after the API dropped it, fails here."""
    source = (Path(__file__).resolve().parents[2] / "web" / "src" / "api.ts").read_text(encoding="utf-8")
    declared = re.search(r"export const JOB_TYPES = \[([^\]]*)\]", source)
    assert declared is not None, "web/src/api.ts no longer declares JOB_TYPES"
    assert sorted(re.findall(r'"([^"]+)"', declared.group(1))) == sorted(JOB_TYPES)
