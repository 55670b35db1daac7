"""The ADOT collector sidecar: hardened container, configuration from the environment, least-privilege grant."""

from __future__ import annotations

import re

import pytest
import yaml

from components.registry_cache import PullThroughCache, PullThroughCacheArgs
from components.tracing import (
    ADOT_COLLECTOR_DIGEST,
    ADOT_COLLECTOR_IMAGE,
    COLLECTOR_CONTAINER_NAME,
    PULL_THROUGH_CACHE_PREFIX,
    TracingArgs,
    cache_pull_statements,
    collector_image_through_cache,
    tracing_sidecar,
)
from policy.rules.ecs import is_root_user
from tests.shapes.documented import container_problems
from tests.shapes.validator import validate_request
from tests.support import build, env_map, inputs

ARGS = TracingArgs(name_prefix="shop-dev", service_name="orders", region="eu-west-1")


@pytest.fixture(scope="module")
def sidecar():
    return tracing_sidecar(ARGS)


def config_of(container: dict) -> dict:
    return yaml.safe_load(env_map(container["environment"])["AOT_CONFIG_CONTENT"])


def test_image_is_the_public_adot_collector_pinned_by_digest(sidecar):
    image = sidecar.container["image"]
    assert image == ADOT_COLLECTOR_IMAGE
    assert re.fullmatch(r"public\.ecr\.aws/aws-observability/aws-otel-collector:v[\d.]+@sha256:[0-9a-f]{64}", image)


def test_the_sidecar_is_non_root_read_only_unprivileged_and_not_essential(sidecar):
    container = sidecar.container
    assert not is_root_user(container["user"])
    assert container["readonlyRootFilesystem"] is True
    assert container["mountPoints"] == []
    assert container["privileged"] is False
    assert container["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert container["essential"] is False
    assert container["restartPolicy"]["enabled"] is True
    assert "portMappings" not in container


def test_the_container_definition_is_one_ecs_accepts(sidecar):
    request = {"family": "shop-dev-orders", "containerDefinitions": [sidecar.container]}
    problems, _ = validate_request("ecs", "RegisterTaskDefinition", request)
    assert [str(p) for p in problems] == []
    assert container_problems(sidecar.container) == []


def test_health_check_runs_the_images_own_binary(sidecar):
    assert sidecar.container["healthCheck"]["command"] == ["CMD", "/healthcheck"]
    assert config_of(sidecar.container)["extensions"]["health_check"]["endpoint"] == "127.0.0.1:13133"


def test_collector_receives_otlp_http_on_loopback_only_and_exports_traces_to_xray(sidecar):
    config = config_of(sidecar.container)
    assert config["receivers"] == {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:4318"}}}}
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["exporters"] == ["awsxray"]
    assert pipeline["processors"][0] == "memory_limiter"
    assert config["exporters"]["awsxray"]["region"] == "eu-west-1"
    assert list(config["service"]["pipelines"]) == ["traces"]
    assert "ec2" not in config["processors"]["resourcedetection"]["detectors"]


def test_collector_accepts_w3c_trace_ids(sidecar):
    assert sidecar.container["command"] == ["--feature-gates=exporter.awsxray.skiptimestampvalidation"]


def test_sidecar_logs_to_the_services_log_group(sidecar):
    options = sidecar.container["logConfiguration"]["options"]
    assert (options["awslogs-group"], options["awslogs-stream-prefix"]) == ("/ecs/shop-dev/orders", "otel")


def test_the_app_exports_to_the_sidecar_and_samples_at_the_head(sidecar):
    assert sidecar.app_environment == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "orders",
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop-dev",
        "OTEL_PROPAGATORS": "tracecontext,baggage",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.05",
    }
    assert sidecar.app_depends_on == [{"containerName": COLLECTOR_CONTAINER_NAME, "condition": "START"}]


def test_the_task_role_may_only_put_trace_segments(sidecar):
    (statement,) = sidecar.task_role_statements
    assert statement["Action"] == ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    assert statement["Effect"] == "Allow"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sample_ratio": 1.5}, "sample_ratio: a ratio from 0 to 1, got 1.5"),
        ({"image": "public.ecr.aws/aws-observability/aws-otel-collector:latest"}, "image: pin the collector"),
        ({"memory_reservation_mib": 8}, "memory_reservation_mib: at least 32"),
    ],
)
def test_bad_arguments_are_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TracingArgs(name_prefix="shop-dev", service_name="orders", region="eu-west-1", **overrides)


def test_the_pull_through_cache_image_keeps_the_digest():
    image = collector_image_through_cache("123456789012", "eu-west-1")
    assert image.reference == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecr-public/aws-observability/aws-otel-collector:"
        f"v0.49.0@{ADOT_COLLECTOR_DIGEST}"
    )
    assert image.cache_prefix == PULL_THROUGH_CACHE_PREFIX


def test_the_cache_rule_mirrors_public_ecr_under_the_shared_prefix():
    recorded = build(lambda: PullThroughCache("registry-cache", PullThroughCacheArgs()))
    rule = inputs(recorded.one("aws:ecr/pullThroughCacheRule:PullThroughCacheRule"))
    assert rule == {"ecrRepositoryPrefix": "ecr-public", "upstreamRegistryUrl": "public.ecr.aws"}
    problems, _ = validate_request("ecr", "CreatePullThroughCacheRule", rule)
    assert problems == []


def test_the_execution_role_may_import_only_into_the_cache_prefix():
    statements: list[dict] = []

    def program() -> None:
        for statement in cache_pull_statements("eu-west-1", "123456789012", "ecr-public"):
            statement.apply(statements.append)

    build(program)
    assert statements == [
        {
            "Effect": "Allow",
            "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
            "Resource": ["arn:aws:ecr:eu-west-1:123456789012:repository/ecr-public/*"],
            "Sid": "PullThroughCache",
        }
    ]
