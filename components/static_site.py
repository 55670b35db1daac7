"""StaticSite: a single-page app in a private S3 bucket behind CloudFront, with the API on the same origin.

- The bucket is private (public access blocked, bucket-owner-enforced, SSE-S3, TLS-only, versioned; only old
  versions expire). CloudFront reads it through an origin access control (SigV4), never the legacy OAI; the bucket
  policy lets exactly this distribution read (`AWS:SourceArn`).
- Viewers: HTTPS only (HTTP redirects), HTTP/2 and HTTP/3, IPv6, compression. With a custom domain the ACM
  certificate (us-east-1, as CloudFront requires) and TLSv1.2_2021 minimum; without one the *.cloudfront.net
  certificate, whose security policy AWS fixes at TLSv1 (so the pack flags it as advisory).
- A response headers policy on every response: CSP from `web/security-headers.json` (the local console server
  applies the same file, so the browser tests run the app under it), HSTS, frame-ancestors none + X-Frame-Options
  DENY, nosniff, referrer policy.
- `/api/*` goes to the stack's API entry (ALB or HTTP API), uncached, every viewer header but Host forwarded,
  with `/api` stripped by a viewer-request function: the browser talks to one origin, so the API needs no CORS.
- SPA routes (paths without a file extension) are rewritten to /index.html by a viewer-request function. The seed's
  custom error responses (403/404 -> index.html) would also turn the API's own 404s into a 200 HTML page.
- Caching follows each object's Cache-Control (cache policy min TTL 0): Vite's content-hashed `assets/*` a year
  and immutable, everything else (index.html) `no-cache`. CloudFront then never serves a stale index.html, so no
  invalidation is needed when it changes (the deploy has no CLI step, and pulumi-command is not used; a new
  index.html is live at once and references new hashed asset keys).
- Access logs: CloudFront standard logging v2 (CloudWatch Logs vended delivery, us-east-1) to a private log bucket.
  Legacy logging would need ACLs on the log bucket, which our buckets disable (BucketOwnerEnforced).
- Optional WAF web ACL (WAFv2, CLOUDFRONT scope, so created in us-east-1).
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components.s3 import private_bucket

ROOT = Path(__file__).resolve().parents[1]
SECURITY_HEADERS_FILE = ROOT / "web" / "security-headers.json"
# CloudFront reads ACM certificates, WAF web ACLs (CLOUDFRONT scope) and vended log deliveries only in us-east-1.
CLOUDFRONT_REGION = "us-east-1"
MINIMUM_TLS = "TLSv1.2_2021"
# AWS managed policies (fixed ids, the same in every account): no caching for the API; every viewer header,
# cookie and query string forwarded except Host (the origin's own host name must reach it for TLS and routing).
CACHING_DISABLED_POLICY_ID = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_POLICY_ID = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
ONE_YEAR_SECONDS = 31_536_000
HASHED_ASSET_CACHE = f"public, max-age={ONE_YEAR_SECONDS}, immutable"
UNHASHED_CACHE = "no-cache"
HASHED_ASSET_PREFIX = "assets/"
API_PATH = "/api/*"
S3_ORIGIN_ID = "site"
API_ORIGIN_ID = "api"
ALL_METHODS = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
READ_METHODS = ["GET", "HEAD"]

# cloudfront-js-2.0 viewer-request functions. Extension-less paths are app routes; `/api` is the API's mount point
# on this origin, not part of its own paths.
SPA_REWRITE_CODE = """function handler(event) {
  var request = event.request;
  var last = request.uri.split('/').pop();
  if (last.indexOf('.') === -1) {
    request.uri = '/index.html';
  }
  return request;
}
"""
STRIP_API_PREFIX_CODE = """function handler(event) {
  var request = event.request;
  request.uri = request.uri.replace(/^\\/api(?=\\/|$)/, '') || '/';
  return request;
}
"""


@dataclass(frozen=True)
class SecurityHeaders:
    content_security_policy: str
    """The Content-Security-Policy header: only what the app loads."""
    referrer_policy: str
    """The Referrer-Policy header value."""
    strict_transport_security_seconds: int
    """HSTS max-age (includeSubDomains, preload)."""

    @classmethod
    def from_file(cls, path: Path = SECURITY_HEADERS_FILE) -> SecurityHeaders:
        raw = json.loads(path.read_text())
        return cls(raw["contentSecurityPolicy"], raw["referrerPolicy"], int(raw["strictTransportSecuritySeconds"]))


@dataclass(frozen=True)
class ApiOrigin:
    domain_name: pulumi.Input[str]
    """Host name of the API entry: the ALB's DNS name, the name its certificate covers, or the HTTP API's host."""
    protocol: Literal["https-only", "http-only"]
    """How CloudFront reaches it: https-only (TLS 1.2) when the entry has a certificate for `domain_name`;
    http-only for an ALB without one (the pack flags it as advisory)."""


@dataclass(frozen=True)
class SiteDomain:
    domain_name: str
    """Custom domain of the site, e.g. `console.example.com` (point a DNS alias at `distribution_domain_name`)."""
    certificate_arn: str
    """ACM certificate for the domain, in us-east-1."""


@dataclass(frozen=True)
class SiteFile:
    key: str
    """Object key, the path relative to the content directory with `/` separators."""
    path: Path
    """The file on disk."""
    content_type: str
    """Content-Type served."""
    cache_control: str
    """Cache-Control served: a year for hashed assets, no-cache otherwise."""


@dataclass(frozen=True)
class StaticSiteArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    account_id: pulumi.Input[str]
    """Account of the site (scopes the log delivery's bucket grant)."""
    content_directory: Path | None
    """Built app to upload (index.html at its root). None uploads nothing: the offline plan of a checkout where
    `npm run build` has not run (the caller refuses a real deployment then). Required."""
    api_origin: ApiOrigin | None = None
    """The API entry served at `/api/*`. Default: none (static content only)."""
    custom_domain: SiteDomain | None = None
    """Custom domain with its us-east-1 ACM certificate (TLSv1.2_2021 minimum). Default: none (*.cloudfront.net)."""
    web_acl_arn: str | None = None
    """WAFv2 web ACL (CLOUDFRONT scope) in front of the site and the API. Default: none."""
    price_class: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"] = "PriceClass_100"
    """Edge locations used: 100 (North America, Europe), 200, All. Default: PriceClass_100."""
    log_expiration_days: int = 90
    """Days access logs (and old content versions) are kept. Default: 90."""
    security_headers: SecurityHeaders | None = None
    """Headers added to every response. Default: `web/security-headers.json`."""


def site_files(directory: Path) -> list[SiteFile]:
    """Every file under `directory`, sorted, with its content type and cache policy."""
    if not (directory / "index.html").is_file():
        raise ValueError(f"{directory}: no index.html; build the app first (npm --prefix web run build)")
    files = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        key = path.relative_to(directory).as_posix()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
            content_type += "; charset=utf-8"
        cache = HASHED_ASSET_CACHE if key.startswith(HASHED_ASSET_PREFIX) else UNHASHED_CACHE
        files.append(SiteFile(key, path, content_type, cache))
    return files


def _problems(args: StaticSiteArgs) -> list[str]:
    problems = []
    domain = args.custom_domain
    if domain is not None and f":acm:{CLOUDFRONT_REGION}:" not in domain.certificate_arn:
        problems.append(
            f"custom_domain.certificate_arn: {domain.certificate_arn!r}; allowed: a certificate in us-east-1"
        )
    if args.web_acl_arn is not None and not args.web_acl_arn.startswith(f"arn:aws:wafv2:{CLOUDFRONT_REGION}:"):
        problems.append(
            f"web_acl_arn: {args.web_acl_arn!r}; allowed: a WAFv2 web ACL with CLOUDFRONT scope (us-east-1)"
        )
    if args.log_expiration_days < 1:
        problems.append(f"log_expiration_days: {args.log_expiration_days}; allowed: 1 or more")
    return problems


class StaticSite(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    """Bucket holding the app."""
    distribution_id: pulumi.Output[str]
    """CloudFront distribution id."""
    distribution_domain_name: pulumi.Output[str]
    """The distribution's *.cloudfront.net name (the DNS alias target of a custom domain)."""
    url: pulumi.Output[str]
    """https:// URL of the console."""

    def __init__(self, name: str, args: StaticSiteArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:static-site:StaticSite", name, None, opts)
        if problems := _problems(args):
            raise ValueError("; ".join(problems))
        files = site_files(args.content_directory) if args.content_directory is not None else []
        child = pulumi.ResourceOptions(parent=self)
        prefix = args.name_prefix
        headers = args.security_headers or SecurityHeaders.from_file()

        # --- Buckets ---
        logs = private_bucket(
            f"{name}-logs",
            bucket_prefix=f"{prefix}-console-logs-",
            expiration_days=args.log_expiration_days,
            opts=child,
            grants=lambda arn: [_log_delivery_grant(arn, args.account_id)],
        )
        distribution_arn, resolve_distribution_arn = pulumi.deferred_output()
        content = private_bucket(
            f"{name}-content",
            bucket_prefix=f"{prefix}-console-",
            expiration_days=args.log_expiration_days,
            versioned=True,
            keep_current=True,
            opts=child,
            grants=lambda arn: [_cloudfront_read_grant(arn, distribution_arn)],
        )

        # --- CloudFront ---
        access_control = aws.cloudfront.OriginAccessControl(
            f"{name}-oac",
            name=f"{prefix}-console",
            description=f"{prefix} console bucket, SigV4-signed requests only",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child,
        )
        spa_rewrite = self._function(
            f"{name}-spa-routes", f"{prefix}-console-spa-routes", SPA_REWRITE_CODE, "App routes are served index.html"
        )
        headers_policy = self._headers_policy(name, prefix, headers)
        static_cache = aws.cloudfront.CachePolicy(
            f"{name}-static-cache",
            name=f"{prefix}-console-static",
            comment="Honours each object's Cache-Control: hashed assets a year, index.html never",
            min_ttl=0,
            default_ttl=0,
            max_ttl=ONE_YEAR_SECONDS,
            parameters_in_cache_key_and_forwarded_to_origin=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginArgs(
                cookies_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginCookiesConfigArgs(
                    cookie_behavior="none"
                ),
                headers_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginHeadersConfigArgs(
                    header_behavior="none"
                ),
                query_strings_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginQueryStringsConfigArgs(
                    query_string_behavior="none"
                ),
                enable_accept_encoding_brotli=True,
                enable_accept_encoding_gzip=True,
            ),
            opts=child,
        )
        origins = [
            aws.cloudfront.DistributionOriginArgs(
                origin_id=S3_ORIGIN_ID,
                domain_name=content.bucket.bucket_regional_domain_name,
                origin_access_control_id=access_control.id,
            )
        ]
        api_behaviors = []
        if args.api_origin is not None:
            origins.append(_api_origin(args.api_origin))
            strip_prefix = self._function(
                f"{name}-api-prefix",
                f"{prefix}-console-api-prefix",
                STRIP_API_PREFIX_CODE,
                "The API sees its own paths",
            )
            api_behaviors.append(
                aws.cloudfront.DistributionOrderedCacheBehaviorArgs(
                    path_pattern=API_PATH,
                    target_origin_id=API_ORIGIN_ID,
                    viewer_protocol_policy="https-only",
                    allowed_methods=ALL_METHODS,
                    cached_methods=READ_METHODS,
                    cache_policy_id=CACHING_DISABLED_POLICY_ID,
                    origin_request_policy_id=ALL_VIEWER_EXCEPT_HOST_POLICY_ID,
                    response_headers_policy_id=headers_policy.id,
                    # Server-sent events must reach the browser as they are written, not buffered for compression.
                    compress=False,
                    function_associations=[
                        aws.cloudfront.DistributionOrderedCacheBehaviorFunctionAssociationArgs(
                            event_type="viewer-request", function_arn=strip_prefix.arn
                        )
                    ],
                )
            )
        domain = args.custom_domain
        distribution = aws.cloudfront.Distribution(
            f"{name}-cdn",
            comment=f"{prefix} web console",
            enabled=True,
            is_ipv6_enabled=True,
            http_version="http2and3",
            price_class=args.price_class,
            default_root_object="index.html",
            aliases=[domain.domain_name] if domain else None,
            web_acl_id=args.web_acl_arn,
            origins=origins,
            default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                target_origin_id=S3_ORIGIN_ID,
                viewer_protocol_policy="redirect-to-https",
                allowed_methods=READ_METHODS,
                cached_methods=READ_METHODS,
                cache_policy_id=static_cache.id,
                response_headers_policy_id=headers_policy.id,
                compress=True,
                function_associations=[
                    aws.cloudfront.DistributionDefaultCacheBehaviorFunctionAssociationArgs(
                        event_type="viewer-request", function_arn=spa_rewrite.arn
                    )
                ],
            ),
            ordered_cache_behaviors=api_behaviors,
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")
            ),
            viewer_certificate=aws.cloudfront.DistributionViewerCertificateArgs(
                acm_certificate_arn=domain.certificate_arn,
                ssl_support_method="sni-only",
                minimum_protocol_version=MINIMUM_TLS,
            )
            if domain
            else aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True),
            opts=child,
        )
        resolve_distribution_arn(distribution.arn)
        self._access_logs(name, prefix, distribution.arn, logs.bucket.arn)

        # --- Content ---
        for file in files:
            aws.s3.BucketObjectv2(
                f"{name}-file-{file.key}",
                bucket=content.bucket.id,
                key=file.key,
                source=pulumi.FileAsset(str(file.path)),
                content_type=file.content_type,
                cache_control=file.cache_control,
                # The bucket policy must exist before CloudFront's first read.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[content.policy]),
            )

        self.bucket_name = content.bucket.bucket
        self.distribution_id = distribution.id
        self.distribution_domain_name = distribution.domain_name
        self.url = (
            pulumi.Output.from_input(f"https://{domain.domain_name}")
            if domain
            else pulumi.Output.concat("https://", distribution.domain_name)
        )
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "distribution_id": self.distribution_id,
                "url": self.url,
            }
        )

    def _function(self, name: str, function_name: str, code: str, comment: str) -> aws.cloudfront.Function:
        return aws.cloudfront.Function(
            name,
            name=function_name,
            comment=comment,
            runtime="cloudfront-js-2.0",
            code=code,
            publish=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _headers_policy(self, name: str, prefix: str, headers: SecurityHeaders) -> aws.cloudfront.ResponseHeadersPolicy:
        return aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-headers",
            name=f"{prefix}-console-headers",
            comment="CSP, HSTS, no framing, nosniff, referrer policy",
            security_headers_config=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs(
                content_security_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicyArgs(
                    content_security_policy=headers.content_security_policy, override=True
                ),
                strict_transport_security=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurityArgs(
                    access_control_max_age_sec=headers.strict_transport_security_seconds,
                    include_subdomains=True,
                    preload=True,
                    override=True,
                ),
                frame_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigFrameOptionsArgs(
                    frame_option="DENY", override=True
                ),
                content_type_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentTypeOptionsArgs(
                    override=True
                ),
                referrer_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigReferrerPolicyArgs(
                    referrer_policy=headers.referrer_policy, override=True
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _access_logs(
        self, name: str, prefix: str, distribution_arn: pulumi.Output[str], bucket_arn: pulumi.Output[str]
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        source = aws.cloudwatch.LogDeliverySource(
            f"{name}-log-source",
            name=f"{prefix}-console-access",
            log_type="ACCESS_LOGS",
            resource_arn=distribution_arn,
            region=CLOUDFRONT_REGION,
            opts=child,
        )
        destination = aws.cloudwatch.LogDeliveryDestination(
            f"{name}-log-destination",
            name=f"{prefix}-console-access-s3",
            output_format="parquet",
            delivery_destination_configuration=aws.cloudwatch.LogDeliveryDestinationDeliveryDestinationConfigurationArgs(
                destination_resource_arn=bucket_arn
            ),
            region=CLOUDFRONT_REGION,
            opts=child,
        )
        aws.cloudwatch.LogDelivery(
            f"{name}-log-delivery",
            delivery_source_name=source.name,
            delivery_destination_arn=destination.arn,
            region=CLOUDFRONT_REGION,
            opts=child,
        )


def _api_origin(origin: ApiOrigin) -> aws.cloudfront.DistributionOriginArgs:
    return aws.cloudfront.DistributionOriginArgs(
        origin_id=API_ORIGIN_ID,
        domain_name=origin.domain_name,
        custom_origin_config=aws.cloudfront.DistributionOriginCustomOriginConfigArgs(
            http_port=80,
            https_port=443,
            origin_protocol_policy=origin.protocol,
            origin_ssl_protocols=["TLSv1.2"],
            # Longer than the API's 15 s server-sent-event keepalive: an idle stream is not cut.
            origin_read_timeout=30,
            origin_keepalive_timeout=5,
        ),
    )


def _cloudfront_read_grant(bucket_arn: pulumi.Output[str], distribution_arn: pulumi.Output[str]) -> dict[str, Any]:
    return {
        "Sid": "CloudFrontReadsThroughOriginAccessControl",
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": pulumi.Output.concat(bucket_arn, "/*"),
        "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
    }


def _log_delivery_grant(bucket_arn: pulumi.Output[str], account_id: pulumi.Input[str]) -> Mapping[str, Any]:
    """What CloudWatch Logs' vended delivery needs to write CloudFront's logs: PutObject under AWSLogs/<account>/,
    for deliveries of this account only."""
    return {
        "Sid": "CloudFrontAccessLogDelivery",
        "Effect": "Allow",
        "Principal": {"Service": "delivery.logs.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": pulumi.Output.concat(bucket_arn, "/AWSLogs/", account_id, "/*"),
        "Condition": {
            "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": account_id},
            "ArnLike": {
                "aws:SourceArn": pulumi.Output.concat(
                    "arn:aws:logs:", CLOUDFRONT_REGION, ":", account_id, ":delivery-source:*"
                )
            },
        },
    }
