"""API Gateway v2 rules and the Service Connect logging rule: a compliant resource passes, each gap fails with
its message, and the knobs and AWS's value sets are read as documented."""

from __future__ import annotations

from typing import Any

import pytest

from tests.policy import baselines as b
from tests.policy.baselines import with_props
from tests.policy.helpers import run_policy

ACCESS_LOGGING = "aws-apigateway-stage-enable-access-logging"
THROTTLING = "aws-apigateway-stage-configure-throttling"
AUTHORIZATION = "aws-apigateway-route-require-authorization"
DOMAIN_TLS = "aws-apigateway-domainname-require-tls-1-2"
SERVICE_CONNECT_LOGS = "aws-ecs-service-enable-service-connect-logging"


def messages(policy: str, type_: str, props: dict[str, Any], config: dict[str, Any] | None = None) -> list[str]:
    outcome = run_policy(policy, type_, props, config)
    assert outcome.unknown is None
    return outcome.messages


@pytest.mark.parametrize(
    ("policy", "type_"),
    [
        (ACCESS_LOGGING, b.API_STAGE),
        (THROTTLING, b.API_STAGE),
        (AUTHORIZATION, b.API_ROUTE),
        (DOMAIN_TLS, b.API_DOMAIN_NAME),
        (SERVICE_CONNECT_LOGS, b.SERVICE),
    ],
)
def test_the_compliant_baseline_passes(policy: str, type_: str) -> None:
    assert messages(policy, type_, b.BASELINES[type_]) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (None, "accessLogSettings.destinationArn is not set, so requests to the stage are not logged"),
        ({"format": "{}"}, "accessLogSettings.destinationArn is not set, so requests to the stage are not logged"),
        (
            {"destinationArn": "arn:aws:logs:us-east-1:1:log-group:api", "format": " "},
            "accessLogSettings.format is empty, so the access log records nothing",
        ),
    ],
)
def test_a_stage_without_access_logs_fails(settings: Any, message: str) -> None:
    assert messages(ACCESS_LOGGING, b.API_STAGE, with_props(b.API_STAGE, accessLogSettings=settings)) == [message]


@pytest.mark.parametrize(
    ("route_settings", "missing"),
    [
        (None, "throttlingBurstLimit and throttlingRateLimit"),
        ({"throttlingBurstLimit": 100}, "throttlingRateLimit"),
        ({"throttlingRateLimit": 50.0, "detailedMetricsEnabled": True}, "throttlingBurstLimit"),
    ],
)
def test_a_stage_without_throttling_fails(route_settings: Any, missing: str) -> None:
    props = with_props(b.API_STAGE, defaultRouteSettings=route_settings)
    assert messages(THROTTLING, b.API_STAGE, props) == [
        f"defaultRouteSettings does not set {missing}, so the stage accepts whatever the account's regional quota "
        "allows (10,000 requests per second)"
    ]


def test_a_stage_throttled_to_zero_is_a_choice_not_a_gap() -> None:
    # 0/0 rejects every request: deliberate (a switched-off stage), so the limits are set.
    props = with_props(b.API_STAGE, defaultRouteSettings={"throttlingBurstLimit": 0, "throttlingRateLimit": 0})
    assert messages(THROTTLING, b.API_STAGE, props) == []


@pytest.mark.parametrize("kind", [None, "NONE", "none"])
def test_a_route_without_authorization_fails(kind: str | None) -> None:
    props = with_props(b.API_ROUTE, authorizationType=kind, authorizerId=None)
    assert messages(AUTHORIZATION, b.API_ROUTE, props) == [
        "route 'ANY /orders/{proxy+}' has authorizationType NONE, so anyone can call it"
    ]


@pytest.mark.parametrize("kind", ["JWT", "AWS_IAM", "CUSTOM"])
def test_every_authorization_type_passes(kind: str) -> None:
    assert messages(AUTHORIZATION, b.API_ROUTE, with_props(b.API_ROUTE, authorizationType=kind)) == []


def test_routes_public_on_purpose_are_listed_in_the_knob() -> None:
    public = {"routeKey": "GET /products/{proxy+}", "authorizationType": "NONE"}
    assert len(messages(AUTHORIZATION, b.API_ROUTE, public)) == 1
    assert messages(AUTHORIZATION, b.API_ROUTE, public, {"publicRouteKeys": ["GET /products/{proxy+}"]}) == []
    # The knob names exact route keys: another method on the same path still needs authorization.
    other = {**public, "routeKey": "DELETE /products/{proxy+}"}
    assert len(messages(AUTHORIZATION, b.API_ROUTE, other, {"publicRouteKeys": ["GET /products/{proxy+}"]})) == 1


@pytest.mark.parametrize(
    ("configuration", "message"),
    [
        (
            {"certificateArn": "arn:aws:acm:us-east-1:1:certificate/c", "endpointType": "REGIONAL",
             "securityPolicy": "TLS_1_0"},
            "domainNameConfiguration.securityPolicy is TLS_1_0, which accepts TLS 1.0 and 1.1; set TLS_1_2",
        ),
        (
            {"certificateArn": "arn:aws:acm:us-east-1:1:certificate/c", "endpointType": "REGIONAL"},
            "domainNameConfiguration.securityPolicy is not set; set TLS_1_2",
        ),
        (None, "domainNameConfiguration.securityPolicy is not set; set TLS_1_2"),
    ],
)  # fmt: skip
def test_a_custom_domain_accepting_tls_1_0_fails(configuration: Any, message: str) -> None:
    props = with_props(b.API_DOMAIN_NAME, domainNameConfiguration=configuration)
    assert messages(DOMAIN_TLS, b.API_DOMAIN_NAME, props) == [message]


def service_connect(**overrides: Any) -> dict[str, Any]:
    configuration: dict[str, Any] = {
        "enabled": True,
        "namespace": "arn:aws:servicediscovery:us-east-1:1:namespace/ns-1",
        "services": [{"portName": "http", "clientAlias": [{"port": 8080, "dnsName": "orders"}]}],
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/shop-dev/orders"}},
    }
    configuration.update(overrides)
    return with_props(b.SERVICE, serviceConnectConfiguration={k: v for k, v in configuration.items() if v is not None})


@pytest.mark.parametrize("log_configuration", [None, {"options": {"awslogs-group": "/ecs/x"}}])
def test_service_connect_without_logs_fails(log_configuration: Any) -> None:
    props = service_connect(logConfiguration=log_configuration)
    assert messages(SERVICE_CONNECT_LOGS, b.SERVICE, props) == [
        "serviceConnectConfiguration has no logConfiguration.logDriver, so the Service Connect proxy's logs are lost"
    ]


def test_service_connect_with_logs_passes_and_without_service_connect_nothing_applies() -> None:
    assert messages(SERVICE_CONNECT_LOGS, b.SERVICE, service_connect()) == []
    assert messages(SERVICE_CONNECT_LOGS, b.SERVICE, service_connect(enabled=False, logConfiguration=None)) == []
    assert messages(SERVICE_CONNECT_LOGS, b.SERVICE, b.BASELINES[b.SERVICE]) == []


def test_awsx_services_are_read_the_same_way() -> None:
    props = {
        **service_connect(logConfiguration=None),
        "networkConfiguration": b.BASELINES[b.SERVICE]["networkConfiguration"],
    }
    assert len(messages(SERVICE_CONNECT_LOGS, b.AWSX_FARGATE_SERVICE, props)) == 1
