"""One compliant resource per type: every policy passes it; each test changes one prop."""

from __future__ import annotations

import json
from typing import Any

ACCOUNT = "123456789012"
DIGEST = "sha256:" + "3f" * 32
ECR_IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/app:1.4.2@{DIGEST}"

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
CLUSTER = "aws:ecs/cluster:Cluster"
REPOSITORY = "aws:ecr/repository:Repository"
FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
DB_INSTANCE = "aws:rds/instance:Instance"
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
KMS_KEY = "aws:kms/key:Key"
QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CODEBUILD = "aws:codebuild/project:Project"
LAMBDA = "aws:lambda/function:Function"
DB_CLUSTER = "aws:rds/cluster:Cluster"
DB_CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
CLUSTER_PARAMETER_GROUP = "aws:rds/clusterParameterGroup:ClusterParameterGroup"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
AWSX_FARGATE_SERVICE = "awsx:ecs:FargateService"
AWSX_TASK_DEFINITION = "awsx:ecs:FargateTaskDefinition"
AWSX_REPOSITORY = "awsx:ecr:Repository"
API_STAGE = "aws:apigatewayv2/stage:Stage"
API_ROUTE = "aws:apigatewayv2/route:Route"
API_DOMAIN_NAME = "aws:apigatewayv2/domainName:DomainName"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
DISTRIBUTION_ARN = f"arn:aws:cloudfront::{ACCOUNT}:distribution/E1"
VPC_ENDPOINT_ID = "vpce-0a1b2c3d"


