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
    prod = parse_stack_config({"environment": "prod", "certificateArn": CERT})
    dev = parse_stack_config({"environment": "dev"})
    assert prod.deletionProtection
    assert not dev.deletionProtection
    assert prod.logRetentionDays > dev.logRetentionDays
    assert prod.service.spotWeight == 0
    assert prod.database.multiAz
    assert not dev.database.multiAz
    assert prod.cache.automaticFailover
    assert (prod.database.backupRetentionDays, dev.database.backupRetentionDays) == (30, 7)
    assert (prod.cache.snapshotRetentionDays, dev.cache.snapshotRetentionDays) == (7, 1)
    assert (prod.storage.performanceMode, prod.storage.throughputMode) == ("generalPurpose", "elastic")


def test_every_profile_is_itself_valid():
    for environment in PROFILES:
        parse_stack_config({"environment": environment, "certificateArn": CERT})


def test_redis_failover_needs_two_nodes():
    (message,) = problems({"environment": "dev", "cache": {"automaticFailover": True}})
    assert message.startswith("cache.automaticFailover: true with cache.numCacheClusters 1; allowed: failover needs 2")


def test_database_instance_class_family_is_checked():
    (message,) = problems({"environment": "dev", "database": {"instanceClass": "db.x9.huge"}})
    assert message.startswith(
        "database.instanceClass: 'db.x9.huge'; allowed: db.<family>.<size>, family one of t3, t4g"
    )


def test_provisioned_throughput_needs_its_value_and_only_then():
    (message,) = problems({"environment": "dev", "storage": {"throughputMode": "provisioned"}})
    assert message.startswith("storage.provisionedThroughputMibps: missing")
    (message,) = problems({"environment": "dev", "storage": {"provisionedThroughputMibps": 50}})
    assert message.startswith("storage.provisionedThroughputMibps: 50 with throughputMode 'elastic'")


def test_job_platform_needs_its_data_stores_and_matching_architecture():
    found = problems({"environment": "dev", "cache": {"enabled": False}, "service": {"cpuArchitecture": "ARM64"}})
    assert "cache.enabled: false with jobPlatform.enabled true; allowed: true (the job platform uses it)" in found
    assert any(p.startswith("images.platform: 'linux/amd64' with service.cpuArchitecture 'ARM64'") for p in found)


def test_without_the_job_platform_the_service_needs_its_own_image():
    (message,) = problems({"environment": "dev", "jobPlatform": {"enabled": False}})
    assert message.startswith("service.image: missing with jobPlatform.enabled false")


def test_worker_size_is_checked_like_the_service():
    (message,) = problems({"environment": "dev", "jobPlatform": {"worker": {"cpu": 256, "memory": 4096}}})
    assert message.startswith("jobPlatform.worker.memory: 4096 is not a Fargate size for jobPlatform.worker.cpu 256")


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
    assert message == "network.cidrBlock: '10.0.0.0/33'; allowed: an IPv4 CIDR /16 to /22 (/21 or larger with 3 AZs)"
    (message,) = problems({"environment": "dev", "network": {"cidrBlock": "10.0.0.0/22"}})
    assert message.startswith("network.cidrBlock: '10.0.0.0/22' with network.maxAzs 3; allowed: /21 or larger")
    assert parse_stack_config({"environment": "dev", "network": {"cidrBlock": "10.0.0.0/22", "maxAzs": 2}})
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
        "network: 'big' is not an object; allowed: an object with keys cidrBlock, maxAzs, natGateways, egress, natInstanceType, natInstanceSsm, flowLogRetentionDays"
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
    assert problems({"environment": "dev", "service": {"image": "docker.io/library/nginx@sha256:" + "a" * 64}})
    pinned = "123456789012.dkr.ecr.us-east-1.amazonaws.com/api@sha256:" + "a" * 64
    assert parse_stack_config({"environment": "dev", "service": {"image": pinned}}).service.image == pinned


