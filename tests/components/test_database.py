"""Database: RDS PostgreSQL 17, encrypted, private, RDS-managed credentials, the seed's parameters and alarms."""

from __future__ import annotations

import re

import pytest

from components.database import Database, DatabaseArgs
from tests.components.test_storage import ACCOUNT, LOG_KEY, TOPIC, retained_names
from tests.support import Recorded, build, inputs, json_input


def database_args(env: str = "dev", **overrides) -> DatabaseArgs:
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
        values |= {"multi_az": False, "deletion_protection": False, "backup_retention_days": 7}
    else:
        values |= {"instance_class": "db.r6g.large", "allocated_storage_gb": 100, "max_allocated_storage_gb": 500}
    values.update(overrides)
    return DatabaseArgs(**values)


def build_database(args: DatabaseArgs) -> Recorded:
    return build(lambda: Database("database", args))


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return build_database(database_args("dev"))


@pytest.fixture(scope="module")
def prod() -> tuple[Recorded, set[str]]:
    with pytest.MonkeyPatch.context() as patch:
        names = retained_names(patch)
        return build_database(database_args("prod")), names


def instance(recorded: Recorded) -> dict:
    return inputs(recorded.one("aws:rds/instance:Instance"))


def test_every_child_is_parented_to_the_component(dev):
    component = dev.one("container-platform:database:Database")
    assert all(r.parent == component.urn for r in dev.resources if r is not component)


