"""Cache: a Valkey replication group with TLS, AUTH from Secrets Manager, KMS at rest, alarms per node."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from components.cache import Cache, CacheArgs
from tests.components.test_storage import (
    ACCOUNT,
    LOG_KEY,
    MOCK_TOKEN,
    RANDOM_PASSWORD,
    TOPIC,
    mock_random_password,
    retained_names,
)
from tests.support import Recorded, build, inputs, json_input


def cache_args(env: str = "dev", **overrides) -> CacheArgs:
    values = {
        "name_prefix": f"jobs-{env}",
        "vpc_id": "vpc-1",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "account_id": ACCOUNT,
        "region": "us-east-1",
        "topic_arn": TOPIC,
        "log_kms_key_arn": LOG_KEY,
    }
    if env == "dev":
        values |= {
            "num_cache_clusters": 1,
            "multi_az": False,
            "snapshot_retention_days": 1,
            "deletion_protection": False,
        }
    else:
        values |= {"node_type": "cache.r6g.large", "num_cache_clusters": 2, "multi_az": True}
    values.update(overrides)
    return CacheArgs(**values)


def build_cache(args: CacheArgs) -> Recorded:
    return build(lambda: Cache("cache", args))


@pytest.fixture(scope="module", autouse=True)
def _random_password() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        mock_random_password(patch)
        yield


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return build_cache(cache_args("dev"))


@pytest.fixture(scope="module")
def prod() -> tuple[Recorded, set[str]]:
    with pytest.MonkeyPatch.context() as patch:
        names = retained_names(patch)
        return build_cache(cache_args("prod")), names


def group(recorded: Recorded) -> dict:
    return inputs(recorded.one("aws:elasticache/replicationGroup:ReplicationGroup"))


def test_every_child_is_parented_to_the_component(dev):
    component = dev.one("container-platform:cache:Cache")
    assert all(r.parent == component.urn for r in dev.resources if r is not component)


def test_replication_group_is_encrypted_authenticated_and_private(dev):
    g = group(dev)
    key = dev.one("aws:kms/key:Key")
    assert inputs(key)["enableKeyRotation"] is True
    assert (g["engine"], g["engineVersion"], g["port"]) == ("valkey", "8.2", 6379)
    assert g["atRestEncryptionEnabled"] is True
    assert g["kmsKeyId"] == key.outputs["arn"]
    assert (g["transitEncryptionEnabled"], g["transitEncryptionMode"]) == (True, "required")
    assert g["authToken"] == MOCK_TOKEN
    assert g["subnetGroupName"] == dev.one("aws:elasticache/subnetGroup:SubnetGroup").outputs["name"]
    assert inputs(dev.one("aws:elasticache/subnetGroup:SubnetGroup"))["subnetIds"] == ["subnet-a", "subnet-b"]
    assert g["securityGroupIds"] == ["cache-sg-id"]
    assert (g["snapshotWindow"], g["maintenanceWindow"]) == ("03:00-05:00", "sun:05:00-sun:07:00")
    assert g["autoMinorVersionUpgrade"] is True


def test_dev_is_one_node_with_a_day_of_snapshots(dev):
    g = group(dev)
    assert (g["nodeType"], g["numCacheClusters"]) == ("cache.t4g.micro", 1)
    assert (g["automaticFailoverEnabled"], g["multiAzEnabled"]) == (False, False)
    assert g["snapshotRetentionLimit"] == 1
    assert "finalSnapshotIdentifier" not in g


def test_prod_fails_over_across_azs_and_keeps_a_final_snapshot(prod):
    recorded, retained = prod
    g = group(recorded)
    assert (g["nodeType"], g["numCacheClusters"]) == ("cache.r6g.large", 2)
    assert (g["automaticFailoverEnabled"], g["multiAzEnabled"]) == (True, True)
    assert g["snapshotRetentionLimit"] == 7
    assert g["finalSnapshotIdentifier"] == "jobs-prod-cache-final"
    assert retained == {"cache-key"}


def test_token_is_generated_once_into_secrets_manager_with_the_aws_managed_key(dev):
    password = inputs(dev.one(RANDOM_PASSWORD))
    assert password["length"] == 64
    assert password["special"] is False
    secret = inputs(dev.one("aws:secretsmanager/secret:Secret"))
    assert "kmsKeyId" not in secret
    assert secret["namePrefix"] == "jobs-dev/cache-auth-token-"
    version = inputs(dev.one("aws:secretsmanager/secretVersion:SecretVersion"))
    assert version["secretString"] == MOCK_TOKEN
    assert version["secretId"] == "cache-auth-token-secret-id"


def test_security_group_has_no_rules_of_its_own(dev):
    sg = inputs(dev.one("aws:ec2/securityGroup:SecurityGroup"))
    assert "ingress" not in sg
    assert "egress" not in sg
    assert not dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")


def test_slow_and_engine_logs_go_to_an_encrypted_log_group(dev):
    log_group = inputs(dev.one("aws:cloudwatch/logGroup:LogGroup"))
    assert (log_group["name"], log_group["retentionInDays"], log_group["kmsKeyId"]) == (
        "/aws/elasticache/jobs-dev/cache",
        30,
        LOG_KEY,
    )
    deliveries = {d["logType"]: d for d in group(dev)["logDeliveryConfigurations"]}
    assert set(deliveries) == {"slow-log", "engine-log"}
    assert all(d["destination"] == log_group["name"] for d in deliveries.values())
    assert all(d["destinationType"] == "cloudwatch-logs" for d in deliveries.values())


def test_every_node_has_cpu_memory_and_eviction_alarms_to_the_topic(prod):
    recorded, _ = prod
    alarms = {r.name: inputs(r) for r in recorded.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert set(alarms) == {
        f"cache-{n}-{kind}" for n in ("001", "002") for kind in ("cpu-high", "memory-high", "evictions")
    }
    for name, a in alarms.items():
        assert a["alarmActions"] == [TOPIC], name
        assert a["okActions"] == [TOPIC], name
        assert a["dimensions"]["CacheClusterId"] == f"jobs-prod-cache-{name.split('-')[1]}"
    assert (alarms["cache-001-cpu-high"]["metricName"], alarms["cache-001-cpu-high"]["threshold"]) == (
        "EngineCPUUtilization",
        80,
    )
    assert alarms["cache-002-memory-high"]["metricName"] == "DatabaseMemoryUsagePercentage"
    evictions = alarms["cache-001-evictions"]
    assert (evictions["threshold"], evictions["comparisonOperator"], evictions["statistic"]) == (
        0,
        "GreaterThanThreshold",
        "Sum",
    )
    metrics = {m[1] for w in json_input(recorded.one("aws:cloudwatch/dashboard:Dashboard"), "dashboardBody")["widgets"]
               for m in w["properties"]["metrics"]}  # fmt: skip
    assert metrics == {"EngineCPUUtilization", "DatabaseMemoryUsagePercentage", "Evictions", "CurrConnections"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"num_cache_clusters": 1, "multi_az": True},
            "multi_az=True (automatic failover) needs num_cache_clusters >= 2",
        ),
        ({"num_cache_clusters": 7}, "num_cache_clusters=7 must be 1-6"),
        ({"node_type": "cache.z9.large"}, "node_type='cache.z9.large' is not cache.<family>.<size>"),
        ({"node_type": "r6g.large"}, "node_type='r6g.large' is not cache.<family>.<size>"),
        (
            {"engine": "redis", "engine_version": "8.2"},
            "engine_version='8.2' must be major.minor with a major of (6, 7)",
        ),
        ({"engine": "memcached"}, "engine='memcached' must be one of ['redis', 'valkey']"),
        ({"snapshot_retention_days": 36}, "snapshot_retention_days=36 must be 0-35"),
    ],
)
def test_contradicting_or_unknown_args_are_rejected(overrides, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        cache_args("prod", **overrides)


def test_without_its_own_dashboard_there_is_none_and_its_alarms_stay():
    recorded = build_cache(cache_args(own_dashboard=False))
    assert recorded.of_type("aws:cloudwatch/dashboard:Dashboard") == []
    assert len(recorded.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")) == 3
