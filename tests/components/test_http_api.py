"""HttpApi: VPC link into private subnets, one Cloud Map integration per service, routes, throttling, access
logs, custom domain and JWT authorizer; every request it makes is one the API Gateway v2 API accepts."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from components.http_api import (
    ACCESS_LOG_FIELDS,
    HttpApi,
    HttpApiArgs,
    HttpApiDomain,
    HttpApiTarget,
    JwtAuthorizer,
    parse_route_key,
)
from runner.plan import Plan
from tests.shapes.check import check_plan
from tests.support import Recorded, build, inputs

KEY = "arn:aws:kms:us-east-1:123456789012:key/logs"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"
PRODUCTS = "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-products"
ORDERS = "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-orders"

API = "aws:apigatewayv2/api:Api"
VPC_LINK = "aws:apigatewayv2/vpcLink:VpcLink"
INTEGRATION = "aws:apigatewayv2/integration:Integration"
ROUTE = "aws:apigatewayv2/route:Route"
STAGE = "aws:apigatewayv2/stage:Stage"
DOMAIN = "aws:apigatewayv2/domainName:DomainName"
MAPPING = "aws:apigatewayv2/apiMapping:ApiMapping"
AUTHORIZER = "aws:apigatewayv2/authorizer:Authorizer"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


def targets() -> list[HttpApiTarget]:
    return [
        HttpApiTarget(
            service="products",
            discovery_service_arn=PRODUCTS,
            port=8080,
            routes=["GET /products", "GET /products/{proxy+}"],
            security_group_id="sg-products",
        ),
        HttpApiTarget(service="orders", discovery_service_arn=ORDERS, port=8081, routes=["ANY /orders/{proxy+}"]),
    ]


def api_args(**overrides: Any) -> HttpApiArgs:
    values: dict[str, Any] = {
        "name_prefix": "shop-dev",
        "region": "us-east-1",
        "account_id": "123456789012",
        "vpc_id": "vpc-1",
        "subnet_ids": ["subnet-private-a", "subnet-private-b"],
        "targets": targets(),
        "log_kms_key_arn": KEY,
        "vpc_cidr": "10.0.0.0/16",
    }
    values.update(overrides)
    return HttpApiArgs(**values)


def build_api(**overrides: Any) -> Recorded:
    return build(lambda: HttpApi("entry", api_args(**overrides)))


@pytest.fixture(scope="module")
def plain() -> Recorded:
    return build_api(route_throttling={"GET /products/{proxy+}": (20, 10.0)})


@pytest.fixture(scope="module")
def full() -> Recorded:
    return build_api(
        custom_domain=HttpApiDomain("api.shop.example.com", CERT),
        jwt_authorizer=JwtAuthorizer("https://issuer.example.com/pool", ["shop-web"]),
        public_routes=["GET /products", "GET /products/{proxy+}"],
    )


def test_the_api_is_http_and_every_child_is_under_the_component(plain):
    api = inputs(plain.one(API))
    assert api["protocolType"] == "HTTP"
    assert api["disableExecuteApiEndpoint"] is False
    component = next(r for r in plain.resources if r.type == "container-platform:http-api:HttpApi")
    assert all(r.parent == component.urn for r in plain.resources if r is not component)


def test_the_vpc_link_sits_in_the_private_subnets_with_its_own_group(plain):
    link = inputs(plain.one(VPC_LINK))
    assert link["subnetIds"] == ["subnet-private-a", "subnet-private-b"]
    group = plain.one("aws:ec2/securityGroup:SecurityGroup")
    assert link["securityGroupIds"] == [f"{group.name}-id"]


def test_the_vpc_link_may_reach_only_the_target_ports_sg_to_sg_where_known(plain):
    rules = sorted((inputs(r) for r in plain.of_type(EGRESS)), key=lambda r: r["fromPort"])
    assert [(r["fromPort"], r["toPort"], r["ipProtocol"]) for r in rules] == [(8080, 8080, "tcp"), (8081, 8081, "tcp")]
    assert rules[0]["referencedSecurityGroupId"] == "sg-products" and "cidrIpv4" not in rules[0]
    assert rules[1]["cidrIpv4"] == "10.0.0.0/16" and "referencedSecurityGroupId" not in rules[1]
    assert plain.of_type(INGRESS) == []  # nothing may connect to the VPC link's interfaces


def test_one_private_cloud_map_integration_per_service(plain):
    integrations = {inputs(r)["integrationUri"]: inputs(r) for r in plain.of_type(INTEGRATION)}
    assert set(integrations) == {PRODUCTS, ORDERS}
    link = plain.one(VPC_LINK)
    for integration in integrations.values():
        assert integration["integrationType"] == "HTTP_PROXY"
        assert integration["connectionType"] == "VPC_LINK"
        assert integration["connectionId"] == f"{link.name}-id"
        assert integration["integrationMethod"] == "ANY"
        assert integration["payloadFormatVersion"] == "1.0"


def test_each_route_targets_its_service_integration(plain):
    by_uri = {inputs(r)["integrationUri"]: r.name for r in plain.of_type(INTEGRATION)}
    routes = {inputs(r)["routeKey"]: inputs(r) for r in plain.of_type(ROUTE)}
    assert routes["GET /products"]["target"] == f"integrations/{by_uri[PRODUCTS]}-id"
    assert routes["GET /products/{proxy+}"]["target"] == f"integrations/{by_uri[PRODUCTS]}-id"
    assert routes["ANY /orders/{proxy+}"]["target"] == f"integrations/{by_uri[ORDERS]}-id"
    assert {r["authorizationType"] for r in routes.values()} == {"NONE"}


def test_the_default_stage_deploys_itself_throttles_and_logs_json_to_the_kms_group(plain):
    stage = plain.one(STAGE)
    values = inputs(stage)
    assert values["name"] == "$default" and values["autoDeploy"] is True
    assert values["defaultRouteSettings"] == {"throttlingBurstLimit": 100, "throttlingRateLimit": 50.0}
    assert values["routeSettings"] == [
        {"routeKey": "GET /products/{proxy+}", "throttlingBurstLimit": 20, "throttlingRateLimit": 10.0}
    ]
    group = inputs(plain.one("aws:cloudwatch/logGroup:LogGroup"))
    assert group["kmsKeyId"] == KEY and group["retentionInDays"] == 30
    assert values["accessLogSettings"]["destinationArn"].endswith(group["name"])
    assert json.loads(values["accessLogSettings"]["format"]) == ACCESS_LOG_FIELDS
    assert not any("claims" in v for v in ACCESS_LOG_FIELDS.values())
    # Route settings name routes by key: the stage waits for every route.
    route_urns = {r.urn for r in plain.of_type(ROUTE)}
    assert route_urns <= set(stage.dependencies)


def test_without_a_domain_there_is_no_domain_and_no_authorizer(plain):
    assert plain.of_type(DOMAIN) == [] and plain.of_type(AUTHORIZER) == []


def test_a_custom_domain_uses_tls_1_2_and_is_the_only_way_in(full):
    domain = inputs(full.one(DOMAIN))
    assert domain["domainName"] == "api.shop.example.com"
    assert domain["domainNameConfiguration"] == {
        "certificateArn": CERT,
        "endpointType": "REGIONAL",
        "securityPolicy": "TLS_1_2",
    }
    assert inputs(full.one(API))["disableExecuteApiEndpoint"] is True
    mapping = inputs(full.one(MAPPING))
    assert mapping["domainName"] == f"{full.one(DOMAIN).name}-id"
    assert mapping["stage"] == f"{full.one(STAGE).name}-id"


def test_the_endpoint_is_the_custom_domain():
    captured: dict[str, Any] = {}

    def program() -> None:
        api = HttpApi("entry", api_args(custom_domain=HttpApiDomain("api.shop.example.com", CERT)))
        api.endpoint.apply(lambda value: captured.setdefault("endpoint", value))

    build(program)
    assert captured["endpoint"] == "https://api.shop.example.com"


def test_the_jwt_authorizer_protects_every_route_but_the_public_ones(full):
    authorizer = full.one(AUTHORIZER)
    values = inputs(authorizer)
    assert values["authorizerType"] == "JWT"
    assert values["identitySources"] == ["$request.header.Authorization"]
    assert values["jwtConfiguration"] == {"issuer": "https://issuer.example.com/pool", "audiences": ["shop-web"]}
    routes = {inputs(r)["routeKey"]: inputs(r) for r in full.of_type(ROUTE)}
    assert routes["ANY /orders/{proxy+}"]["authorizationType"] == "JWT"
    assert routes["ANY /orders/{proxy+}"]["authorizerId"] == f"{authorizer.name}-id"
    for public in ("GET /products", "GET /products/{proxy+}"):
        assert routes[public]["authorizationType"] == "NONE" and "authorizerId" not in routes[public]


@pytest.mark.parametrize("fixture", ["plain", "full"])
def test_every_request_is_one_the_api_gateway_v2_api_accepts(fixture, request):
    recorded: Recorded = request.getfixturevalue(fixture)
    plan = Plan(project="test", stack="test", resources=recorded.resources)
    problems = [f"{r.label}: {p}" for r in check_plan(plan) for p in r.problems]
    assert problems == []


# --- Validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ("GET /products", None),
        ("ANY /orders/{proxy+}", None),
        ("GET /", None),
        ("DELETE /carts/{id}/items/{item}", None),
        ("FETCH /x", "must be 'METHOD /path'"),
        ("get /x", "must be 'METHOD /path'"),
        ("GET products", "the path must start with '/'"),
        ("GET /{proxy+}/more", "the greedy segment {proxy+} must be the last one"),
        ("GET /a b", "segment"),
        ("GET /products/*", "segment '*' must be literal"),
        ("GET /a//b", "segment '' must be literal"),
    ],
)
def test_route_keys(route, problem):
    problems = parse_route_key(route)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]


def _problems(**overrides: Any) -> str:
    with pytest.raises(ValueError, match="invalid HttpApi arguments") as raised:
        build_api(**overrides)
    return str(raised.value)


def test_a_route_sent_to_two_services_is_refused_naming_the_route():
    twice = [*targets(), HttpApiTarget("carts", ORDERS, 8082, ["GET /products"], "sg-carts")]
    message = _problems(targets=twice)
    assert "targets['carts'].routes: route 'GET /products' is already sent to 'products'" in message


def test_every_problem_is_listed_at_once():
    bad_target = HttpApiTarget("Bad_Name", ORDERS, 0, [], None)
    message = _problems(
        targets=[bad_target],
        vpc_cidr=None,
        log_retention_days=10,
        throttling_burst_limit=0,
        route_throttling={"GET /nowhere": (10, 5.0)},
        public_routes=["GET /nowhere"],
        custom_domain=HttpApiDomain("API.example.com", "arn:aws:acm:eu-west-1:123456789012:certificate/abc-1"),
    )
    for expected in (
        "targets['Bad_Name'].service: must be lowercase letters",
        "targets['Bad_Name'].port: 0; allowed: 1 to 65535",
        "targets['Bad_Name'].routes: at least one route is required",
        "targets['Bad_Name'].security_group_id: not set and vpc_cidr is not set either",
        "log_retention_days: 10 is not a CloudWatch Logs retention value",
        "throttling_burst_limit/throttling_rate_limit: burst 0, rate 50.0; allowed: burst 1 to 5000",
        "route_throttling['GET /nowhere']: not a route of any target",
        "public_routes: 'GET /nowhere' is not a route of any target",
        "public_routes: set without jwt_authorizer",
        "custom_domain.domain_name: 'API.example.com'; allowed: a lowercase DNS name",
        "custom_domain.certificate_arn: in eu-west-1; allowed: a certificate in us-east-1",
    ):
        assert expected in message, expected


def test_the_jwt_authorizer_needs_an_https_issuer_and_an_audience():
    message = _problems(jwt_authorizer=JwtAuthorizer("http://issuer", []))
    assert "jwt_authorizer.issuer: 'http://issuer'; allowed: an https:// URL" in message
    assert "jwt_authorizer.audiences: at least one audience is required" in message


def test_a_service_listed_twice_and_a_bad_cidr_are_refused():
    first = targets()[0]
    message = _problems(targets=[first, replace(first, routes=["GET /other"])], vpc_cidr="10.0.0.0/33")
    assert "targets['products']: the service is listed twice" in message
    assert "vpc_cidr: '10.0.0.0/33'; allowed: an IPv4 CIDR" in message


def test_route_names_are_stable_and_never_collide():
    def route_names(routes: list[str]) -> dict[str, str]:
        recorded = build_api(targets=[HttpApiTarget("products", PRODUCTS, 8080, routes, "sg-products")])
        return {inputs(r)["routeKey"]: r.name for r in recorded.of_type(ROUTE)}

    names = route_names(["GET /a-b", "GET /a/b"])
    assert len(set(names.values())) == 2
    assert route_names(["GET /a/b", "GET /a-b"]) == names  # a route's name does not depend on the others