def test_prod_refuses_a_single_nat_gateway():
    (message,) = problems({"environment": "prod", "certificateArn": CERT, "network": {"natGateways": "single"}})
    assert message.startswith("network.natGateways: 'single' in prod; allowed in prod: onePerAz")


def test_the_shared_stack_key_is_opt_in_and_refused_in_prod():
    assert parse_stack_config({"environment": "dev"}).kms.sharedKey is False
    assert parse_stack_config({"environment": "staging", "kms": {"sharedKey": True}}).kms.sharedKey is True
    (message,) = problems({"environment": "prod", "certificateArn": CERT, "kms": {"sharedKey": True}})
    assert message.startswith("kms.sharedKey: true in prod; allowed in prod: false")
    (message,) = problems({"environment": "dev", "kms": {"sharedKey": "yes please"}})
    assert message.startswith("kms.sharedKey: 'yes please'")


def test_office_hours_are_opt_in_validated_and_refused_in_prod():
    assert parse_stack_config({"environment": "dev"}).schedule.officeHours is None
    hours = parse_stack_config(
        {"environment": "staging", "schedule": {"officeHours": {"timezone": "America/New_York", "days": "MON-THU,SAT"}}}
    ).schedule.officeHours
    assert hours is not None and (hours.start, hours.stop, hours.weekdays) == ("08:00", "20:00", (0, 1, 2, 3, 5))
    (message,) = problems(
        {"environment": "prod", "certificateArn": CERT, "schedule": {"officeHours": {"timezone": "UTC"}}}
    )
    assert message.startswith("schedule.officeHours: set in prod; allowed in prod: none")
    bad = {"timezone": "Mars/Olympus", "start": "8:00", "stop": "24:00", "days": "FRI-MON", "lunch": "12:00"}
    assert problems({"environment": "dev", "schedule": {"officeHours": bad}}) == [
        "schedule.officeHours.timezone: 'Mars/Olympus'; allowed: an IANA time zone such as Europe/Berlin or America/New_York",
        "schedule.officeHours.start: '8:00'; allowed: a 24-hour time HH:MM, 00:00-23:59",
        "schedule.officeHours.stop: '24:00'; allowed: a 24-hour time HH:MM, 00:00-23:59",
        "schedule.officeHours.days: 'FRI-MON'; allowed: days as MON..SUN, ranges from an earlier to a later day and "
        "commas, e.g. MON-FRI or MON-THU,SAT",
        "schedule.officeHours.lunch: unknown key; allowed keys here: timezone, start, stop, days",
    ]
    (message,) = problems(
        {"environment": "dev", "schedule": {"officeHours": {"timezone": "UTC", "start": "20:00", "stop": "08:00"}}}
    )
    assert message.startswith("schedule.officeHours.stop: '08:00' is not later than start '20:00'")


def test_prod_requires_a_certificate():
    (message,) = problems({"environment": "prod"})
    assert message.startswith("certificateArn: missing in prod")


def test_region_belongs_to_the_aws_namespace():
    (message,) = problems({"environment": "dev", "region": "eu-west-1"})
    assert message == "region: 'eu-west-1' in the project namespace; allowed: set `aws:region` instead"


def test_application_name_fits_aws_name_limits():
    assert problems({"environment": "dev", "applicationName": "a-very-long-name"})
    assert problems({"environment": "dev", "applicationName": "double--hyphen"})
    assert parse_stack_config({"environment": "staging", "applicationName": "fifteen-chars-x"}).name_prefix == (
        "fifteen-chars-x-staging"
    )


def test_worker_scaling_needs_container_insights():
    (message,) = problems({"environment": "dev", "containerInsights": "disabled"})
    assert message.startswith("containerInsights: 'disabled' with jobPlatform.enabled true")


# --- Deployments ---


