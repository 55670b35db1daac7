"""Stack config: the sizing table, overrides, and one clear message per invalid key."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import PROFILES, ConfigError, parse_stack_config

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    return caught.value.problems


@pytest.mark.parametrize(
    ("environment", "cpu", "memory", "desired", "minimum", "maximum", "nat"),
    [
        ("dev", 512, 1024, 1, 1, 3, "single"),
        ("staging", 1024, 2048, 2, 1, 5, "single"),
        ("prod", 2048, 4096, 3, 2, 10, "onePerAz"),
    ],
)
def test_each_environment_gets_the_seed_sizing(environment, cpu, memory, desired, minimum, maximum, nat):
    config = parse_stack_config({"environment": environment, "certificateArn": CERT})
    service = config.service
    assert (service.cpu, service.memory, service.desiredCount, service.maxCount) == (cpu, memory, desired, maximum)
    from components.config import min_count

    assert min_count(service) == minimum
    assert config.network.natGateways == nat
    assert config.network.maxAzs == 3


def test_prod_profile_is_the_strict_one():
    prod, dev = PROFILES["prod"], PROFILES["dev"]
    assert prod.deletion_protection and not dev.deletion_protection
    assert prod.log_retention_days > dev.log_retention_days
    assert prod.spot_weight == 0


def test_stack_values_override_the_profile_and_keep_the_rest():
    config = parse_stack_config(
        {"environment": "dev", "service": {"cpu": 1024, "memory": 3072, "maxCount": 6}, "logRetentionDays": 14}
    )
    assert (config.service.cpu, config.service.memory, config.service.maxCount) == (1024, 3072, 6)
    assert config.service.desiredCount == 1
    assert config.logRetentionDays == 14
    assert config.network.flowLogRetentionDays == 30


def test_region_comes_from_aws_config():
    assert parse_stack_config({"environment": "dev"}, region="eu-west-1").region == "eu-west-1"


def test_unknown_environment_names_the_allowed_ones():
    assert problems({"environment": "qa"}) == ["environment: 'qa'; allowed: dev, staging, prod"]
    assert problems({}) == ["environment: missing; allowed: dev, staging, prod"]


def test_cpu_memory_must_be_a_fargate_size():
    (message,) = problems({"environment": "dev", "service": {"cpu": 512, "memory": 8192}})
    assert message.startswith("service.memory: 8192 is not a Fargate size for service.cpu 512")
    assert "1024-4096" in message
    (message,) = problems({"environment": "dev", "service": {"cpu": 300}})
    assert message.startswith("service.cpu: 300; allowed: one of [256, 512")


def test_bad_cidr_is_rejected():
    (message,) = problems({"environment": "dev", "network": {"cidrBlock": "10.0.0.0/33"}})
    assert message == "network.cidrBlock: '10.0.0.0/33'; allowed: an IPv4 CIDR /16 to /24"
    assert problems({"environment": "dev", "network": {"cidrBlock": "10.0.0.1/16"}})


def test_negative_counts_and_min_over_max():
    assert "service.desiredCount: -1; allowed: 0 or more" in problems(
        {"environment": "dev", "service": {"desiredCount": -1}}
    )
    found = problems({"environment": "dev", "service": {"minCount": 4, "maxCount": 3}})
    assert any(p.startswith("service.minCount: 4 is greater than service.maxCount 3") for p in found)


def test_malformed_email_and_certificate_arn():
    found = problems({"environment": "dev", "alertEmail": "ops-at-example", "certificateArn": "arn:aws:iam::1:cert/x"})
    assert "alertEmail: 'ops-at-example'; allowed: an email address like ops@example.com" in found
    assert any(p.startswith("certificateArn: 'arn:aws:iam::1:cert/x'; allowed: an ACM certificate ARN") for p in found)
    assert parse_stack_config({"environment": "dev", "certificateArn": CERT}).certificateArn == CERT


def test_unknown_keys_are_named_with_the_allowed_ones():
    found = problems({"environment": "dev", "servce": {}, "service": {"cpus": 1}})
    assert any(p.startswith("servce: unknown key; allowed keys here: environment, applicationName") for p in found)
    assert any(p.startswith("service.cpus: unknown key; allowed keys here: cpu, memory") for p in found)


def test_wrong_types_say_what_was_expected():
    found = problems({"environment": "dev", "service": {"cpu": "lots", "enableExecuteCommand": "yes"}})
    assert any(p.startswith("service.cpu: 'lots' is not a whole number") for p in found)
    assert any(p.startswith("service.enableExecuteCommand: 'yes' is not true or false") for p in found)
    assert problems({"environment": "dev", "network": "big"}) == [
        "network: 'big' is not an object; allowed: an object with keys cidrBlock, maxAzs, natGateways, flowLogRetentionDays"
    ]


def test_every_problem_is_reported_at_once():
    found = problems(
        {"environment": "dev", "applicationName": "Bad_Name", "logRetentionDays": 10, "containerInsights": "on"}
    )
    assert len(found) == 3


def test_images_must_be_pinned():
    assert problems({"environment": "dev", "service": {"image": "nginx:latest"}})
    assert problems({"environment": "dev", "service": {"image": "nginx"}})
    assert problems({"environment": "dev", "service": {"image": "repo@sha256:abc"}})
    pinned = "123456789012.dkr.ecr.us-east-1.amazonaws.com/api@sha256:" + "a" * 64
    assert parse_stack_config({"environment": "dev", "service": {"image": pinned}}).service.image == pinned


def test_prod_refuses_a_single_nat_gateway():
    (message,) = problems({"environment": "prod", "certificateArn": CERT, "network": {"natGateways": "single"}})
    assert message.startswith("network.natGateways: 'single' in prod; allowed in prod: onePerAz")


def test_prod_requires_a_certificate():
    (message,) = problems({"environment": "prod"})
    assert message.startswith("certificateArn: missing in prod")


def test_region_belongs_to_the_aws_namespace():
    (message,) = problems({"environment": "dev", "region": "eu-west-1"})
    assert message == "region: 'eu-west-1' in the project namespace; allowed: set `aws:region` instead"
