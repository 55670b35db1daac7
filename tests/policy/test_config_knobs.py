"""The configuration knobs teams set through `--policy-pack-config`, one per test."""

from __future__ import annotations

from tests.policy import baselines as b
from tests.policy.baselines import with_props
from tests.policy.helpers import run_policy


def test_environment_scoped_controls_apply_only_in_listed_stacks() -> None:
    props = with_props(b.DB_INSTANCE, multiAz=False)
    assert run_policy("aws-rds-instance-enable-multi-az", b.DB_INSTANCE, props, stack="dev").messages == []
    assert run_policy("aws-rds-instance-enable-multi-az", b.DB_INSTANCE, props, stack="Production").messages
    config = {"requiredInStacks": ["staging"]}
    assert run_policy("aws-rds-instance-enable-multi-az", b.DB_INSTANCE, props, config, stack="staging").messages == [
        "multiAz is not true in stack 'staging'"
    ]


def test_minimum_retention_days() -> None:
    rds = with_props(b.DB_INSTANCE, backupRetentionPeriod=7)
    assert run_policy(
        "aws-rds-instance-configure-backup-retention", b.DB_INSTANCE, rds, {"minimumRetentionDays": 14}
    ).messages == ["backupRetentionPeriod is 7 days; at least 14 required"]
    logs = with_props(b.LOG_GROUP, retentionInDays=30)
    assert run_policy(
        "aws-cloudwatch-loggroup-configure-retention", b.LOG_GROUP, logs, {"minimumRetentionDays": 90}
    ).messages == ["retentionInDays is 30; at least 90 required"]
    cache = with_props(b.REPLICATION_GROUP, snapshotRetentionLimit=1)
    assert run_policy(
        "aws-elasticache-replicationgroup-configure-snapshot-retention",
        b.REPLICATION_GROUP,
        cache,
        {"minimumRetentionDays": 7},
    ).messages == ["snapshotRetentionLimit is 1 days; at least 7 required"]


def test_allowed_tls_policies() -> None:
    listener = with_props(b.LISTENER, sslPolicy="ELBSecurityPolicy-2016-08")
    name = "aws-lb-listener-use-secure-tls-policy"
    assert run_policy(name, b.LISTENER, listener).messages
    assert run_policy(name, b.LISTENER, listener, {"allowedSslPolicies": ["ELBSecurityPolicy-2016-08"]}).messages == []


def test_allowed_public_ports() -> None:
    group = {"ingress": [{"protocol": "tcp", "fromPort": 8443, "toPort": 8443, "ipv6CidrBlocks": ["::/0"]}]}
    name = "aws-ec2-securitygroup-disallow-public-ingress"
    assert run_policy(name, b.SECURITY_GROUP, group).messages == [
        "ingress from ::/0 is open on port 8443; only [80, 443] may be public"
    ]
    assert run_policy(name, b.SECURITY_GROUP, group, {"allowedPublicPorts": [443, 8443]}).messages == []


def test_public_ingress_on_standalone_rules_and_all_protocols() -> None:
    name = "aws-ec2-securitygroup-disallow-public-ingress"
    rule = {
        "type": "ingress",
        "protocol": "-1",
        "fromPort": 0,
        "toPort": 0,
        "cidrBlocks": ["0.0.0.0/0"],
        "securityGroupId": "sg-1",
    }
    assert run_policy(name, b.SECURITY_GROUP_RULE, rule).messages == [
        "ingress from 0.0.0.0/0 is open on all ports; only [80, 443] may be public"
    ]
    ingress = {"ipProtocol": "tcp", "fromPort": 80, "toPort": 443, "cidrIpv4": "0.0.0.0/0", "securityGroupId": "sg-1"}
    assert run_policy(name, b.INGRESS_RULE, ingress).messages == [
        "ingress from 0.0.0.0/0 is open on ports 80-443; only [80, 443] may be public"
    ]
    egress = {**rule, "type": "egress"}
    assert run_policy(name, b.SECURITY_GROUP_RULE, egress).messages == []


def test_codebuild_privileged_projects_can_be_allowed() -> None:
    project = with_props(b.CODEBUILD, environment={"privilegedMode": True})
    name = "aws-codebuild-project-restrict-privileged-mode"
    assert run_policy(name, b.CODEBUILD, project, {"allowedProjects": ["build"]}).messages == []


def test_codebuild_secret_types_other_than_plaintext_pass() -> None:
    project = {
        "environment": {
            "environmentVariables": [
                {"name": "DB_PASSWORD", "value": "/app/db", "type": "PARAMETER_STORE"},
                {"name": "AWS_SECRET_ACCESS_KEY", "value": "abc/def", "type": "PLAINTEXT"},
            ]
        }
    }
    assert run_policy("aws-codebuild-project-disallow-plaintext-secrets", b.CODEBUILD, project).messages == [
        "CodeBuild environment variable 'AWS_SECRET_ACCESS_KEY' is a plaintext secret: its name marks it as a "
        "secret; use type SECRETS_MANAGER or PARAMETER_STORE."
    ]


def test_efs_customer_managed_key_can_be_required() -> None:
    file_system = with_props(b.FILE_SYSTEM, kmsKeyId=None)
    name = "aws-efs-filesystem-enable-encryption"
    assert run_policy(name, b.FILE_SYSTEM, file_system).messages == []
    assert run_policy(name, b.FILE_SYSTEM, file_system, {"requireCustomerManagedKey": True}).messages == [
        "the file system uses the AWS-managed key; set kmsKeyId to a customer-managed key"
    ]


def test_allowed_platform_versions() -> None:
    service = with_props(b.SERVICE, platformVersion="1.4.0")
    name = "aws-ecs-service-use-latest-platform-version"
    assert run_policy(name, b.SERVICE, service).messages == []
    assert run_policy(name, b.SERVICE, service, {"allowedPlatformVersions": ["LATEST"]}).messages == [
        "platformVersion is '1.4.0'; allowed: ['LATEST']"
    ]


def test_sqs_encryption_follows_the_aws_default() -> None:
    # New queues get SSE-SQS unless it is turned off explicitly.
    assert run_policy("aws-sqs-queue-enable-encryption", b.QUEUE, {}).messages == []
    assert run_policy("aws-sqs-queue-enable-encryption", b.QUEUE, {"sqsManagedSseEnabled": False}).messages == [
        "sqsManagedSseEnabled is false and no kmsMasterKeyId is set, so messages are stored unencrypted"
    ]
    assert run_policy("aws-sqs-queue-enable-encryption", b.QUEUE, {"kmsMasterKeyId": "alias/q"}).messages == []


def test_force_ssl_defaults_by_postgres_family() -> None:
    name = "aws-rds-parametergroup-enforce-ssl"
    assert run_policy(name, b.PARAMETER_GROUP, {"family": "postgres16", "parameters": []}).messages == []
    assert run_policy(name, b.PARAMETER_GROUP, {"family": "postgres14"}).messages == [
        "rds.force_ssl is not set and defaults to 0 in postgres14"
    ]
    assert run_policy(name, b.PARAMETER_GROUP, {"family": "mysql8.0"}).messages == []
