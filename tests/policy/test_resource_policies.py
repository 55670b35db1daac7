"""Every resource policy: the compliant baseline passes, and changing one prop fails with the exact message."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import ResourceValidationPolicy

from tests.policy import baselines as b
from tests.policy.baselines import BASELINES, container, task_definition, with_props
from tests.policy.helpers import POLICIES, run_policy

RESOURCE_POLICIES = [p for p in POLICIES.values() if isinstance(p, ResourceValidationPolicy)]

# (policy, resource type, props, exact message)
FAILURES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "aws-ecs-taskdefinition-disallow-root-user",
        b.TASK_DEFINITION,
        task_definition(container(user=None)),
        "container 'app' sets no user, so it runs as root",
    ),
    (
        "aws-ecs-taskdefinition-disallow-privileged-containers",
        b.TASK_DEFINITION,
        task_definition(container(privileged=True)),
        "container 'app' is privileged",
    ),
    (
        "aws-ecs-taskdefinition-disallow-plaintext-secrets",
        b.TASK_DEFINITION,
        task_definition(container(environment=[{"name": "DATABASE_PASSWORD", "value": "hunter2"}])),
        "container 'app' environment variable 'DATABASE_PASSWORD' is a plaintext secret: its name marks it as a "
        "secret; pass it through secrets[].valueFrom (Secrets Manager or SSM Parameter Store).",
    ),
    (
        "aws-ecs-taskdefinition-allowed-image-registries",
        b.TASK_DEFINITION,
        task_definition(container(image="ghcr.io/acme/app:1.0")),
        "container 'app' image 'ghcr.io/acme/app:1.0' comes from ghcr.io, not from a private ECR repository of an "
        "allowed account",
    ),
    (
        "aws-ecs-taskdefinition-disallow-latest-tag",
        b.TASK_DEFINITION,
        task_definition(container(image=f"{b.ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/app:latest")),
        f"container 'app' image '{b.ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/app:latest' uses the mutable 'latest' tag",
    ),
    (
        "aws-ecs-taskdefinition-enable-readonly-root-filesystem",
        b.TASK_DEFINITION,
        task_definition(container(readonlyRootFilesystem=False)),
        "container 'app' has a writable root filesystem",
    ),
    (
        "aws-ecs-taskdefinition-configure-logging",
        b.TASK_DEFINITION,
        task_definition(container(logConfiguration=None)),
        "container 'app' has no logConfiguration.logDriver, so its output is lost",
    ),
    (
        "aws-ecs-taskdefinition-disallow-host-pid-mode",
        b.TASK_DEFINITION,
        with_props(b.TASK_DEFINITION, pidMode="host"),
        "pidMode is 'host', which shares the host's process namespace with the containers",
    ),
    (
        "aws-ecs-taskdefinition-disallow-host-network-mode",
        b.TASK_DEFINITION,
        with_props(b.TASK_DEFINITION, networkMode="host"),
        "networkMode is 'host', which bypasses task network isolation",
    ),
    (
        "aws-ecs-taskdefinition-enable-efs-transit-encryption",
        b.TASK_DEFINITION,
        with_props(b.TASK_DEFINITION, volumes=[{"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]),
        "EFS volume 'data' does not set transitEncryption to ENABLED",
    ),
    (
        "aws-ecs-service-disallow-public-ip",
        b.SERVICE,
        with_props(b.SERVICE, networkConfiguration={"assignPublicIp": True, "subnets": ["subnet-a"]}),
        "networkConfiguration.assignPublicIp is true, so every task gets a public IP address",
    ),
    (
        "aws-ecs-service-use-latest-platform-version",
        b.SERVICE,
        with_props(b.SERVICE, platformVersion="1.3.0"),
        "platformVersion is '1.3.0'; allowed: ['LATEST', '1.4.0']",
    ),
    (
        "aws-ecs-cluster-enable-container-insights",
        b.CLUSTER,
        with_props(b.CLUSTER, settings=None),
        "the containerInsights setting is not 'enabled' or 'enhanced'",
    ),
    (
        "aws-ecr-repository-enable-immutable-tags",
        b.REPOSITORY,
        with_props(b.REPOSITORY, imageTagMutability=None),
        "imageTagMutability is MUTABLE, so a pushed tag can be overwritten",
    ),
    (
        "aws-ecr-repository-use-customer-managed-key",
        b.REPOSITORY,
        with_props(b.REPOSITORY, encryptionConfigurations=[{"encryptionType": "AES256"}]),
        "the repository is not encrypted with a customer-managed KMS key",
    ),
    (
        "aws-efs-filesystem-enable-encryption",
        b.FILE_SYSTEM,
        with_props(b.FILE_SYSTEM, encrypted=None, kmsKeyId=None),
        "encrypted is not true, so the file system is stored unencrypted",
    ),
    (
        "aws-efs-accesspoint-disallow-root-directory",
        b.ACCESS_POINT,
        with_props(b.ACCESS_POINT, rootDirectory={"path": "/"}),
        "the access point exposes the file system root '/'",
    ),
    (
        "aws-efs-accesspoint-enforce-posix-user",
        b.ACCESS_POINT,
        with_props(b.ACCESS_POINT, posixUser={"uid": 0, "gid": 0}),
        "the access point's POSIX user is root (uid 0)",
    ),
    (
        "aws-rds-instance-disallow-public-access",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, publiclyAccessible=True),
        "publiclyAccessible is true, so the database gets a public endpoint",
    ),
    (
        "aws-rds-instance-enable-storage-encryption",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, storageEncrypted=None),
        "storageEncrypted is not true",
    ),
    (
        "aws-rds-instance-enable-multi-az",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, multiAz=False),
        "multiAz is not true in stack 'prod'",
    ),
    (
        "aws-rds-instance-enable-deletion-protection",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, deletionProtection=None),
        "deletionProtection is not true in stack 'prod'",
    ),
    (
        "aws-rds-instance-enable-enhanced-monitoring",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, monitoringInterval=0),
        "monitoringInterval is 0, so enhanced monitoring is off",
    ),
    (
        "aws-rds-instance-export-logs",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, enabledCloudwatchLogsExports=["upgrade"]),
        "enabledCloudwatchLogsExports does not include 'postgresql'",
    ),
    (
        "aws-rds-instance-enable-iam-authentication",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, iamDatabaseAuthenticationEnabled=False),
        "iamDatabaseAuthenticationEnabled is not true",
    ),
    (
        "aws-rds-instance-configure-backup-retention",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, backupRetentionPeriod=3),
        "backupRetentionPeriod is 3 days; at least 7 required",
    ),
    (
        "aws-rds-instance-enable-auto-minor-version-upgrade",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, autoMinorVersionUpgrade=False),
        "autoMinorVersionUpgrade is false",
    ),
    (
        "aws-rds-instance-enable-copy-tags-to-snapshot",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, copyTagsToSnapshot=None),
        "copyTagsToSnapshot is not true",
    ),
    (
        "aws-rds-instance-use-managed-master-password",
        b.DB_INSTANCE,
        with_props(b.DB_INSTANCE, manageMasterUserPassword=None, password="literal-password"),
        "the master password is set as a literal `password` input and is stored in the Pulumi state",
    ),
    (
        "aws-rds-parametergroup-enforce-ssl",
        b.PARAMETER_GROUP,
        with_props(b.PARAMETER_GROUP, parameters=[{"name": "rds.force_ssl", "value": "0"}]),
        "rds.force_ssl is '0', so clients may connect without TLS",
    ),
    (
        "aws-elasticache-replicationgroup-enable-at-rest-encryption",
        b.REPLICATION_GROUP,
        with_props(b.REPLICATION_GROUP, atRestEncryptionEnabled=False),
        "atRestEncryptionEnabled is not true",
    ),
    (
        "aws-elasticache-replicationgroup-enable-transit-encryption",
        b.REPLICATION_GROUP,
        with_props(b.REPLICATION_GROUP, transitEncryptionEnabled=None),
        "transitEncryptionEnabled is not true, so clients talk to the cache in cleartext",
    ),
    (
        "aws-elasticache-replicationgroup-enable-auth",
        b.REPLICATION_GROUP,
        with_props(b.REPLICATION_GROUP, authToken=None),
        "neither authToken nor userGroupIds is set, so any client in the network can connect",
    ),
    (
        "aws-elasticache-replicationgroup-configure-snapshot-retention",
        b.REPLICATION_GROUP,
        with_props(b.REPLICATION_GROUP, snapshotRetentionLimit=None),
        "snapshotRetentionLimit is 0 days; at least 1 required",
    ),
    (
        "aws-elasticache-replicationgroup-enable-auto-minor-version-upgrade",
        b.REPLICATION_GROUP,
        with_props(b.REPLICATION_GROUP, autoMinorVersionUpgrade="false"),
        "autoMinorVersionUpgrade is false",
    ),
    (
        "aws-elasticache-replicationgroup-enable-automatic-failover",
        b.REPLICATION_GROUP,
        with_props(b.REPLICATION_GROUP, automaticFailoverEnabled=False),
        "automaticFailoverEnabled is not true in stack 'prod'",
    ),
    (
        "aws-elasticache-replicationgroup-disallow-default-subnet-group",
        b.REPLICATION_GROUP,
        with_props(b.REPLICATION_GROUP, subnetGroupName="default"),
        "the replication group uses the default subnet group (the default VPC)",
    ),
    (
        "aws-lb-listener-redirect-http-to-https",
        b.LISTENER,
        {"protocol": "HTTP", "port": 80, "defaultActions": [{"type": "forward", "targetGroupArn": "tg"}]},
        "the HTTP listener on port 80 does not redirect to HTTPS",
    ),
    (
        "aws-lb-listener-use-secure-tls-policy",
        b.LISTENER,
        with_props(b.LISTENER, sslPolicy="ELBSecurityPolicy-2016-08"),
        "sslPolicy is ELBSecurityPolicy-2016-08, which accepts TLS 1.0; use a TLS 1.2+ policy such as "
        "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
    ),
    (
        "aws-lb-loadbalancer-drop-invalid-header-fields",
        b.LOAD_BALANCER,
        with_props(b.LOAD_BALANCER, dropInvalidHeaderFields=None),
        "dropInvalidHeaderFields is not true",
    ),
    (
        "aws-lb-loadbalancer-enable-access-logs",
        b.LOAD_BALANCER,
        with_props(b.LOAD_BALANCER, accessLogs=None),
        "accessLogs is not enabled with a bucket",
    ),
    (
        "aws-lb-loadbalancer-enable-deletion-protection",
        b.LOAD_BALANCER,
        with_props(b.LOAD_BALANCER, enableDeletionProtection=False),
        "enableDeletionProtection is not true in stack 'prod'",
    ),
    (
        "aws-lb-loadbalancer-configure-desync-mitigation",
        b.LOAD_BALANCER,
        with_props(b.LOAD_BALANCER, desyncMitigationMode="monitor"),
        "desyncMitigationMode is 'monitor'",
    ),
    (
        "aws-ec2-securitygroup-disallow-public-ingress",
        b.SECURITY_GROUP,
        {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]},
        "ingress from 0.0.0.0/0 is open on port 22; only [80, 443] may be public",
    ),
    (
        "aws-kms-key-enable-key-rotation",
        b.KMS_KEY,
        with_props(b.KMS_KEY, enableKeyRotation=None),
        "enableKeyRotation is not true",
    ),
    (
        "aws-sqs-queue-enable-encryption",
        b.QUEUE,
        with_props(b.QUEUE, sqsManagedSseEnabled=False),
        "sqsManagedSseEnabled is false and no kmsMasterKeyId is set, so messages are stored unencrypted",
    ),
    (
        "aws-sns-topic-enable-encryption",
        b.TOPIC,
        with_props(b.TOPIC, kmsMasterKeyId=None),
        "kmsMasterKeyId is not set, so messages are stored unencrypted",
    ),
    (
        "aws-cloudwatch-loggroup-configure-retention",
        b.LOG_GROUP,
        with_props(b.LOG_GROUP, retentionInDays=None),
        "retentionInDays is not set, so logs are kept forever",
    ),
    (
        "aws-cloudwatch-loggroup-use-customer-managed-key",
        b.LOG_GROUP,
        with_props(b.LOG_GROUP, kmsKeyId=None),
        "kmsKeyId is not set, so the log group uses the service-owned key",
    ),
    (
        "aws-codebuild-project-disallow-plaintext-secrets",
        b.CODEBUILD,
        {"environment": {"environmentVariables": [{"name": "GITHUB_TOKEN", "value": "abc123"}]}},
        "CodeBuild environment variable 'GITHUB_TOKEN' is a plaintext secret: its name marks it as a secret; use type "
        "SECRETS_MANAGER or PARAMETER_STORE.",
    ),
    (
        "aws-codebuild-project-restrict-privileged-mode",
        b.CODEBUILD,
        with_props(b.CODEBUILD, environment={"privilegedMode": True}),
        "project 'build' runs in privilegedMode but is not listed in allowedProjects",
    ),
    (
        "aws-lambda-function-disallow-plaintext-secrets",
        b.LAMBDA,
        {"environment": {"variables": {"API_KEY": "definitely-not-a-secret"}}},
        "Lambda environment variable 'API_KEY' is a plaintext secret: its name marks it as a secret; read it at runtime "
        "from Secrets Manager or SSM Parameter Store.",
    ),
    (
        "aws-ecs-taskdefinition-disallow-added-capabilities",
        b.TASK_DEFINITION,
        task_definition(container(linuxParameters={"capabilities": {"add": ["SYS_ADMIN"]}})),
        "container 'app' adds the Linux capability SYS_ADMIN through linuxParameters.capabilities.add",
    ),
    (
        "aws-ecs-taskdefinition-disallow-host-ipc-mode",
        b.TASK_DEFINITION,
        with_props(b.TASK_DEFINITION, ipcMode="host"),
        "ipcMode is 'host', which shares the host's shared memory and semaphores with the containers",
    ),
    (
        "aws-ecs-service-disallow-open-default-security-group",
        b.AWSX_FARGATE_SERVICE,
        with_props(b.AWSX_FARGATE_SERVICE, networkConfiguration=None),
        "networkConfiguration is not set, so awsx creates a security group open to 0.0.0.0/0 and ::/0 on every "
        "port for the tasks",
    ),
    (
        "aws-apigateway-stage-enable-access-logging",
        b.API_STAGE,
        with_props(b.API_STAGE, accessLogSettings=None),
        "accessLogSettings.destinationArn is not set, so requests to the stage are not logged",
    ),
    (
        "aws-apigateway-stage-configure-throttling",
        b.API_STAGE,
        with_props(b.API_STAGE, defaultRouteSettings=None),
        "defaultRouteSettings does not set throttlingBurstLimit and throttlingRateLimit, so the stage accepts "
        "whatever the account's regional quota allows (10,000 requests per second)",
    ),
    (
        "aws-apigateway-route-require-authorization",
        b.API_ROUTE,
        with_props(b.API_ROUTE, authorizationType="NONE", authorizerId=None),
        "route 'ANY /orders/{proxy+}' has authorizationType NONE, so anyone can call it",
    ),
    (
        "aws-apigateway-domainname-require-tls-1-2",
        b.API_DOMAIN_NAME,
        with_props(
            b.API_DOMAIN_NAME,
            domainNameConfiguration={
                **b.BASELINES[b.API_DOMAIN_NAME]["domainNameConfiguration"],
                "securityPolicy": "TLS_1_0",
            },
        ),
        "domainNameConfiguration.securityPolicy is TLS_1_0, which accepts TLS 1.0 and 1.1; set TLS_1_2",
    ),
    (
        "aws-ecs-service-enable-service-connect-logging",
        b.SERVICE,
        with_props(b.SERVICE, serviceConnectConfiguration={"enabled": True, "namespace": "ns"}),
        "serviceConnectConfiguration has no logConfiguration.logDriver, so the Service Connect proxy's logs are lost",
    ),
    (
        "aws-s3-bucket-disallow-public-acl",
        b.BUCKET_ACL,
        with_props(b.BUCKET_ACL, acl="public-read"),
        "acl is 'public-read', which grants access to everyone",
    ),
    (
        "aws-ecs-service-configure-safe-deployments",
        b.SERVICE,
        with_props(b.SERVICE, deploymentConfiguration=None),
        "deploys ROLLING in stack 'prod' with no alarm-based rollback, so a revision that starts but serves errors "
        "takes all traffic until someone notices",
    ),
    (
        "aws-ecs-service-configure-safe-deployments",
        b.AWSX_FARGATE_SERVICE,
        with_props(b.AWSX_FARGATE_SERVICE, alarms={"alarmNames": ["apps-5xx"], "enable": True, "rollback": False}),
        "deploys ROLLING in stack 'prod' with no alarm-based rollback, so a revision that starts but serves errors "
        "takes all traffic until someone notices",
    ),
    (
        "aws-s3-bucket-disallow-public-policy",
        b.BUCKET_POLICY,
        with_props(b.BUCKET_POLICY, policy=b.bucket_policy({"Effect": "Allow", "Principal": "*", "Action": "s3:*"})),
        "policy statement #1 allows Principal '*' without a condition that restricts who can use it",
    ),
    (
        "aws-cloudfront-distribution-require-https",
        b.DISTRIBUTION,
        with_props(
            b.DISTRIBUTION, defaultCacheBehavior={"targetOriginId": "site", "viewerProtocolPolicy": "allow-all"}
        ),
        "defaultCacheBehavior.viewerProtocolPolicy is allow-all, so viewers can use plain HTTP; set redirect-to-https",
    ),
    (
        "aws-cloudfront-distribution-require-tls-1-2-2021",
        b.DISTRIBUTION,
        with_props(b.DISTRIBUTION, viewerCertificate={"acmCertificateArn": "arn:c", "minimumProtocolVersion": "TLSv1"}),
        "viewerCertificate.minimumProtocolVersion is TLSv1, which accepts older TLS or weak ciphers; set TLSv1.2_2021 "
        "or later",
    ),
    (
        "aws-cloudfront-distribution-use-custom-certificate",
        b.DISTRIBUTION,
        with_props(b.DISTRIBUTION, viewerCertificate={"cloudfrontDefaultCertificate": True}),
        "viewerCertificate uses the default *.cloudfront.net certificate, whose security policy AWS fixes at TLSv1 "
        "(TLS 1.0 accepted)",
    ),
    (
        "aws-cloudfront-distribution-use-origin-access-control",
        b.DISTRIBUTION,
        with_props(b.DISTRIBUTION, origins=[{"originId": "site", "domainName": "app.s3.us-east-1.amazonaws.com"}]),
        "S3 origin 'site' has no originAccessControlId, so the bucket must be readable without one",
    ),
    (
        "aws-cloudfront-distribution-disallow-s3-website-origins",
        b.DISTRIBUTION,
        with_props(b.DISTRIBUTION, origins=[{"originId": "w", "domainName": "app.s3-website-us-east-1.amazonaws.com"}]),
        "origin 'w' is an S3 website endpoint (app.s3-website-us-east-1.amazonaws.com), which serves only a public "
        "bucket; use the bucket's REST endpoint with an origin access control",
    ),
    (
        "aws-cloudfront-distribution-encrypt-origin-traffic",
        b.DISTRIBUTION,
        with_props(
            b.DISTRIBUTION,
            origins=[
                {"originId": "api", "domainName": "alb", "customOriginConfig": {"originProtocolPolicy": "http-only"}}
            ],
        ),
        "origin 'api' has originProtocolPolicy http-only, so CloudFront may reach it over plain HTTP",
    ),
]


def _types(policy: ResourceValidationPolicy) -> list[str]:
    return sorted({case[1] for case in FAILURES if case[0] == policy.name})


def test_every_resource_policy_has_a_failing_case() -> None:
    assert {p.name for p in RESOURCE_POLICIES} == {case[0] for case in FAILURES}


@pytest.mark.parametrize("type_", sorted(BASELINES))
def test_baseline_passes_every_resource_policy(type_: str) -> None:
    # GIVEN the compliant baseline of a type, in a production stack (so stack-scoped controls apply)
    # WHEN every resource policy runs on it
    results = {p.name: run_policy(p.name, type_, BASELINES[type_], stack="prod") for p in RESOURCE_POLICIES}
    # THEN none reports anything
    assert {name: o.messages for name, o in results.items() if o.messages or o.unknown} == {}


@pytest.mark.parametrize(("policy", "type_", "props", "message"), FAILURES, ids=[c[0] for c in FAILURES])
def test_policy_reports_the_changed_prop(policy: str, type_: str, props: dict[str, Any], message: str) -> None:
    outcome = run_policy(policy, type_, props, stack="prod")
    assert outcome.messages == [message]
    assert outcome.unknown is None


@pytest.mark.parametrize(("policy", "type_", "props", "message"), FAILURES, ids=[c[0] for c in FAILURES])
def test_policy_ignores_other_resource_types(policy: str, type_: str, props: dict[str, Any], message: str) -> None:
    assert run_policy(policy, "aws:iam/role:Role", props).messages == []
