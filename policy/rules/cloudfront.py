"""CloudFront distributions: viewer HTTPS, TLS policy, origin access control, origin encryption, access logs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource

from .base import (
    HIGH,
    MANDATORY,
    MEDIUM,
    Resource,
    Stack,
    StackFinding,
    as_list,
    per_item,
    resource_policy,
    stack_policy,
)
from .stack import Links, referenced_values

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
LOG_DELIVERY_SOURCE = "aws:cloudwatch/logDeliverySource:LogDeliverySource"
LOG_DELIVERY = "aws:cloudwatch/logDelivery:LogDelivery"

SECURE_VIEWER_POLICIES = {"redirect-to-https", "https-only"}
# CloudFront's viewer security policies that refuse TLS 1.0 and 1.1 and weak ciphers (TLSv1.2_2018/2019 still
# offer CBC suites); the default *.cloudfront.net certificate is fixed at TLSv1 by AWS.
STRONG_TLS_POLICIES = {"TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025"}
WEAK_ORIGIN_PROTOCOLS = {"SSLv3", "TLSv1", "TLSv1.1"}


def _behaviors(props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    default = props.get("defaultCacheBehavior")
    if isinstance(default, Mapping):
        yield "defaultCacheBehavior", default
    for behavior in as_list(props.get("orderedCacheBehaviors")):
        if isinstance(behavior, Mapping):
            yield f"orderedCacheBehaviors[{behavior.get('pathPattern')}]", behavior


def _origins(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield from (o for o in as_list(props.get("origins")) if isinstance(o, Mapping))


def _is_s3_origin(origin: Mapping[str, Any]) -> bool:
    domain = str(origin.get("domainName") or "")
    return bool(origin.get("s3OriginConfig")) or (".s3." in domain or domain.endswith(".s3.amazonaws.com"))


def check_viewer_https(resource: Resource) -> Iterator[str]:
    for where, behavior in _behaviors(resource.props):
        policy = behavior.get("viewerProtocolPolicy")
        if policy not in SECURE_VIEWER_POLICIES:
            yield f"{where}.viewerProtocolPolicy is {policy}, so viewers can use plain HTTP; set redirect-to-https"


def check_viewer_tls(resource: Resource) -> Iterator[str]:
    certificate = resource.props.get("viewerCertificate")
    certificate = certificate if isinstance(certificate, Mapping) else {}
    if not (certificate.get("acmCertificateArn") or certificate.get("iamCertificateId")):
        return  # the default certificate: see aws-cloudfront-distribution-use-custom-certificate
    version = certificate.get("minimumProtocolVersion")
    if version not in STRONG_TLS_POLICIES:
        yield (
            f"viewerCertificate.minimumProtocolVersion is {version}, which accepts older TLS or weak ciphers; "
            "set TLSv1.2_2021 or later"
        )


def check_custom_certificate(resource: Resource) -> Iterator[str]:
    certificate = resource.props.get("viewerCertificate")
    if isinstance(certificate, Mapping) and certificate.get("cloudfrontDefaultCertificate"):
        yield (
            "viewerCertificate uses the default *.cloudfront.net certificate, whose security policy AWS fixes at "
            "TLSv1 (TLS 1.0 accepted)"
        )


def check_origin_access_control(resource: Resource) -> Iterator[str]:
    for origin in _origins(resource.props):
        if not _is_s3_origin(origin):
            continue
        label = origin.get("originId")
        s3_config = origin.get("s3OriginConfig")
        if isinstance(s3_config, Mapping) and s3_config.get("originAccessIdentity"):
            yield f"origin '{label}' uses a legacy origin access identity; use an origin access control (SigV4)"
        elif not origin.get("originAccessControlId"):
            yield f"S3 origin '{label}' has no originAccessControlId, so the bucket must be readable without one"


def check_no_website_origin(resource: Resource) -> Iterator[str]:
    for origin in _origins(resource.props):
        domain = str(origin.get("domainName") or "")
        if ".s3-website" in domain:
            yield (
                f"origin '{origin.get('originId')}' is an S3 website endpoint ({domain}), which serves only a public "
                "bucket; use the bucket's REST endpoint with an origin access control"
            )


def check_origin_encryption(resource: Resource) -> Iterator[str]:
    for origin in _origins(resource.props):
        custom = origin.get("customOriginConfig")
        if not isinstance(custom, Mapping):
            continue
        label = origin.get("originId")
        if custom.get("originProtocolPolicy") != "https-only":
            yield (
                f"origin '{label}' has originProtocolPolicy {custom.get('originProtocolPolicy')}, so CloudFront "
                "may reach it over plain HTTP"
            )
        weak = sorted(WEAK_ORIGIN_PROTOCOLS & {str(p) for p in as_list(custom.get("originSslProtocols"))})
        if weak:
            yield f"origin '{label}' allows {', '.join(weak)} to the origin; allow TLSv1.2 only"


def check_access_logging(stack: Stack) -> Iterator[StackFinding]:
    sources = [s for s in stack.of_type(LOG_DELIVERY_SOURCE) if s.props.get("logType") == "ACCESS_LOGS"]
    delivered, _ = referenced_values(stack.of_type(LOG_DELIVERY), "deliverySourceName")
    delivered_sources = [s for s in sources if str(s.props.get("name")) in delivered]
    links = Links(stack.of_type(DISTRIBUTION), ("arn",), referenced_values(delivered_sources, "resourceArn"))

    def check(distribution: PolicyResource) -> Iterator[StackFinding]:
        legacy = distribution.props.get("loggingConfig")
        if isinstance(legacy, Mapping) and legacy.get("bucket"):
            return
        if not links.is_referenced(distribution):
            yield (
                f"distribution '{distribution.name}' has no access logs: neither loggingConfig nor a delivered "
                "ACCESS_LOGS log delivery source",
                distribution.urn,
            )

    yield from per_item(stack.of_type(DISTRIBUTION), check)


POLICIES = [
    resource_policy(
        name="aws-cloudfront-distribution-require-https",
        description="CloudFront distributions must serve viewers over HTTPS only.",
        resource_types=[DISTRIBUTION],
        check=check_viewer_https,
        severity=HIGH,
        level=MANDATORY,
        fsbp="CloudFront.3",
        remediation="Set `viewerProtocolPolicy: redirect-to-https` (or `https-only`) on the default and every "
        "ordered cache behaviour.",
    ),
    resource_policy(
        name="aws-cloudfront-distribution-require-tls-1-2-2021",
        description="CloudFront distributions with a custom certificate must use TLSv1.2_2021 or a newer policy.",
        resource_types=[DISTRIBUTION],
        check=check_viewer_tls,
        severity=HIGH,
        level=MANDATORY,
        remediation="Set `viewerCertificate.minimumProtocolVersion: TLSv1.2_2021` with `sslSupportMethod: sni-only`.",
    ),
    resource_policy(
        name="aws-cloudfront-distribution-use-custom-certificate",
        description="CloudFront distributions should use a custom certificate, so TLS 1.0 and 1.1 can be refused.",
        resource_types=[DISTRIBUTION],
        check=check_custom_certificate,
        severity=MEDIUM,
        fsbp="CloudFront.7",
        remediation="Serve a custom domain with an ACM certificate in us-east-1 (`viewerCertificate.acmCertificateArn`) "
        "and TLSv1.2_2021.",
    ),
    resource_policy(
        name="aws-cloudfront-distribution-use-origin-access-control",
        description="CloudFront S3 origins must use an origin access control, not a legacy OAI or a public bucket.",
        resource_types=[DISTRIBUTION],
        check=check_origin_access_control,
        severity=HIGH,
        level=MANDATORY,
        fsbp="CloudFront.13",
        remediation="Create an `aws.cloudfront.OriginAccessControl` (s3, sigv4, always), set the origin's "
        "`originAccessControlId`, and grant `cloudfront.amazonaws.com` s3:GetObject with `AWS:SourceArn` of the "
        "distribution in the bucket policy.",
    ),
    resource_policy(
        name="aws-cloudfront-distribution-disallow-s3-website-origins",
        description="CloudFront origins must not be S3 website endpoints, which only serve public buckets.",
        resource_types=[DISTRIBUTION],
        check=check_no_website_origin,
        severity=HIGH,
        level=MANDATORY,
        remediation="Point the origin at the bucket's REST endpoint (`bucketRegionalDomainName`) with an origin "
        "access control, and route app paths to index.html with a CloudFront function.",
    ),
    resource_policy(
        name="aws-cloudfront-distribution-encrypt-origin-traffic",
        description="CloudFront should reach custom origins over TLS 1.2 only.",
        resource_types=[DISTRIBUTION],
        check=check_origin_encryption,
        severity=MEDIUM,
        fsbp="CloudFront.9",
        remediation="Give the origin a certificate for the name CloudFront calls it by and set "
        "`customOriginConfig.originProtocolPolicy: https-only` with `originSslProtocols: [TLSv1.2]`.",
    ),
    stack_policy(
        name="aws-cloudfront-distribution-enable-access-logging",
        resource_types=[DISTRIBUTION],
        description="CloudFront distributions should deliver access logs.",
        check=check_access_logging,
        severity=MEDIUM,
        fsbp="CloudFront.5",
        remediation="Add a `LogDeliverySource` (ACCESS_LOGS, the distribution's ARN, region us-east-1), a "
        "`LogDeliveryDestination` and a `LogDelivery` joining them, or set `loggingConfig`.",
    ),
]
