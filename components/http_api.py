"""HttpApi: the external entry of the microservices, an API Gateway HTTP API with a VPC link into the VPC.

- One HTTP_PROXY integration per service, through a VPC link into the private subnets, to the service's Cloud Map
  service (SRV records carry each task's port): no load balancer, public or internal, is needed. The seed pointed a
  REST API VPC link at an ALB, which AWS refuses (REST VPC links need an NLB); HTTP API VPC links reach Cloud Map.
- The VPC link has its own security group whose only egress is each target's port, to the target's security group
  (SG-to-SG) or else to the VPC's CIDR; the callee side adds the matching ingress from `vpc_link_security_group_id`.
- Routes from config (`METHOD /path`), a `$default` stage that deploys itself, throttling for the stage and per
  route, JSON access logs in a KMS-encrypted log group with retention.
- Optionally a custom domain (regional, TLS 1.2 security policy, the default execute-api endpoint switched off so
  the domain is the only way in) and a JWT authorizer on every route not listed as public.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.aws_limits import HTTP_API_BURST_QUOTA, HTTP_API_RATE_QUOTA, LOG_RETENTION_DAYS

HTTP_METHODS = ("ANY", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# A path segment: literal characters, a `{parameter}` or, as the last segment only, a greedy `{parameter+}`.
LITERAL_SEGMENT = re.compile(r"^[A-Za-z0-9._~\-]+$")
PARAMETER_SEGMENT = re.compile(r"^\{[A-Za-z0-9._\-]+\}$")
GREEDY_SEGMENT = re.compile(r"^\{[A-Za-z0-9._\-]+\+\}$")
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DOMAIN_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
ACM_CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:(?P<region>[a-z0-9-]+):\d{12}:certificate/[0-9a-f-]+$")
TLS_SECURITY_POLICY = "TLS_1_2"
# HTTP_PROXY integrations pass the request through unchanged; only payload format 1.0 is accepted for them.
PROXY_PAYLOAD_FORMAT = "1.0"
JWT_IDENTITY_SOURCE = "$request.header.Authorization"
# Account-level defaults of API Gateway (requests per second and burst per account and region): a stage or route
# asking for more is capped there, so such a value is a mistake.
ACCOUNT_RATE_LIMIT = HTTP_API_RATE_QUOTA
ACCOUNT_BURST_LIMIT = HTTP_API_BURST_QUOTA
# What an access log line records: who, what, how it ended and how long each part took. Never the JWT claims
# (personal data) and never request or response bodies.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "domainName": "$context.domainName",
    "httpMethod": "$context.httpMethod",
    "path": "$context.path",
    "routeKey": "$context.routeKey",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integration.error",
    "authorizerError": "$context.authorizer.error",
    "errorMessage": "$context.error.message",
}


@dataclass(frozen=True)
class HttpApiTarget:
    service: str
    """Service name (lowercase letters, digits, '-'); names its integration."""
    discovery_service_arn: pulumi.Input[str]
    """ARN of the service's Cloud Map service, with SRV records (they carry each task's port)."""
    port: int
    """Container port the tasks listen on; the VPC link may reach exactly this port."""
    routes: Sequence[str]
    """Route keys sent to this service, `METHOD /path` (e.g. `GET /products/{proxy+}`, `ANY /orders`)."""
    security_group_id: pulumi.Input[str] | None = None
    """The tasks' security group: the VPC link's egress then goes to it only (SG-to-SG). Default: none, egress to
    `HttpApiArgs.vpc_cidr` on `port`."""


@dataclass(frozen=True)
class HttpApiDomain:
    domain_name: str
    """Custom domain, e.g. `api.example.com`."""
    certificate_arn: str
    """ACM certificate for the domain, in the API's region."""


@dataclass(frozen=True)
class JwtAuthorizer:
    issuer: str
    """Token issuer URL (`https://...`), e.g. a Cognito user pool's."""
    audiences: Sequence[str]
    """Accepted `aud` values (at least one)."""


