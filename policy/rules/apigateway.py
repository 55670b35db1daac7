"""API Gateway v2 (HTTP and WebSocket APIs): stages, routes and custom domain names."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .base import MEDIUM, Resource, as_number, option, resource_policy, string_list

STAGE = "aws:apigatewayv2/stage:Stage"
ROUTE = "aws:apigatewayv2/route:Route"
DOMAIN_NAME = "aws:apigatewayv2/domainName:DomainName"

# API Gateway v2 custom domains accept TLS_1_0 or TLS_1_2; anything but the 1.0 policy requires TLS 1.2 or later.
INSECURE_SECURITY_POLICIES = {"TLS_1_0"}


def check_access_logging(resource: Resource) -> Iterator[str]:
    settings = resource.props.get("accessLogSettings")
    if not isinstance(settings, Mapping) or not settings.get("destinationArn"):
        yield "accessLogSettings.destinationArn is not set, so requests to the stage are not logged"
    elif not str(settings.get("format") or "").strip():
        yield "accessLogSettings.format is empty, so the access log records nothing"


def check_throttling(resource: Resource) -> Iterator[str]:
    settings = resource.props.get("defaultRouteSettings")
    settings = settings if isinstance(settings, Mapping) else {}
    missing = [k for k in ("throttlingBurstLimit", "throttlingRateLimit") if as_number(settings.get(k)) is None]
    if missing:
        yield (
            f"defaultRouteSettings does not set {' and '.join(missing)}, so the stage accepts whatever the account's "
            "regional quota allows (10,000 requests per second)"
        )


def check_route_authorization(resource: Resource) -> Iterator[str]:
    route_key = str(resource.props.get("routeKey") or resource.name)
    kind = str(resource.props.get("authorizationType") or "NONE").upper()
    if kind == "NONE" and route_key not in [str(r) for r in resource.config.get("publicRouteKeys", [])]:
        yield f"route '{route_key}' has authorizationType NONE, so anyone can call it"


def check_domain_tls(resource: Resource) -> Iterator[str]:
    configuration = resource.props.get("domainNameConfiguration")
    policy = configuration.get("securityPolicy") if isinstance(configuration, Mapping) else None
    if not policy:
        yield "domainNameConfiguration.securityPolicy is not set; set TLS_1_2"
    elif str(policy).upper() in INSECURE_SECURITY_POLICIES:
        yield f"domainNameConfiguration.securityPolicy is {policy}, which accepts TLS 1.0 and 1.1; set TLS_1_2"


POLICIES = [
    resource_policy(
        name="aws-apigateway-stage-enable-access-logging",
        description="API Gateway v2 stages should write access logs.",
        resource_types=[STAGE],
        check=check_access_logging,
        severity=MEDIUM,
        fsbp="APIGateway.9",
        remediation="Set `accessLogSettings` with a `destinationArn` (a CloudWatch log group with retention and a KMS "
        "key) and a JSON `format` of `$context` variables.",
    ),
    resource_policy(
        name="aws-apigateway-stage-configure-throttling",
        description="API Gateway v2 stages should set a default throttling burst and rate limit.",
        resource_types=[STAGE],
        check=check_throttling,
        severity=MEDIUM,
        remediation="Set `defaultRouteSettings.throttlingBurstLimit` and `throttlingRateLimit` to what the backend "
        "can take, and `routeSettings` for routes that need other limits.",
    ),
    resource_policy(
        name="aws-apigateway-route-require-authorization",
        description="API Gateway v2 routes should require authorization unless they are public on purpose.",
        resource_types=[ROUTE],
        check=check_route_authorization,
        severity=MEDIUM,
        fsbp="APIGateway.8",
        config=option(
            {
                "publicRouteKeys": string_list(
                    "Route keys (e.g. `GET /products/{proxy+}`) that are public on purpose and may use NONE.", []
                )
            }
        ),
        remediation="Set `authorizationType` (JWT, AWS_IAM or CUSTOM) and `authorizerId`, or list the route key in "
        "`publicRouteKeys`.",
    ),
    resource_policy(
        name="aws-apigateway-domainname-require-tls-1-2",
        description="API Gateway v2 custom domain names should require TLS 1.2 or later.",
        resource_types=[DOMAIN_NAME],
        check=check_domain_tls,
        severity=MEDIUM,
        remediation="Set `domainNameConfiguration.securityPolicy: TLS_1_2`.",
    ),
]