@pytest.mark.parametrize(
    ("environment", "strategy", "bake", "alarms"),
    [("dev", "rolling", 0, False), ("staging", "blueGreen", 5, True), ("prod", "blueGreen", 15, True)],
)
def test_deployments_are_rolling_in_dev_and_blue_green_with_a_bake_time_in_prod(environment, strategy, bake, alarms):
    deployment = parse_stack_config({"environment": environment, "certificateArn": CERT}).deployment
    assert (deployment.strategy, deployment.bakeTimeMinutes, deployment.rollbackAlarms) == (strategy, bake, alarms)


def test_a_service_overrides_only_the_deployment_keys_it_sets():
    from components.config import service_deployment, worker_deployment

    config = parse_stack_config(
        {
            "environment": "prod",
            "certificateArn": CERT,
            "deployment": {"strategy": "linear", "smokeTests": [{"path": "/ready"}]},
            "service": {"deployment": {"strategy": "canary", "canaryPercent": 5}},
        }
    )
    api = service_deployment(config, config.service.deployment)
    assert (api.strategy, api.canaryPercent, api.bakeTimeMinutes) == ("canary", 5, 15)
    assert [(t.path, t.status) for t in api.smokeTests] == [("/ready", 200)]
    # The worker has no traffic to shift in steps: the stack's linear becomes blue/green for it.
    assert worker_deployment(config).strategy == "blueGreen"


def test_deployment_values_outside_what_ecs_accepts_are_refused():
    found = problems(
        {"environment": "dev", "deployment": {"strategy": "gradual", "bakeTimeMinutes": 2000, "canaryPercent": 0}}
    )
    assert found == [
        "deployment.strategy: 'gradual'; allowed: rolling, blueGreen, canary, linear",
        "deployment.bakeTimeMinutes: 2000; allowed: 0-1440 minutes",
        "deployment.canaryPercent: 0; allowed: 0.1-100",
    ]


def test_strategies_a_service_cannot_shift_traffic_for_are_refused_with_the_reason():
    found = problems(
        {
            "environment": "dev",
            "jobPlatform": {"worker": {"deployment": {"strategy": "canary"}}},
            "services": {
                "orders": {"build": "services/shop/orders", "port": 8080, "routes": ["GET /orders"],
                           "deployment": {"strategy": "blueGreen"}},
                "mailer": {"build": "services/shop/notifications", "deployment": {"strategy": "linear"}},
                "payments": {"build": "services/shop/payments", "port": 8080, "internalLoadBalancer": True,
                             "deployment": {"strategy": "canary"}},
            },
        }
    )  # fmt: skip
    assert [p.split(";")[0] for p in found if "deployment" in p] == [
        "jobPlatform.worker.deployment.strategy: 'canary'",
        "services.orders.deployment.strategy: 'blueGreen' with ALB routes",
        "services.mailer.deployment.strategy: 'linear' without a port",
        "services.payments.deployment.strategy: 'canary' behind the internal ALB",
    ]
    assert "allowed: rolling or blueGreen (the worker has no load balancer or Service Connect" in found[0]


def test_a_strategy_the_http_api_cannot_shift_traffic_for_is_refused():
    found = problems(
        {
            "environment": "dev",
            "entry": "httpApi",
            "services": {"orders": {"build": "services/shop/orders", "port": 8080, "routes": ["GET /orders"],
                                    "deployment": {"strategy": "canary"}}},
        }
    )  # fmt: skip
    assert [p for p in found if "deployment" in p] == [
        "services.orders.deployment.strategy: 'canary' with HTTP API routes; allowed: rolling (the HTTP API reaches "
        "tasks through Cloud Map SRV records: no traffic to shift)"
    ]


def test_rollback_alarms_need_container_insights():
    found = problems(
        {
            "environment": "dev",
            "jobPlatform": {"enabled": False},
            "containerInsights": "disabled",
            "services": {"orders": {"build": "services/shop/orders", "port": 8080,
                                    "deployment": {"rollbackAlarms": True}}},
        }
    )  # fmt: skip
    assert [p.split(";")[0] for p in found if "rollbackAlarms" in p] == [
        "services.orders.deployment.rollbackAlarms: true with containerInsights 'disabled'"
    ]