@dataclass(frozen=True)
class HttpApiArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    region: str
    """Region of the API (the custom domain's certificate must be there)."""
    account_id: pulumi.Input[str]
    """Account of the API."""
    vpc_id: pulumi.Input[str]
    """VPC of the VPC link's security group."""
    subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets the VPC link's network interfaces are placed in."""
    targets: Sequence[HttpApiTarget]
    """The services the API sends requests to (at least one)."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key of the access log group."""
    log_retention_days: int = 30
    """Access log retention, a CloudWatch Logs retention value. Default: 30."""
    throttling_burst_limit: int = 100
    """Stage-wide burst limit (requests). Default: 100."""
    throttling_rate_limit: float = 50.0
    """Stage-wide steady rate limit (requests per second). Default: 50."""
    route_throttling: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    """Route key -> (burst, rate) for routes that need their own limits. Default: none (stage limits apply)."""
    custom_domain: HttpApiDomain | None = None
    """Custom domain (TLS 1.2 minimum); the default execute-api endpoint is then disabled. Default: none."""
    jwt_authorizer: JwtAuthorizer | None = None
    """JWT authorizer required on every route not in `public_routes`. Default: none (routes are unauthenticated)."""
    public_routes: Sequence[str] = ()
    """Routes that stay unauthenticated when a JWT authorizer is set. Default: none."""
    vpc_cidr: str | None = None
    """The VPC's CIDR, the VPC link's egress destination for targets without `security_group_id`. Default: none
    (every target must name its security group)."""


def parse_route_key(route_key: str) -> list[str]:
    """The problems of a route key (empty when valid): `METHOD /path`, path segments literal or `{param}`, a greedy
    `{param+}` only last."""
    method, _, path = route_key.partition(" ")
    if method not in HTTP_METHODS or not path:
        return [f"{route_key!r} must be 'METHOD /path' with METHOD one of {', '.join(HTTP_METHODS)}"]
    if not path.startswith("/"):
        return [f"{route_key!r}: the path must start with '/'"]
    if path == "/":
        return []
    segments = path[1:].split("/")
    problems = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if GREEDY_SEGMENT.match(segment) and not last:
            problems.append(f"{route_key!r}: the greedy segment {segment} must be the last one")
        elif not (LITERAL_SEGMENT.match(segment) or PARAMETER_SEGMENT.match(segment) or GREEDY_SEGMENT.match(segment)):
            problems.append(
                f"{route_key!r}: segment {segment!r} must be literal (letters, digits, . _ ~ -), {{name}} or, last, "
                "{name+}"
            )
    return problems


def _target_problems(args: HttpApiArgs) -> list[str]:
    problems: list[str] = []
    if not args.targets:
        problems.append("targets: at least one target service is required")
    seen_services: set[str] = set()
    owner_of_route: dict[str, str] = {}
    for target in args.targets:
        where = f"targets[{target.service!r}]"
        if not SERVICE_NAME.match(target.service):
            problems.append(f"{where}.service: must be lowercase letters, digits and '-', starting with a letter")
        if target.service in seen_services:
            problems.append(f"{where}: the service is listed twice; allowed: one target per service")
        seen_services.add(target.service)
        if not 1 <= target.port <= 65535:
            problems.append(f"{where}.port: {target.port}; allowed: 1 to 65535")
        if not target.routes:
            problems.append(f"{where}.routes: at least one route is required")
        if target.security_group_id is None and args.vpc_cidr is None:
            problems.append(f"{where}.security_group_id: not set and vpc_cidr is not set either; allowed: one of them")
        for route in target.routes:
            problems += [f"{where}.routes: {p}" for p in parse_route_key(route)]
            if route in owner_of_route:
                problems.append(
                    f"{where}.routes: route {route!r} is already sent to {owner_of_route[route]!r}; allowed: each "
                    "route once"
                )
            owner_of_route.setdefault(route, target.service)
    return problems


def _throttling_problems(args: HttpApiArgs, routes: set[str]) -> list[str]:
    problems = [
        *_limit_problems("throttling_burst_limit/throttling_rate_limit", args.throttling_burst_limit,
                         args.throttling_rate_limit),
    ]  # fmt: skip
    for route, limits in args.route_throttling.items():
        if route not in routes:
            problems.append(f"route_throttling[{route!r}]: not a route of any target; allowed: {sorted(routes)}")
        burst, rate = limits
        problems += _limit_problems(f"route_throttling[{route!r}]", burst, rate)
    return problems


def _limit_problems(where: str, burst: int, rate: float) -> list[str]:
    if not 1 <= burst <= ACCOUNT_BURST_LIMIT or not 0 < rate <= ACCOUNT_RATE_LIMIT:
        return [
            f"{where}: burst {burst}, rate {rate}; allowed: burst 1 to {ACCOUNT_BURST_LIMIT}, rate above 0 up to "
            f"{ACCOUNT_RATE_LIMIT} requests per second (the account's default quota)"
        ]
    return []