def test_instance_is_private_encrypted_and_monitored(dev):
    db = instance(dev)
    key_arn = dev.one("aws:kms/key:Key").outputs["arn"]
    assert (db["engine"], db["engineVersion"], db["port"]) == ("postgres", "17", 5432)
    assert db["engineLifecycleSupport"] == "open-source-rds-extended-support-disabled"
    assert (db["storageType"], db["storageEncrypted"], db["kmsKeyId"]) == ("gp3", True, key_arn)
    assert db["publiclyAccessible"] is False
    assert db["vpcSecurityGroupIds"] == ["database-sg-id"]
    assert db["dbSubnetGroupName"] == dev.one("aws:rds/subnetGroup:SubnetGroup").outputs["name"]
    assert inputs(dev.one("aws:rds/subnetGroup:SubnetGroup"))["subnetIds"] == ["subnet-a", "subnet-b"]
    assert (db["performanceInsightsEnabled"], db["performanceInsightsKmsKeyId"]) == (True, key_arn)
    assert db["monitoringInterval"] == 60
    assert db["monitoringRoleArn"].endswith("database-monitoring-role")
    assert db["enabledCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    assert db["iamDatabaseAuthenticationEnabled"] is True
    assert (db["autoMinorVersionUpgrade"], db["allowMajorVersionUpgrade"]) == (True, False)
    assert db["copyTagsToSnapshot"] is True


def test_master_password_is_managed_by_rds_and_never_an_input(dev):
    db = instance(dev)
    assert db["manageMasterUserPassword"] is True
    assert db["username"] == "dbadmin"
    assert "password" not in db


def test_dev_is_single_az_disposable_with_a_week_of_backups(dev):
    db = instance(dev)
    assert (db["instanceClass"], db["multiAz"], db["backupRetentionPeriod"]) == ("db.t4g.micro", False, 7)
    assert (db["deletionProtection"], db["skipFinalSnapshot"], db["deleteAutomatedBackups"]) == (False, True, True)
    assert "finalSnapshotIdentifier" not in db
    assert (db["allocatedStorage"], db["maxAllocatedStorage"]) == (20, 100)


def test_prod_is_multi_az_protected_and_keeps_its_key(prod):
    recorded, retained = prod
    db = instance(recorded)
    assert (db["instanceClass"], db["multiAz"], db["backupRetentionPeriod"]) == ("db.r6g.large", True, 30)
    assert (db["deletionProtection"], db["skipFinalSnapshot"], db["deleteAutomatedBackups"]) == (True, False, False)
    assert db["finalSnapshotIdentifier"] == "jobs-prod-postgres-final"
    assert (db["allocatedStorage"], db["maxAllocatedStorage"]) == (100, 500)
    assert retained == {"database-key"}


def test_parameter_group_has_the_seed_settings_safely(dev):
    group = inputs(dev.one("aws:rds/parameterGroup:ParameterGroup"))
    assert group["family"] == "postgres17"
    assert instance(dev)["parameterGroupName"] == dev.one("aws:rds/parameterGroup:ParameterGroup").outputs["name"]
    params = {p["name"]: (p["value"], p["applyMethod"]) for p in group["parameters"]}
    assert params == {
        "max_connections": ("200", "pending-reboot"),
        "work_mem": ("4096", "immediate"),
        "maintenance_work_mem": ("65536", "immediate"),
        "log_statement": ("ddl", "immediate"),
        "log_min_duration_statement": ("1000", "immediate"),
        "log_checkpoints": ("1", "immediate"),
        "log_connections": ("1", "immediate"),
        "log_disconnections": ("1", "immediate"),
        "checkpoint_completion_target": ("0.9", "immediate"),
        "wal_buffers": ("2048", "pending-reboot"),
        "default_statistics_target": ("100", "immediate"),
        "rds.force_ssl": ("1", "immediate"),
    }


def test_enhanced_monitoring_role_trusts_only_rds_monitoring_of_this_account(dev):
    role = dev.one("aws:iam/role:Role")
    (statement,) = json_input(role, "assumeRolePolicy")["Statement"]
    assert statement["Principal"] == {"Service": "monitoring.rds.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    attachment = inputs(dev.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment"))
    assert attachment["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"


def test_exported_logs_land_in_encrypted_log_groups_with_retention(dev):
    groups = {inputs(g)["name"]: inputs(g) for g in dev.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == {
        "/aws/rds/instance/jobs-dev-postgres/postgresql",
        "/aws/rds/instance/jobs-dev-postgres/upgrade",
    }
    assert all((g["retentionInDays"], g["kmsKeyId"]) == (30, LOG_KEY) for g in groups.values())


def test_security_group_has_no_rules_of_its_own(dev):
    sg = inputs(dev.one("aws:ec2/securityGroup:SecurityGroup"))
    assert "ingress" not in sg
    assert "egress" not in sg


def test_seed_alarms_plus_connections_notify_the_topic(dev):
    alarms = {r.name: inputs(r) for r in dev.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    summary = {
        name: (a["metricName"], a["comparisonOperator"], a["threshold"], a["evaluationPeriods"])
        for name, a in alarms.items()
    }
    assert summary == {
        "database-cpu-high": ("CPUUtilization", "GreaterThanThreshold", 80, 2),
        "database-storage-low": ("FreeStorageSpace", "LessThanThreshold", 2_000_000_000, 1),
        "database-connections-high": ("DatabaseConnections", "GreaterThanThreshold", 160, 2),
    }
    for a in alarms.values():
        assert a["dimensions"] == {"DBInstanceIdentifier": "jobs-dev-postgres"}
        assert a["alarmActions"] == a["okActions"] == [TOPIC]
    body = json_input(dev.one("aws:cloudwatch/dashboard:Dashboard"), "dashboardBody")
    metrics = {m[1] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert metrics == {"CPUUtilization", "DatabaseConnections", "ReadLatency", "WriteLatency", "FreeStorageSpace"}


def test_connections_alarm_threshold_can_be_set():
    args = database_args("dev", max_connections=400, connections_alarm_threshold=300)
    assert args.connections_threshold == 300
    assert database_args("dev", max_connections=400).connections_threshold == 320


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instance_class": "db.z9.large"}, "instance_class='db.z9.large' is not db.<family>.<size> with a known"),
        ({"instance_class": "t3.micro"}, "instance_class='t3.micro' is not db.<family>.<size>"),
        ({"engine_version": "13.7"}, "engine_version='13.7' must be a major or major.minor, major one of"),
        ({"allocated_storage_gb": 600}, "allocated_storage_gb=600 must be at least 20 and at most max_allocated"),
        ({"backup_retention_days": 0}, "backup_retention_days=0 must be 1-35"),
        ({"connections_alarm_threshold": 500}, "connections_alarm_threshold=500 must be 1 to max_connections=200"),
        ({"db_name": "App-DB"}, "db_name='App-DB' must be lowercase letters, digits, _"),
        ({"performance_insights_retention_days": 30}, "performance_insights_retention_days=30 must be 7 or"),
    ],
)
def test_unknown_or_contradicting_args_are_rejected(overrides, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        database_args("prod", **overrides)