def container(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "app",
        "image": ECR_IMAGE,
        "user": "1000:1000",
        "privileged": False,
        "readonlyRootFilesystem": True,
        "essential": True,
        "environment": [{"name": "LOG_LEVEL", "value": "info"}],
        "secrets": [
            {
                "name": "DATABASE_PASSWORD",
                "valueFrom": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:db-AbCdEf",
            }
        ],
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/app"}},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def bucket_policy(*statements: dict[str, Any]) -> str:
    """A bucket policy document (JSON text, as programs pass it) with the given statements."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def task_definition(*containers: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "family": "app",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": json.dumps(list(containers) or [container()]),
        "volumes": [
            {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "transitEncryption": "ENABLED"}}
        ],
    }
    base.update(overrides)
    return base


BASELINES: dict[str, dict[str, Any]] = {
    TASK_DEFINITION: task_definition(),
    SERVICE: {
        "launchType": "FARGATE",
        "networkConfiguration": {"assignPublicIp": False, "subnets": ["subnet-a"], "securityGroups": ["sg-app"]},
        "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": "15"},
    },
    CLUSTER: {"settings": [{"name": "containerInsights", "value": "enabled"}]},
    REPOSITORY: {
        "name": "app",
        "imageTagMutability": "IMMUTABLE",
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": "arn:aws:kms:us-east-1:1:key/k"}],
    },
    FILE_SYSTEM: {"id": "fs-1", "encrypted": True, "kmsKeyId": "arn:aws:kms:us-east-1:1:key/k"},
    ACCESS_POINT: {"fileSystemId": "fs-1", "rootDirectory": {"path": "/app"}, "posixUser": {"uid": 1000, "gid": 1000}},
    DB_INSTANCE: {
        "engine": "postgres",
        "publiclyAccessible": False,
        "storageEncrypted": True,
        "multiAz": True,
        "deletionProtection": True,
        "monitoringInterval": 60,
        "enabledCloudwatchLogsExports": ["postgresql", "upgrade"],
        "iamDatabaseAuthenticationEnabled": True,
        "backupRetentionPeriod": 7,
        "autoMinorVersionUpgrade": True,
        "copyTagsToSnapshot": True,
        "manageMasterUserPassword": True,
    },
    PARAMETER_GROUP: {"family": "postgres16", "parameters": [{"name": "rds.force_ssl", "value": "1"}]},
    REPLICATION_GROUP: {
        "atRestEncryptionEnabled": True,
        "transitEncryptionEnabled": True,
        "authToken": "generated-elsewhere",
        "snapshotRetentionLimit": 5,
        "autoMinorVersionUpgrade": True,
        "automaticFailoverEnabled": True,
        "subnetGroupName": "cache-private",
    },
    LOAD_BALANCER: {
        "loadBalancerType": "application",
        "dropInvalidHeaderFields": True,
        "accessLogs": {"enabled": True, "bucket": "alb-logs"},
        "enableDeletionProtection": True,
        "securityGroups": ["sg-alb"],
    },
    LISTENER: {"protocol": "HTTPS", "port": 443, "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"},
    SECURITY_GROUP: {
        "ingress": [{"protocol": "tcp", "fromPort": 8000, "toPort": 8000, "securityGroups": ["sg-alb"]}],
    },
    SECURITY_GROUP_RULE: {
        "type": "ingress",
        "protocol": "tcp",
        "fromPort": 5432,
        "toPort": 5432,
        "sourceSecurityGroupId": "sg-app",
        "securityGroupId": "sg-db",
    },
    INGRESS_RULE: {
        "ipProtocol": "tcp",
        "fromPort": 6379,
        "toPort": 6379,
        "referencedSecurityGroupId": "sg-app",
        "securityGroupId": "sg-cache",
    },
    KMS_KEY: {"enableKeyRotation": True},
    QUEUE: {"sqsManagedSseEnabled": True},
    TOPIC: {"kmsMasterKeyId": "alias/aws/sns"},
    LOG_GROUP: {"retentionInDays": 30, "kmsKeyId": "arn:aws:kms:us-east-1:1:key/k"},
    CODEBUILD: {
        "name": "build",
        "environment": {
            "privilegedMode": False,
            "environmentVariables": [
                {"name": "IMAGE_TAG", "value": "1.4.2", "type": "PLAINTEXT"},
                {"name": "GITHUB_TOKEN", "value": "ci/github-token", "type": "SECRETS_MANAGER"},
            ],
        },
    },
    LAMBDA: {"environment": {"variables": {"LOG_LEVEL": "info", "DB_SECRET_ARN": "arn:aws:secretsmanager:x"}}},
    DB_CLUSTER: {
        "engine": "aurora-postgresql",
        "storageEncrypted": True,
        "deletionProtection": True,
        "enabledCloudwatchLogsExports": ["postgresql"],
        "iamDatabaseAuthenticationEnabled": True,
        "backupRetentionPeriod": 7,
        "copyTagsToSnapshot": True,
        "manageMasterUserPassword": True,
        "dbSubnetGroupName": "db-private",
    },
    DB_CLUSTER_INSTANCE: {
        "clusterIdentifier": "orders",
        "engine": "aurora-postgresql",
        "instanceClass": "db.r6g.large",
        "publiclyAccessible": False,
        "monitoringInterval": 60,
        "autoMinorVersionUpgrade": True,
    },
    CLUSTER_PARAMETER_GROUP: {"family": "aurora-postgresql16", "parameters": [{"name": "rds.force_ssl", "value": "1"}]},
    BUCKET_ACL: {"bucket": "assets", "acl": "private"},
    BUCKET_POLICY: {
        "bucket": "assets",
        "policy": bucket_policy(
            {
                "Sid": "FromOurEndpointOnly",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::assets/*",
                "Condition": {"StringEquals": {"aws:SourceVpce": VPC_ENDPOINT_ID}},
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ),
    },
    AWSX_FARGATE_SERVICE: {
        "cluster": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/apps",
        "alarms": {"alarmNames": ["apps-5xx"], "enable": True, "rollback": True},
        "networkConfiguration": {"subnets": ["subnet-a"], "securityGroups": ["sg-app"], "assignPublicIp": False},
        "taskDefinitionArgs": {"container": container()},
    },
    AWSX_TASK_DEFINITION: {"containers": {"app": container(), "proxy": container(name="proxy")}},
    API_STAGE: {
        "apiId": "a1b2c3",
        "name": "$default",
        "autoDeploy": True,
        "accessLogSettings": {
            "destinationArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/apigateway/shop",
            "format": '{"requestId":"$context.requestId","status":"$context.status"}',
        },
        "defaultRouteSettings": {"throttlingBurstLimit": 100, "throttlingRateLimit": 50.0},
    },
    API_ROUTE: {
        "apiId": "a1b2c3",
        "routeKey": "ANY /orders/{proxy+}",
        "authorizationType": "JWT",
        "authorizerId": "jwt1",
        "target": "integrations/int1",
    },
    # What components/static_site.py creates with a custom domain and an API origin (id and arn: the outputs the
    # engine gives stack policies).
    DISTRIBUTION: {
        "id": "E1",
        "arn": DISTRIBUTION_ARN,
        "enabled": True,
        "origins": [
            {"originId": "site", "domainName": "app-site.s3.us-east-1.amazonaws.com", "originAccessControlId": "oac-1"},
            {
                "originId": "api",
                "domainName": "api.example.com",
                "customOriginConfig": {
                    "httpPort": 80,
                    "httpsPort": 443,
                    "originProtocolPolicy": "https-only",
                    "originSslProtocols": ["TLSv1.2"],
                },
            },
        ],
        "defaultCacheBehavior": {"targetOriginId": "site", "viewerProtocolPolicy": "redirect-to-https"},
        "orderedCacheBehaviors": [
            {"pathPattern": "/api/*", "targetOriginId": "api", "viewerProtocolPolicy": "https-only"}
        ],
        "viewerCertificate": {
            "acmCertificateArn": f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/c",
            "minimumProtocolVersion": "TLSv1.2_2021",
            "sslSupportMethod": "sni-only",
        },
    },
    API_DOMAIN_NAME: {
        "domainName": "api.example.com",
        "domainNameConfiguration": {
            "certificateArn": f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/c",
            "endpointType": "REGIONAL",
            "securityPolicy": "TLS_1_2",
        },
    },
    AWSX_REPOSITORY: {
        "name": "app-x",
        "imageTagMutability": "IMMUTABLE",
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfigurations": [{"encryptionType": "KMS", "kmsKey": "arn:aws:kms:us-east-1:1:key/k"}],
    },
}


def with_props(type_: str, **changes: Any) -> dict[str, Any]:
    """The baseline of `type_` with props changed (a None value removes the prop)."""
    props = {**BASELINES[type_], **changes}
    return {k: v for k, v in props.items() if v is not None}


def compliant_stack() -> list[tuple[str, str, dict[str, Any]]]:
    """Every baseline plus what the stack policies need alongside them (lifecycle and backup policies)."""
    resources = [(type_, type_.rsplit(":", 1)[-1].lower(), props) for type_, props in BASELINES.items()]
    return [
        *resources,
        ("aws:ecr/lifecyclePolicy:LifecyclePolicy", "app-lifecycle", {"repository": "app", "policy": "{}"}),
        (
            "aws:efs/backupPolicy:BackupPolicy",
            "backup",
            {"fileSystemId": "fs-1", "backupPolicy": {"status": "ENABLED"}},
        ),
        *distribution_access_logs(),
    ]


def distribution_access_logs(name: str = "site-access") -> list[tuple[str, str, dict[str, Any]]]:
    """A v2 access log delivery of the baseline distribution (source, delivery)."""
    return [
        (
            "aws:cloudwatch/logDeliverySource:LogDeliverySource",
            "log-source",
            {"name": name, "logType": "ACCESS_LOGS", "resourceArn": DISTRIBUTION_ARN},
        ),
        (
            "aws:cloudwatch/logDelivery:LogDelivery",
            "log-delivery",
            {
                "deliverySourceName": name,
                "deliveryDestinationArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:delivery-destination:d",
            },
        ),
    ]