def _entry_problems(args: HttpApiArgs, routes: set[str]) -> list[str]:
    problems = []
    for route in args.public_routes:
        if route not in routes:
            problems.append(f"public_routes: {route!r} is not a route of any target; allowed: {sorted(routes)}")
    if args.public_routes and args.jwt_authorizer is None:
        problems.append("public_routes: set without jwt_authorizer; every route is public without an authorizer")
    if args.jwt_authorizer is not None:
        if not args.jwt_authorizer.issuer.startswith("https://"):
            problems.append(f"jwt_authorizer.issuer: {args.jwt_authorizer.issuer!r}; allowed: an https:// URL")
        if not args.jwt_authorizer.audiences:
            problems.append("jwt_authorizer.audiences: at least one audience is required")
    domain = args.custom_domain
    if domain is not None:
        if not DOMAIN_NAME.match(domain.domain_name):
            problems.append(f"custom_domain.domain_name: {domain.domain_name!r}; allowed: a lowercase DNS name")
        match = ACM_CERTIFICATE_ARN.match(domain.certificate_arn)
        if match is None:
            problems.append(
                f"custom_domain.certificate_arn: {domain.certificate_arn!r}; allowed: an ACM certificate ARN"
            )
        elif match.group("region") != args.region:
            problems.append(
                f"custom_domain.certificate_arn: in {match.group('region')}; allowed: a certificate in {args.region} "
                "(a regional custom domain uses a certificate of its own region)"
            )
    return problems


def _validate(args: HttpApiArgs) -> None:
    routes = {route for target in args.targets for route in target.routes}
    problems = _target_problems(args) + _throttling_problems(args, routes) + _entry_problems(args, routes)
    if args.log_retention_days not in LOG_RETENTION_DAYS:
        problems.append(f"log_retention_days: {args.log_retention_days} is not a CloudWatch Logs retention value")
    if args.vpc_cidr is not None:
        try:
            ipaddress.IPv4Network(args.vpc_cidr)
        except ValueError:
            problems.append(f"vpc_cidr: {args.vpc_cidr!r}; allowed: an IPv4 CIDR such as 10.0.0.0/16")
    if problems:
        raise ValueError("invalid HttpApi arguments:\n" + "\n".join(f"  - {p}" for p in problems))


def access_log_format() -> str:
    """One JSON object per request (CloudWatch Logs Insights reads its fields directly)."""
    return json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))


def _resource_suffix(route_key: str) -> str:
    """A readable logical name piece for a route, stable and unique whatever other routes exist
    (`GET /a/{id}` -> `get-a-id-<8 hex>`; the hash keeps `GET /a-b` and `GET /a/b` apart)."""
    readable = re.sub(r"[^a-z0-9]+", "-", route_key.lower()).strip("-")
    return f"{readable}-{hashlib.sha256(route_key.encode()).hexdigest()[:8]}"


