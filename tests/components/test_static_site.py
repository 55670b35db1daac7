"""StaticSite: private versioned bucket read through an origin access control, HTTPS-only CloudFront with HTTP/2+3,
compression, security headers, SPA routes and `/api/*` to the API uncached, v2 access logs, one object per built
file with its content type and cache headers. The viewer-request functions run in Node on CloudFront's event shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.static_site import (
    ALL_VIEWER_EXCEPT_HOST_POLICY_ID,
    CACHING_DISABLED_POLICY_ID,
    HASHED_ASSET_CACHE,
    SPA_REWRITE_CODE,
    STRIP_API_PREFIX_CODE,
    ApiOrigin,
    SecurityHeaders,
    SiteDomain,
    StaticSite,
    StaticSiteArgs,
    site_files,
)
from runner.plan import Plan
from tests.shapes.check import check_plan
from tests.support import Recorded, build, inputs, json_input

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"
WEB_ACL = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/console/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    (root / "assets").mkdir()
    (root / "index.html").write_text("<!doctype html><script type=module src=/assets/index-Ab12.js></script>")
    (root / "assets" / "index-Ab12.js").write_text("console.log(1)")
    (root / "assets" / "index-Cd34.css").write_text("body{}")
    (root / "favicon.svg").write_text("<svg/>")
    return root


def site(dist: Path | None, **overrides: Any) -> Recorded:
    args = StaticSiteArgs(name_prefix="jobs-dev", account_id="123456789012", content_directory=dist, **overrides)
    return build(lambda: StaticSite("console", args))


@pytest.fixture(scope="module")
def default_site(dist: Path) -> Recorded:
    return site(dist)


@pytest.fixture(scope="module")
def full_site(dist: Path) -> Recorded:
    return site(
        dist,
        api_origin=ApiOrigin("api.jobs.example.net", "https-only"),
        custom_domain=SiteDomain("console.jobs.example.net", CERT),
        web_acl_arn=WEB_ACL,
    )


def test_defaults_private_bucket_https_http3_compression_and_headers(default_site: Recorded) -> None:
    distribution = inputs(default_site.one(DISTRIBUTION))
    assert distribution["httpVersion"] == "http2and3" and distribution["isIpv6Enabled"] is True
    behavior = distribution["defaultCacheBehavior"]
    assert behavior["viewerProtocolPolicy"] == "redirect-to-https" and behavior["compress"] is True
    assert behavior["allowedMethods"] == ["GET", "HEAD"]
    assert distribution["viewerCertificate"] == {"cloudfrontDefaultCertificate": True}
    assert "customErrorResponses" not in distribution  # the API's 404s must stay 404s
    assert "orderedCacheBehaviors" not in distribution or distribution["orderedCacheBehaviors"] == []
    [origin] = distribution["origins"]
    assert origin["originAccessControlId"] and "s3OriginConfig" not in origin  # OAC, never the legacy OAI
    oac = inputs(default_site.one("aws:cloudfront/originAccessControl:OriginAccessControl"))
    assert (oac["signingBehavior"], oac["signingProtocol"], oac["originAccessControlOriginType"]) == (
        "always",
        "sigv4",
        "s3",
    )
    blocks = default_site.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert len(blocks) == 2 and all(
        all(inputs(b)[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
        for b in blocks
    )
    assert default_site.of_type("aws:s3/bucketVersioning:BucketVersioning")
    cache = inputs(default_site.one("aws:cloudfront/cachePolicy:CachePolicy"))
    assert (cache["minTtl"], cache["maxTtl"]) == (0, 31_536_000)


def test_the_headers_policy_is_the_one_the_local_console_applies(default_site: Recorded) -> None:
    config = inputs(default_site.one("aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy"))[
        "securityHeadersConfig"
    ]
    expected = SecurityHeaders.from_file()
    csp = config["contentSecurityPolicy"]["contentSecurityPolicy"]
    assert csp == expected.content_security_policy
    assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp and "connect-src 'self'" in csp
    assert config["strictTransportSecurity"]["accessControlMaxAgeSec"] == expected.strict_transport_security_seconds
    assert config["frameOptions"]["frameOption"] == "DENY"
    assert config["contentTypeOptions"]["override"] is True
    assert config["referrerPolicy"]["referrerPolicy"] == expected.referrer_policy


def test_one_object_per_file_with_content_type_and_cache_headers(default_site: Recorded, dist: Path) -> None:
    objects = {inputs(o)["key"]: inputs(o) for o in default_site.of_type(OBJECT)}
    assert sorted(objects) == ["assets/index-Ab12.js", "assets/index-Cd34.css", "favicon.svg", "index.html"]
    assert objects["index.html"]["cacheControl"] == "no-cache"
    assert objects["index.html"]["contentType"] == "text/html; charset=utf-8"
    assert objects["assets/index-Ab12.js"]["cacheControl"] == HASHED_ASSET_CACHE
    assert objects["assets/index-Ab12.js"]["contentType"].startswith(("text/javascript", "application/javascript"))
    assert objects["favicon.svg"]["contentType"] == "image/svg+xml"


def test_the_bucket_lets_only_this_distribution_read(default_site: Recorded) -> None:
    policies = [json_input(p, "policy") for p in default_site.of_type("aws:s3/bucketPolicy:BucketPolicy")]
    reads = [
        s for p in policies for s in p["Statement"] if s.get("Principal") == {"Service": "cloudfront.amazonaws.com"}
    ]
    assert len(reads) == 1 and reads[0]["Action"] == "s3:GetObject"
    assert set(reads[0]["Condition"]["StringEquals"]) == {"AWS:SourceArn"}
    assert all(any(s["Sid"] == "DenyInsecureTransport" for s in p["Statement"]) for p in policies)


def test_current_content_never_expires_only_old_versions(default_site: Recorded) -> None:
    rules = [
        inputs(r)["rules"][0]
        for r in default_site.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    ]
    content = [r for r in rules if r["id"] == "expire-old-versions"]
    assert len(content) == 1 and "expiration" not in content[0] and content[0]["noncurrentVersionExpiration"]


def test_access_logs_are_delivered_v2_from_us_east_1(default_site: Recorded) -> None:
    source = inputs(default_site.one("aws:cloudwatch/logDeliverySource:LogDeliverySource"))
    assert source["logType"] == "ACCESS_LOGS" and source["region"] == "us-east-1"
    assert default_site.one("aws:cloudwatch/logDelivery:LogDelivery")
    grants = [
        s
        for r in default_site.of_type("aws:s3/bucketPolicy:BucketPolicy")
        for s in json_input(r, "policy")["Statement"]
        if s.get("Principal") == {"Service": "delivery.logs.amazonaws.com"}
    ]
    assert len(grants) == 1 and grants[0]["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"


def test_api_behaviour_custom_domain_and_waf(full_site: Recorded) -> None:
    distribution = inputs(full_site.one(DISTRIBUTION))
    [api] = distribution["orderedCacheBehaviors"]
    assert api["pathPattern"] == "/api/*" and api["targetOriginId"] == "api"
    assert api["cachePolicyId"] == CACHING_DISABLED_POLICY_ID
    assert api["originRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_POLICY_ID
    assert api["viewerProtocolPolicy"] == "https-only" and "POST" in api["allowedMethods"]
    assert api["functionAssociations"][0]["eventType"] == "viewer-request"
    origin = next(o for o in distribution["origins"] if o["originId"] == "api")
    assert origin["customOriginConfig"]["originProtocolPolicy"] == "https-only"
    assert origin["customOriginConfig"]["originSslProtocols"] == ["TLSv1.2"]
    assert distribution["viewerCertificate"] == {
        "acmCertificateArn": CERT,
        "minimumProtocolVersion": "TLSv1.2_2021",
        "sslSupportMethod": "sni-only",
    }
    assert distribution["aliases"] == ["console.jobs.example.net"] and distribution["webAclId"] == WEB_ACL


def test_without_a_build_nothing_is_uploaded() -> None:
    assert site(None).of_type(OBJECT) == []


def test_refuses_a_certificate_outside_us_east_1_and_a_regional_web_acl(dist: Path) -> None:
    with pytest.raises(ValueError, match=r"custom_domain.certificate_arn.*us-east-1.*web_acl_arn.*CLOUDFRONT"):
        site(
            dist,
            custom_domain=SiteDomain("console.jobs.example.net", CERT.replace("us-east-1", "eu-west-1")),
            web_acl_arn=WEB_ACL.replace("us-east-1", "eu-west-1").replace("global", "regional"),
        )


def test_a_directory_without_index_html_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no index\.html; build the app first"):
        site_files(tmp_path)


# --- The viewer-request functions, run as CloudFront runs them (event.request -> request) ------------------


def run_function(code: str, uris: list[str]) -> list[str]:
    node = shutil.which("node")
    assert node, "node is needed to run the CloudFront functions"
    script = code + (
        "\nconst uris = JSON.parse(process.argv[1]);"
        "\nconsole.log(JSON.stringify(uris.map(u => handler({version: '1.0', context: {eventType: 'viewer-request'},"
        " viewer: {ip: '192.0.2.1'}, request: {method: 'GET', uri: u, querystring: {}, headers: {}, cookies: {}}}).uri)));"
    )
    out = subprocess.run([node, "-e", script, json.dumps(uris)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_app_routes_are_served_index_html_and_files_are_not() -> None:
    uris = ["/", "/jobs", "/jobs/9b1d/", "/index.html", "/assets/index-Ab12.js", "/favicon.svg", "/jobs/a.b"]
    assert run_function(SPA_REWRITE_CODE, uris) == [
        "/index.html",
        "/index.html",
        "/index.html",
        "/index.html",
        "/assets/index-Ab12.js",
        "/favicon.svg",
        "/jobs/a.b",
    ]


def test_the_api_sees_its_own_paths() -> None:
    uris = ["/api/jobs", "/api", "/api/", "/api/jobs/1/events", "/apiary/x"]
    assert run_function(STRIP_API_PREFIX_CODE, uris) == ["/jobs", "/", "/", "/jobs/1/events", "/apiary/x"]


@pytest.mark.parametrize("fixture", ["default_site", "full_site"])
def test_every_request_is_one_cloudfront_logs_and_s3_accept(fixture: str, request: pytest.FixtureRequest) -> None:
    recorded: Recorded = request.getfixturevalue(fixture)
    plan = Plan(project="test", stack="test", resources=recorded.resources)
    problems = [f"{r.label}: {p}" for r in check_plan(plan) for p in r.problems]
    assert problems == []


# --- Stack config ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"jobPlatform": {"enabled": False}, "entry": "httpApi", "services": {}, "console": {"enabled": True}},
            "console.enabled: true with jobPlatform.enabled false",
        ),
        (
            {"console": {"apiOriginDomain": "api.example.net"}},
            "console.apiOriginDomain: set without an ALB certificate",
        ),
        (
            {"certificateArn": CERT, "console": {"enabled": True}},
            "console.apiOriginDomain: missing with entry alb and certificateArn",
        ),
        (
            {
                "console": {
                    "customDomain": {
                        "domainName": "console.example.net",
                        "certificateArn": CERT.replace("us-east-1", "eu-west-1"),
                    }
                }
            },
            "console.customDomain.certificateArn",
        ),
        ({"console": {"webAclArn": WEB_ACL.replace("global", "regional")}}, "console.webAclArn"),
        ({"console": {"buildDirectory": "../elsewhere"}}, "console.buildDirectory"),
    ],
)
def test_console_config_errors_name_the_key(raw: dict[str, Any], problem: str) -> None:
    from components.config import ConfigError, parse_stack_config

    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_stack_config({"environment": "dev", **raw})


def test_the_console_is_on_where_the_job_platform_is_unless_the_alb_cannot_be_named() -> None:
    from components.config import parse_stack_config

    assert parse_stack_config({"environment": "dev"}).console_enabled
    assert not parse_stack_config({"environment": "dev", "certificateArn": CERT}).console_enabled
    named = {"environment": "dev", "certificateArn": CERT, "console": {"apiOriginDomain": "api.example.net"}}
    assert parse_stack_config(named).console_enabled
    assert not parse_stack_config({"environment": "dev", "console": {"enabled": False}}).console_enabled


def test_example_domains_of_the_console_are_placeholders() -> None:
    from components.config import parse_stack_config, placeholder_problems

    raw = {
        "environment": "prod",
        "certificateArn": CERT.replace("123456789012", "210987654322"),
        "images": {"build": True},
        "console": {"apiOriginDomain": "api.jobs.example.com"},
    }
    assert placeholder_problems(parse_stack_config(raw)) == [
        "console.apiOriginDomain: 'api.jobs.example.com' is a domain reserved for examples; allowed: a domain of yours"
    ]
