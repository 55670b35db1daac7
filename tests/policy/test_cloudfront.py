"""CloudFront rules: the StaticSite's distribution passes, each gap fails with its message (viewer HTTPS, TLS
policy, OAC, website origins, origin encryption, access logs)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.policy import baselines as b
from tests.policy.helpers import run_policy, run_stack_policy

DISTRIBUTION = b.DISTRIBUTION
SOURCE = "aws:cloudwatch/logDeliverySource:LogDeliverySource"
DELIVERY = "aws:cloudwatch/logDelivery:LogDelivery"
ARN = b.DISTRIBUTION_ARN

HTTPS = "aws-cloudfront-distribution-require-https"
TLS = "aws-cloudfront-distribution-require-tls-1-2-2021"
CUSTOM_CERT = "aws-cloudfront-distribution-use-custom-certificate"
OAC = "aws-cloudfront-distribution-use-origin-access-control"
WEBSITE = "aws-cloudfront-distribution-disallow-s3-website-origins"
ORIGIN_TLS = "aws-cloudfront-distribution-encrypt-origin-traffic"
LOGGING = "aws-cloudfront-distribution-enable-access-logging"

BASELINE: dict[str, Any] = b.BASELINES[DISTRIBUTION]


def changed(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    props = copy.deepcopy(BASELINE)
    target: Any = props
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return props


def messages(policy: str, props: dict[str, Any]) -> list[str]:
    outcome = run_policy(policy, DISTRIBUTION, props)
    assert outcome.unknown is None
    return outcome.messages


@pytest.mark.parametrize("policy", [HTTPS, TLS, CUSTOM_CERT, OAC, WEBSITE, ORIGIN_TLS])
def test_the_static_site_distribution_passes(policy: str) -> None:
    assert messages(policy, BASELINE) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("defaultCacheBehavior", "viewerProtocolPolicy"),
            "allow-all",
            "defaultCacheBehavior.viewerProtocolPolicy is allow-all, so viewers can use plain HTTP; set redirect-to-https",
        ),
        (
            ("orderedCacheBehaviors", 0, "viewerProtocolPolicy"),
            "allow-all",
            "orderedCacheBehaviors[/api/*].viewerProtocolPolicy is allow-all, so viewers can use plain HTTP; set "
            "redirect-to-https",
        ),
    ],
)
def test_plain_http_viewers_fail(path: tuple[str | int, ...], value: str, message: str) -> None:
    assert messages(HTTPS, changed(path, value)) == [message]


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1_2016", "TLSv1.2_2018", "TLSv1.2_2019", None])
def test_a_custom_certificate_with_an_older_policy_fails(version: str | None) -> None:
    [message] = messages(TLS, changed(("viewerCertificate", "minimumProtocolVersion"), version))
    assert message.startswith(f"viewerCertificate.minimumProtocolVersion is {version},")


def test_the_default_certificate_is_advisory_not_a_tls_violation() -> None:
    props = changed(("viewerCertificate",), {"cloudfrontDefaultCertificate": True})
    assert messages(TLS, props) == []
    assert messages(CUSTOM_CERT, props) == [
        "viewerCertificate uses the default *.cloudfront.net certificate, whose security policy AWS fixes at TLSv1 "
        "(TLS 1.0 accepted)"
    ]


def test_s3_origins_need_an_origin_access_control_not_an_oai() -> None:
    without = changed(("origins", 0, "originAccessControlId"), None)
    assert messages(OAC, without) == [
        "S3 origin 'site' has no originAccessControlId, so the bucket must be readable without one"
    ]
    legacy = changed(("origins", 0, "s3OriginConfig"), {"originAccessIdentity": "origin-access-identity/cloudfront/E1"})
    legacy["origins"][0].pop("originAccessControlId")
    assert messages(OAC, legacy) == [
        "origin 'site' uses a legacy origin access identity; use an origin access control (SigV4)"
    ]


def test_a_website_endpoint_origin_means_a_public_bucket() -> None:
    props = changed(("origins", 0, "domainName"), "jobs-console.s3-website-us-east-1.amazonaws.com")
    [message] = messages(WEBSITE, props)
    assert "S3 website endpoint" in message and "public" in message


def test_plaintext_or_old_tls_to_a_custom_origin_is_flagged() -> None:
    props = changed(("origins", 1, "customOriginConfig", "originProtocolPolicy"), "http-only")
    props["origins"][1]["customOriginConfig"]["originSslProtocols"] = ["TLSv1", "TLSv1.2"]
    assert messages(ORIGIN_TLS, props) == [
        "origin 'api' has originProtocolPolicy http-only, so CloudFront may reach it over plain HTTP",
        "origin 'api' allows TLSv1 to the origin; allow TLSv1.2 only",
    ]


def _stack(*extra: tuple[str, str, dict[str, Any]], distribution: dict[str, Any] | None = None) -> list[Any]:
    return [(DISTRIBUTION, "cdn", {**BASELINE, **(distribution or {})}), *extra]


def test_access_logs_through_a_delivered_v2_source_pass() -> None:
    assert run_stack_policy(LOGGING, _stack(*b.distribution_access_logs())).messages == []
    assert (
        run_stack_policy(LOGGING, _stack(distribution={"loggingConfig": {"bucket": "logs.s3.amazonaws.com"}})).messages
        == []
    )


@pytest.mark.parametrize(
    "extra",
    [
        (),  # nothing
        ((SOURCE, "src", {"name": "console-access", "logType": "ACCESS_LOGS", "resourceArn": ARN}),),  # never delivered
        (
            (SOURCE, "src", {"name": "other", "logType": "ACCESS_LOGS", "resourceArn": ARN + "X"}),
            (DELIVERY, "delivery", {"deliverySourceName": "other", "deliveryDestinationArn": "arn:d"}),
        ),  # another distribution's
    ],
)
def test_a_distribution_without_delivered_access_logs_fails(extra: tuple[Any, ...]) -> None:
    outcome = run_stack_policy(LOGGING, _stack(*extra))
    assert outcome.messages == [
        "distribution 'cdn' has no access logs: neither loggingConfig nor a delivered ACCESS_LOGS log delivery source"
    ]