class HttpApi(pulumi.ComponentResource):
    """An HTTP API in front of services discovered through Cloud Map, reached privately over a VPC link."""

    api_id: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    stage_arn: pulumi.Output[str]
    vpc_link_security_group_id: pulumi.Output[str]
    access_log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: HttpApiArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _validate(args)
        super().__init__("container-platform:http-api:HttpApi", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        prefix = f"{args.name_prefix}-api"
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-access-logs",
            name=f"/aws/apigateway/{prefix}",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=self._child,
        )
        self.security_group = self._vpc_link_security_group(name, prefix, args)
        self.vpc_link = aws.apigatewayv2.VpcLink(
            f"{name}-vpc-link",
            name=prefix,
            subnet_ids=args.subnet_ids,
            security_group_ids=[self.security_group.id],
            opts=self._child,
        )
        self.api = aws.apigatewayv2.Api(
            f"{name}-api",
            name=prefix,
            protocol_type="HTTP",
            description=f"{args.name_prefix}: external entry to the services",
            disable_execute_api_endpoint=args.custom_domain is not None,
            opts=self._child,
        )
        self.authorizer = self._authorizer(name, args)
        self.routes = self._routes(name, args)
        self.stage = self._stage(name, args)
        self.endpoint = self._custom_domain(name, args)
        self.api_id = self.api.id
        self.stage_arn = self.stage.arn
        self.vpc_link_security_group_id = self.security_group.id
        self.access_log_group_name = self.log_group.name
        self.register_outputs(
            {
                "api_id": self.api_id,
                "endpoint": self.endpoint,
                "stage_arn": self.stage_arn,
                "vpc_link_security_group_id": self.vpc_link_security_group_id,
                "access_log_group_name": self.access_log_group_name,
            }
        )

    def _vpc_link_security_group(self, name: str, prefix: str, args: HttpApiArgs) -> aws.ec2.SecurityGroup:
        group = aws.ec2.SecurityGroup(
            f"{name}-vpc-link-sg",
            vpc_id=args.vpc_id,
            description=f"{prefix} VPC link: egress only to the target service ports, no ingress",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        for target in args.targets:
            sg_to_sg = target.security_group_id is not None
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-vpc-link-to-{target.service}",
                security_group_id=group.id,
                description=f"API Gateway VPC link to {target.service} on {target.port}",
                ip_protocol="tcp",
                from_port=target.port,
                to_port=target.port,
                referenced_security_group_id=target.security_group_id,
                cidr_ipv4=None if sg_to_sg else args.vpc_cidr,
                opts=self._child,
            )
        return group

    def _authorizer(self, name: str, args: HttpApiArgs) -> aws.apigatewayv2.Authorizer | None:
        if args.jwt_authorizer is None:
            return None
        return aws.apigatewayv2.Authorizer(
            f"{name}-jwt",
            api_id=self.api.id,
            name=f"{args.name_prefix}-jwt",
            authorizer_type="JWT",
            identity_sources=[JWT_IDENTITY_SOURCE],
            jwt_configuration=aws.apigatewayv2.AuthorizerJwtConfigurationArgs(
                issuer=args.jwt_authorizer.issuer, audiences=list(args.jwt_authorizer.audiences)
            ),
            opts=self._child,
        )

    def _routes(self, name: str, args: HttpApiArgs) -> list[aws.apigatewayv2.Route]:
        routes = []
        for target in args.targets:
            integration = aws.apigatewayv2.Integration(
                f"{name}-{target.service}-integration",
                api_id=self.api.id,
                description=f"{target.service} through the VPC link (Cloud Map)",
                integration_type="HTTP_PROXY",
                integration_method="ANY",
                connection_type="VPC_LINK",
                connection_id=self.vpc_link.id,
                integration_uri=target.discovery_service_arn,
                payload_format_version=PROXY_PAYLOAD_FORMAT,
                opts=self._child,
            )
            for route_key in target.routes:
                protected = self.authorizer is not None and route_key not in args.public_routes
                routes.append(
                    aws.apigatewayv2.Route(
                        f"{name}-route-{_resource_suffix(route_key)}",
                        api_id=self.api.id,
                        route_key=route_key,
                        target=integration.id.apply(lambda id_: f"integrations/{id_}"),
                        authorization_type="JWT" if protected else "NONE",
                        authorizer_id=self.authorizer.id if protected and self.authorizer else None,
                        opts=self._child,
                    )
                )
        return routes

    def _stage(self, name: str, args: HttpApiArgs) -> aws.apigatewayv2.Stage:
        route_settings = [
            aws.apigatewayv2.StageRouteSettingArgs(
                route_key=route_key, throttling_burst_limit=burst, throttling_rate_limit=rate
            )
            for route_key, (burst, rate) in sorted(args.route_throttling.items())
        ]
        return aws.apigatewayv2.Stage(
            f"{name}-stage",
            api_id=self.api.id,
            name="$default",
            auto_deploy=True,
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=self.log_group.arn, format=access_log_format()
            ),
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_burst_limit=args.throttling_burst_limit,
                throttling_rate_limit=args.throttling_rate_limit,
            ),
            route_settings=route_settings or None,
            # Route settings name routes by key: AWS refuses them before the routes exist.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.routes)),
        )

    def _custom_domain(self, name: str, args: HttpApiArgs) -> pulumi.Output[str]:
        if args.custom_domain is None:
            return self.api.api_endpoint
        domain = aws.apigatewayv2.DomainName(
            f"{name}-domain",
            domain_name=args.custom_domain.domain_name,
            domain_name_configuration=aws.apigatewayv2.DomainNameDomainNameConfigurationArgs(
                certificate_arn=args.custom_domain.certificate_arn,
                endpoint_type="REGIONAL",
                security_policy=TLS_SECURITY_POLICY,
            ),
            opts=self._child,
        )
        aws.apigatewayv2.ApiMapping(
            f"{name}-domain-mapping",
            api_id=self.api.id,
            domain_name=domain.id,
            stage=self.stage.id,
            opts=self._child,
        )
        self.domain = domain
        return pulumi.Output.from_input(f"https://{args.custom_domain.domain_name}")
