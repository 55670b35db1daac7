"""The deploy role of one environment: everything its stack creates, and nothing another environment's stack owns.

Scoping, service by service (see docs/bootstrap.md for the table and what stays account-wide):
- by name (`<applicationName>-<env>` in the ARN): ECS, load balancers and listeners, RDS instances, ElastiCache
  groups, S3, SQS, SNS, Secrets Manager, SSM parameters, KMS aliases, Lambda, CodeBuild, ECR, log groups,
  EventBridge rules, EventBridge Scheduler schedules, dashboards, Route 53 records of the environment's Cloud Map
  domain, Pulumi state objects of the environment's stack;
- by the environment tag (`aws:ResourceTag`), where the ARN holds only an id: VPC networking, EFS, KMS keys, Cloud
  Map, target groups, RDS parameter and subnet groups, ElastiCache subnet groups, Application Auto Scaling targets
  (and their policies and scheduled actions), Auto Scaling groups (and their scheduled actions), CloudWatch
  alarms. Creating one needs the tag in the request, on the created resource type only
  (`EnvironmentScope.allow_create`);
- IAM: roles and policies under the environment's own path `<iamPath><env>/`, created only with the environment's
  permissions boundary; trust policies editable only there.
Denies on top: no action on a resource tagged with another environment, no request that tags a resource with
another environment, no removal of the environment tag, no edit of the bootstrap's own roles, policies or provider.
"""

from __future__ import annotations

from typing import Any

from .scope import AwsAccount, EnvironmentScope, Statement
from .settings import GITHUB_OIDC_HOST, BootstrapSettings

PolicyDocument = dict[str, Any]

# Services whose roles the platform passes, and whose service-linked roles its resources create.
PASS_ROLE_SERVICES = (
    "application-autoscaling.amazonaws.com",
    "codebuild.amazonaws.com",
    # The NAT instance's role, through its instance profile (AddRoleToInstanceProfile, the Auto Scaling group).
    "ec2.amazonaws.com",
    # Blue/green: the roles ECS shifts load balancer traffic with and invokes the deployment hook with.
    "ecs.amazonaws.com",
    "ecs-tasks.amazonaws.com",
    "events.amazonaws.com",
    "lambda.amazonaws.com",
    "monitoring.rds.amazonaws.com",
    # Office hours: the role EventBridge Scheduler stops and starts the database with.
    "scheduler.amazonaws.com",
    "vpc-flow-logs.amazonaws.com",
)
SERVICE_LINKED_ROLE_SERVICES = (
    "autoscaling.amazonaws.com",
    "ecs.amazonaws.com",
    "ecs.application-autoscaling.amazonaws.com",
    "elasticache.amazonaws.com",
    "elasticfilesystem.amazonaws.com",
    "elasticloadbalancing.amazonaws.com",
    # GuardDuty's detector (the owning environment's) creates AWSServiceRoleForAmazonGuardDuty on first use.
    "guardduty.amazonaws.com",
    "inspector2.amazonaws.com",
    # API Gateway's VPC links place their network interfaces with this role.
    "ops.apigateway.amazonaws.com",
    "rds.amazonaws.com",
)

_EC2_NETWORK_ACTIONS = (
    "ec2:*Vpc*",
    "ec2:*Subnet*",
    "ec2:*SecurityGroup*",
    "ec2:*Route*",
    "ec2:*InternetGateway*",
    "ec2:*NatGateway*",
    "ec2:*NetworkAcl*",
    "ec2:*NetworkInterface*",
    "ec2:*PrefixList*",
    "ec2:*DhcpOptions*",
    "ec2:*FlowLogs",
    "ec2:AssociateAddress",
    "ec2:DisassociateAddress",
    "ec2:ReleaseAddress",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    # The NAT instance's launch template, and launching it (its subnet and security group, both tagged).
    "ec2:*LaunchTemplate*",
    "ec2:RunInstances",
)
# What an instance launched from one of this environment's launch templates creates or uses (its instance, volume,
# network interface, and the AMI, which AWS or the image's publisher owns): the template itself must carry the
# environment tag (`VpcNetworking`), so these are only ever launched from the environment's own templates.
_LAUNCHED_RESOURCES = ("instance/*", "volume/*", "network-interface/*")
_AUTO_SCALING_ACTIONS = ("autoscaling:*",)
# Each create action on the resource type it creates (the parents it names need the environment tag).
_EC2_CREATES = {
    "ec2:AllocateAddress": ["elastic-ip/*"],
    "ec2:AuthorizeSecurityGroupEgress": ["security-group-rule/*"],
    "ec2:AuthorizeSecurityGroupIngress": ["security-group-rule/*"],
    "ec2:CreateDhcpOptions": ["dhcp-options/*"],
    "ec2:CreateFlowLogs": ["vpc-flow-log/*"],
    "ec2:CreateInternetGateway": ["internet-gateway/*"],
    "ec2:CreateLaunchTemplate": ["launch-template/*"],
    "ec2:CreateNatGateway": ["natgateway/*"],
    "ec2:CreateNetworkAcl": ["network-acl/*"],
    "ec2:CreateRouteTable": ["route-table/*"],
    "ec2:CreateSecurityGroup": ["security-group/*"],
    "ec2:CreateSubnet": ["subnet/*"],
    "ec2:CreateVpc": ["vpc/*"],
}
# Route 53 is global and its hosted zones carry no environment: Cloud Map creates and deletes the private zone of a
# namespace with the caller's permissions. Record changes are limited to the environment's domain below.
_CLOUD_MAP_ZONE_ACTIONS = (
    "route53:AssociateVPCWithHostedZone",
    "route53:ChangeTagsForResource",
    "route53:CreateHostedZone",
    "route53:DeleteHostedZone",
    "route53:DisassociateVPCFromHostedZone",
    "route53:GetChange",
    "route53:GetHostedZone",
    "route53:ListHostedZonesByName",
    "route53:ListResourceRecordSets",
    "route53:ListTagsForResource",
)
_KMS_KEY_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:Decrypt",
    "kms:Describe*",
    "kms:DisableKeyRotation",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:Get*",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ReEncrypt*",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateKeyDescription",
    # Aliases are authorized on the alias (by name, below) and on the key (here).
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:UpdateAlias",
)
_SCALABLE_TARGET_ACTIONS = (
    "application-autoscaling:DeleteScalingPolicy",
    "application-autoscaling:DeleteScheduledAction",
    "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:ListTagsForResource",
    "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:PutScheduledAction",
    "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:TagResource",
    "application-autoscaling:UntagResource",
)
# What the provider calls on an EventBridge Scheduler schedule: create, read back, update, delete.
_SCHEDULE_ACTIONS = (
    "scheduler:CreateSchedule",
    "scheduler:DeleteSchedule",
    "scheduler:GetSchedule",
    "scheduler:UpdateSchedule",
)
_KMS_GRANT_ACTIONS = ("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant")
_SSM_PARAMETER_ACTIONS = (
    "ssm:AddTagsToResource",
    "ssm:DeleteParameter",
    "ssm:DeleteParameters",
    "ssm:GetParameter",
    "ssm:GetParameterHistory",
    "ssm:GetParameters",
    "ssm:ListTagsForResource",
    "ssm:PutParameter",
    "ssm:RemoveTagsFromResource",
)
_ECR_PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:DescribeImages",
    "ecr:DescribeRepositories",
    "ecr:GetDownloadUrlForLayer",
    "ecr:ListImages",
)
# Tagging a resource that has no environment tag yet: how a resource gets its tag when the service tags it in a
# second call after creating it. A resource already tagged (with any environment) needs its own environment's tag.
_TAG_ACTIONS = (
    "ec2:CreateTags",
    "elasticache:AddTagsToResource",
    "elasticfilesystem:TagResource",
    "elasticloadbalancing:AddTags",
    "kms:TagResource",
    "rds:AddTagsToResource",
    "servicediscovery:TagResource",
)
_UNTAG_ACTIONS = (
    "application-autoscaling:UntagResource",
    "autoscaling:DeleteTags",
    "cloudwatch:UntagResource",
    "ec2:DeleteTags",
    "ecr:UntagResource",
    "ecs:UntagResource",
    "elasticache:RemoveTagsFromResource",
    "elasticfilesystem:UntagResource",
    "elasticloadbalancing:RemoveTags",
    "events:UntagResource",
    "iam:UntagInstanceProfile",
    "iam:UntagPolicy",
    "iam:UntagRole",
    "kms:UntagResource",
    "lambda:UntagResource",
    "logs:UntagLogGroup",
    "logs:UntagResource",
    "rds:RemoveTagsFromResource",
    "secretsmanager:UntagResource",
    "servicediscovery:UntagResource",
    "sns:UntagResource",
    "sqs:UntagQueue",
    "ssm:RemoveTagsFromResource",
)

# Roles the platform creates must carry the environment's boundary on every one of these calls.
_BOUNDED_ROLE_ACTIONS = (
    "iam:AttachRolePolicy",
    "iam:CreateRole",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
)
_ROLE_LIFECYCLE_ACTIONS = (
    "iam:DeleteRole",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:ListAttachedRolePolicies",
    "iam:ListInstanceProfilesForRole",
    "iam:ListRolePolicies",
    "iam:ListRoleTags",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateRole",
    "iam:UpdateRoleDescription",
)
_MANAGED_POLICY_ACTIONS = (
    "iam:CreatePolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicy",
    "iam:DeletePolicyVersion",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:ListPolicyVersions",
    "iam:TagPolicy",
    "iam:UntagPolicy",
)

# Instance profiles (the NAT instance's), under the environment's path like its roles.
_INSTANCE_PROFILE_ACTIONS = (
    "iam:AddRoleToInstanceProfile",
    "iam:CreateInstanceProfile",
    "iam:DeleteInstanceProfile",
    "iam:GetInstanceProfile",
    "iam:ListInstanceProfileTags",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:TagInstanceProfile",
    "iam:UntagInstanceProfile",
)

# Every group deploy_permissions returns: the bootstrap attaches each as one managed policy of the deploy role.
DEPLOY_POLICY_GROUPS = ("compute", "network", "data", "operations", "edge", "schedules", "iam")


def deploy_permissions(
    settings: BootstrapSettings, account: AwsAccount, environment: str, boundary_arn: str
) -> dict[str, PolicyDocument]:
    """One environment's deploy role, split into managed policies that each stay under IAM's size limit."""
    scope = EnvironmentScope(settings, account, environment)
    groups = {
        "compute": _compute(scope),
        "network": _network(scope),
        "data": [*_data(scope), *_guardduty_detector(scope)],
        "operations": [*_operations(scope), *_secrets(scope)],
        "edge": _console(scope),
        "schedules": _schedules(scope),
        "iam": [*_iam(scope, boundary_arn), *_guards(scope, boundary_arn)],
    }
    return {name: _document(*statements) for name, statements in groups.items()}


def _compute(scope: EnvironmentScope) -> list[Statement]:
    p = scope.prefix
    statements = [
        scope.allow(
            "Ecs",
            ("ecs:*",),
            scope.arns("ecs", f"cluster/{p}", f"service/{p}/*", f"task/{p}/*", f"task-definition/{p}-*"),
        ),
        # Reads, and deregistering a task definition revision: these take no resource ARN.
        scope.allow("EcsAccount", ("ecs:Describe*", "ecs:List*", "ecs:DeregisterTaskDefinition"), "*"),
        scope.allow(
            "LoadBalancers",
            ("elasticloadbalancing:*",),
            scope.arns(
                "elasticloadbalancing",
                f"loadbalancer/app/{p}-*",
                f"listener/app/{p}-*",
                f"listener-rule/app/{p}-*",
            ),
        ),
        scope.allow_tagged("TargetGroups", ("elasticloadbalancing:*",)),
        *scope.allow_create(
            "NewTargetGroup", {"elasticloadbalancing:CreateTargetGroup": ["targetgroup/*"]}, "elasticloadbalancing"
        ),
        scope.allow("LoadBalancingReads", ("elasticloadbalancing:Describe*",), "*"),
        scope.allow("Ecr", ("ecr:*",), scope.arns("ecr", f"repository/{p}-*")),
        scope.allow(
            "EcrAccount",
            ("ecr:DescribeRegistry", "ecr:GetAuthorizationToken", "ecr:GetRegistryScanningConfiguration"),
            "*",
        ),
        scope.allow_tagged("Efs", ("elasticfilesystem:*",)),
        *scope.allow_create("NewFileSystem", {"elasticfilesystem:CreateFileSystem": ["*"]}, "elasticfilesystem"),
        scope.allow("EfsReads", ("elasticfilesystem:Describe*",), "*"),
        # Scalable targets are named by id: the environment tag scopes them (created with it, changed only with it;
        # a scaling policy is authorized on its target). Describe calls take no resource.
        scope.allow_tagged("ScalableTargets", _SCALABLE_TARGET_ACTIONS),
        *scope.allow_create(
            "NewScalableTarget",
            {
                "application-autoscaling:RegisterScalableTarget": ["scalable-target/*"],
                "application-autoscaling:TagResource": ["scalable-target/*"],
            },
            "application-autoscaling",
        ),
        scope.allow("ScalableTargetReads", ("application-autoscaling:Describe*",), "*"),
        scope.allow_tagged("CloudMap", ("servicediscovery:*",)),
        *scope.allow_create(
            "NewCloudMap",
            {"servicediscovery:CreatePrivateDnsNamespace": ["*"], "servicediscovery:CreateService": ["service/*"]},
            "servicediscovery",
        ),
        scope.allow("CloudMapReads", ("servicediscovery:Get*", "servicediscovery:List*"), "*"),
        scope.allow("CloudMapZones", _CLOUD_MAP_ZONE_ACTIONS, "*", global_service=True),
        scope.allow(
            "CloudMapRecords",
            ("route53:ChangeResourceRecordSets",),
            f"arn:{scope.account.partition}:route53:::hostedzone/*",
            {
                "ForAllValues:StringLike": {
                    "route53:ChangeResourceRecordSetsNormalizedRecordNames": [f"{p}.local", f"*.{p}.local"]
                }
            },
            {"Null": {"route53:ChangeResourceRecordSetsNormalizedRecordNames": "false"}},
            global_service=True,
        ),
    ]
    promote_from = _promotion_repositories(scope)
    if promote_from:
        # Promotion copies the image by digest from the previous environment's repositories: read only. In another
        # account, that repository's policy must also name this role (ImageScanningArgs.pull_principals).
        statements.append(scope.allow("PromoteFrom", _ECR_PULL_ACTIONS, promote_from))
    if scope.environment == scope.settings.registry_owner:
        # The pull-through cache rule (`images.managePullThroughCache`) is one per prefix, account and region, like
        # registry scanning: the same environment owns it. The action takes no resource ARN.
        statements.append(
            scope.allow(
                "PullThroughCacheRule",
                (
                    "ecr:CreatePullThroughCacheRule",
                    "ecr:DeletePullThroughCacheRule",
                    "ecr:DescribePullThroughCacheRules",
                    "ecr:UpdatePullThroughCacheRule",
                ),
                "*",
            )
        )
        # Registry scanning is one configuration per account and region: only the owning stack's role changes it.
        statements.append(
            scope.allow(
                "RegistryScanning",
                (
                    "ecr:PutRegistryScanningConfiguration",
                    "inspector2:BatchGetAccountStatus",
                    "inspector2:Enable",
                    "inspector2:ListAccountPermissions",
                ),
                "*",
            )
        )
    return statements


def _guardduty_detector(scope: EnvironmentScope) -> list[Statement]:
    """GuardDuty's detector is one per account and region (`runtimeSecurity.manageDetector`), like registry
    scanning, and owned by the same environment; detectors are named by an id AWS picks."""
    if scope.environment != scope.settings.registry_owner:
        return []
    return [
        scope.allow("NewGuardDutyDetector", ("guardduty:CreateDetector", "guardduty:ListDetectors"), "*"),
        scope.allow(
            "GuardDutyDetector",
            (
                "guardduty:DeleteDetector",
                "guardduty:GetDetector",
                "guardduty:ListTagsForResource",
                "guardduty:TagResource",
                "guardduty:UntagResource",
                "guardduty:UpdateDetector",
            ),
            scope.arns("guardduty", "detector/*"),
        ),
    ]


def _http_apis(scope: EnvironmentScope) -> list[Statement]:
    """API Gateway HTTP APIs, VPC links and custom domains are named by id or domain, not by environment: created
    only with the environment's tag, then changed only while they carry it (an API's routes, integrations, stages
    and authorizers are evaluated with their API's tags)."""
    partition = scope.account.partition

    def paths(*parts: str) -> list[str]:
        return [f"arn:{partition}:apigateway:*::{part}" for part in parts]

    methods = ("apigateway:DELETE", "apigateway:GET", "apigateway:PATCH", "apigateway:POST", "apigateway:PUT")
    return [
        scope.allow(
            "NewHttpApis", ("apigateway:POST",), paths("/apis", "/vpclinks", "/domainnames"), scope.tagging_request()
        ),
        scope.allow("HttpApis", methods, paths("/apis/*", "/vpclinks/*", "/domainnames/*", "/tags/*"), scope.tagged()),
    ]


_DISTRIBUTION_ACTIONS = (
    "cloudfront:AllowVendedLogDeliveryForResource",
    "cloudfront:CreateInvalidation",
    "cloudfront:DeleteDistribution",
    "cloudfront:GetDistribution",
    "cloudfront:GetDistributionConfig",
    "cloudfront:ListTagsForResource",
    "cloudfront:TagResource",
    "cloudfront:UntagResource",
    "cloudfront:UpdateDistribution",
)
_FUNCTION_ACTIONS = (
    "cloudfront:DeleteFunction",
    "cloudfront:DescribeFunction",
    "cloudfront:GetFunction",
    "cloudfront:PublishFunction",
    "cloudfront:UpdateFunction",
)
_EDGE_POLICY_ACTIONS = (
    *tuple(
        f"cloudfront:{verb}{kind}"
        for kind in ("CachePolicy", "ResponseHeadersPolicy", "OriginAccessControl")
        for verb in ("Delete", "Get", "Update")
    ),
    "cloudfront:GetCachePolicyConfig",
    "cloudfront:GetOriginAccessControlConfig",
    "cloudfront:GetResponseHeadersPolicyConfig",
)
# CloudFront's Create* actions take no resource ARN (Service Authorization Reference): only `*`.
_EDGE_CREATES = (
    "cloudfront:CreateCachePolicy",
    "cloudfront:CreateFunction",
    "cloudfront:CreateOriginAccessControl",
    "cloudfront:CreateResponseHeadersPolicy",
)
_LOG_DELIVERY_ACTIONS = (
    "logs:CreateDelivery",
    "logs:DeleteDelivery",
    "logs:DeleteDeliveryDestination",
    "logs:DeleteDeliverySource",
    "logs:GetDelivery",
    "logs:GetDeliveryDestination",
    "logs:GetDeliverySource",
    "logs:ListTagsForResource",
    "logs:PutDeliveryDestination",
    "logs:PutDeliverySource",
    "logs:TagResource",
    "logs:UntagResource",
    "logs:UpdateDeliveryConfiguration",
)
# CloudFront's vended access logs are delivered through CloudWatch Logs in us-east-1, whatever the stack's region.
_CLOUDFRONT_LOGS_REGION = "us-east-1"


def _console(scope: EnvironmentScope) -> list[Statement]:
    """The web console (components/static_site.py): CloudFront is global (ARNs without a region). Distributions are
    named by id: created only with the environment's tag, changed only while they carry it. Functions are named
    by the stack; cache policies, response headers policies and origin access controls take no tags and are named
    by id, so any of the account's. Log deliveries join only this environment's sources and destinations."""
    partition, account_id, p = scope.account.partition, scope.account.account_id, scope.prefix

    def cloudfront(*parts: str) -> list[str]:
        return [f"arn:{partition}:cloudfront::{account_id}:{part}" for part in parts]

    def logs(*parts: str) -> list[str]:
        return [f"arn:{partition}:logs:{_CLOUDFRONT_LOGS_REGION}:{account_id}:{part}" for part in parts]

    in_logs_region = {"StringEquals": {"aws:RequestedRegion": _CLOUDFRONT_LOGS_REGION}}
    return [
        scope.allow(
            "NewDistributions", ("cloudfront:CreateDistribution",), "*", scope.tagging_request(), global_service=True
        ),
        scope.allow(
            "TagNewDistributions",
            ("cloudfront:TagResource",),
            cloudfront("distribution/*"),
            scope.tagging_request(),
            global_service=True,
        ),
        scope.allow("NewEdgeConfiguration", _EDGE_CREATES, "*", global_service=True),
        scope.allow(
            "Distributions", _DISTRIBUTION_ACTIONS, cloudfront("distribution/*"), scope.tagged(), global_service=True
        ),
        scope.allow("ConsoleFunctions", _FUNCTION_ACTIONS, cloudfront(f"function/{p}-*"), global_service=True),
        scope.allow(
            "EdgePolicies",
            _EDGE_POLICY_ACTIONS,
            cloudfront("cache-policy/*", "response-headers-policy/*", "origin-access-control/*"),
            global_service=True,
        ),
        scope.allow("CloudFrontReads", ("cloudfront:List*",), "*", global_service=True),
        scope.allow(
            "ConsoleLogDelivery",
            _LOG_DELIVERY_ACTIONS,
            logs(f"delivery-source:{p}-*", f"delivery-destination:{p}-*", "delivery:*"),
            in_logs_region,
            global_service=True,
        ),
        scope.allow("LogDeliveryReads", ("logs:Describe*",), "*", in_logs_region, global_service=True),
    ]


def _schedules(scope: EnvironmentScope) -> list[Statement]:
    """Office hours' EventBridge Scheduler schedules (components/office_hours.py) take no tags: by name, in the
    default group (`schedule/<group>/<name>`, Service Authorization Reference). Their own policy: the others are
    near IAM's size limit."""
    return [scope.allow("Schedules", _SCHEDULE_ACTIONS, scope.arns("scheduler", f"schedule/default/{scope.prefix}-*"))]


def _promotion_repositories(scope: EnvironmentScope) -> list[str]:
    """ECR repositories the environment promotes images from: the previous environment of this bootstrap (same
    account), or, for the first environment, `promoteFrom` (the previous environment's account)."""
    settings, account = scope.settings, scope.account
    source = settings.promotion_source(scope.environment)
    if source is not None:
        return scope.arns("ecr", f"repository/{settings.name_prefix(source)}-*")
    if settings.promote_from is not None:
        remote = settings.promote_from
        return [f"arn:{account.partition}:ecr:*:{remote.account}:repository/{remote.prefix}-*"]
    return []


def _network(scope: EnvironmentScope) -> list[Statement]:
    partition, account_id = scope.account.partition, scope.account.account_id
    from_own_template = {"ArnLike": {"ec2:LaunchTemplate": f"arn:{partition}:ec2:*:{account_id}:launch-template/*"}}
    return [
        scope.allow_tagged("VpcNetworking", _EC2_NETWORK_ACTIONS),
        *scope.allow_create("NewNetwork", _EC2_CREATES, "ec2"),
        scope.allow(
            "LaunchFromOwnTemplates",
            ("ec2:RunInstances",),
            [*scope.arns("ec2", *_LAUNCHED_RESOURCES), f"arn:{partition}:ec2:*::image/*"],
            from_own_template,
        ),
        # Auto Scaling groups (the NAT instance's) are named by the provider, without the environment: the tag
        # scopes them. Provider default tags do not reach a group; the platform tags it itself.
        scope.allow_tagged("AutoScalingGroups", _AUTO_SCALING_ACTIONS),
        *scope.allow_create(
            "NewAutoScalingGroup",
            {
                "autoscaling:CreateAutoScalingGroup": ["autoScalingGroup:*:autoScalingGroupName/*"],
                "autoscaling:CreateOrUpdateTags": ["autoScalingGroup:*:autoScalingGroupName/*"],
            },
            "autoscaling",
        ),
        scope.allow("AutoScalingReads", ("autoscaling:Describe*",), "*"),
        # EFS mount targets create their network interface with the caller's permissions, untagged; the subnet and
        # security groups it names still need the environment tag.
        scope.allow("MountTargetInterfaces", ("ec2:CreateNetworkInterface",), scope.arns("ec2", "network-interface/*")),
        scope.allow("NetworkReads", ("ec2:Describe*",), "*"),
        *_http_apis(scope),
        scope.allow(
            "TagNewResources",
            _TAG_ACTIONS,
            "*",
            scope.tagging_request(),
            {"Null": {f"aws:ResourceTag/{scope.tag_key}": "true"}},
        ),
    ]


def _data(scope: EnvironmentScope) -> list[Statement]:
    p = scope.prefix
    buckets = scope.account.s3_arn(f"{p}-*")
    statements = [
        scope.allow("Rds", ("rds:*",), scope.arns("rds", f"db:{p}-*", f"snapshot:{p}-*", f"cluster:{p}-*")),
        scope.allow_tagged("RdsGroups", ("rds:*",)),
        *scope.allow_create(
            "NewRdsGroup",
            {"rds:CreateDBParameterGroup": ["pg:*"], "rds:CreateDBSubnetGroup": ["subgrp:*"]},
            "rds",
        ),
        # An instance without an option group uses AWS's default one, which no environment owns.
        scope.allow(
            "RdsDefaultOptionGroup",
            ("rds:CreateDBInstance", "rds:ModifyDBInstance"),
            scope.arns("rds", "og:default:*"),
        ),
        scope.allow("RdsReads", ("rds:Describe*", "rds:ListTagsForResource"), "*"),
        scope.allow(
            "ElastiCache",
            ("elasticache:*",),
            scope.arns(
                "elasticache", f"replicationgroup:{p}-*", f"cluster:{p}-*", f"snapshot:{p}-*", "parametergroup:default*"
            ),
        ),
        scope.allow_tagged("ElastiCacheGroups", ("elasticache:*",)),
        *scope.allow_create("NewCacheGroup", {"elasticache:CreateCacheSubnetGroup": ["subnetgroup:*"]}, "elasticache"),
        scope.allow("ElastiCacheReads", ("elasticache:Describe*", "elasticache:List*"), "*"),
        scope.allow("Sqs", ("sqs:*",), scope.arns("sqs", f"{p}-*")),
        scope.allow("Sns", ("sns:*",), scope.arns("sns", f"{p}-*")),
        scope.allow("QueueAndTopicLists", ("sqs:ListQueues", "sns:ListTopics", "sns:ListSubscriptions"), "*"),
        scope.allow_tagged("KmsKeys", _KMS_KEY_ACTIONS),
        scope.allow(
            "KmsAliases", ("kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"), scope.arns("kms", f"alias/{p}-*")
        ),
        *scope.allow_create("NewKmsKey", {"kms:CreateKey": ["*"]}, "kms"),
        scope.allow("KmsReads", ("kms:ListAliases", "kms:ListKeys"), "*"),
        scope.allow(
            "KmsGrantsForAwsServices",
            _KMS_GRANT_ACTIONS,
            "*",
            scope.tagged(),
            {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        # kms:GrantIsForAWSResource is not in RetireGrant's request: ECR and EFS retire their grants on the keys
        # they were given.
        scope.allow("KmsRetireGrants", ("kms:RetireGrant",), "*", scope.tagged()),
        scope.allow("PlatformBuckets", ("s3:*",), [buckets, f"{buckets}/*"], global_service=True),
        scope.allow("ListBuckets", ("s3:GetBucketLocation", "s3:ListAllMyBuckets"), "*", global_service=True),
    ]
    return statements + _state(scope)


def _secrets(scope: EnvironmentScope) -> list[Statement]:
    p = scope.prefix
    return [
        scope.allow("Secrets", ("secretsmanager:*",), scope.arns("secretsmanager", f"secret:{p}/*", f"secret:{p}-*")),
        # RDS creates the master user secret (`rds!db-<id>`, no environment in its name) in the caller's name; the
        # secret is then managed by RDS, and its value is not readable with these actions.
        scope.allow(
            "RdsManagedSecrets",
            ("secretsmanager:CreateSecret", "secretsmanager:DescribeSecret", "secretsmanager:TagResource"),
            scope.arns("secretsmanager", "secret:rds!*"),
        ),
        scope.allow("SecretsReads", ("secretsmanager:GetRandomPassword", "secretsmanager:ListSecrets"), "*"),
        scope.allow("SsmParameters", _SSM_PARAMETER_ACTIONS, scope.arns("ssm", f"parameter/{p}/*", f"parameter/{p}-*")),
        scope.allow("SsmReads", ("ssm:DescribeParameters",), "*"),
    ]


def _state(scope: EnvironmentScope) -> list[Statement]:
    """A self-managed backend (project-scoped layout, `.pulumi/<kind>/<project>/<stack>...`): this environment's
    stack only (stack name = environment), plus the backend's `meta.yaml` to read. Its own secrets provider key."""
    settings, account = scope.settings, scope.account
    statements: list[Statement] = []
    if settings.state_bucket:
        bucket = account.s3_arn(settings.state_bucket)
        statements += [
            scope.allow(
                "ListStateBucket",
                ("s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:ListBucket"),
                bucket,
                global_service=True,
            ),
            scope.allow("ReadStateMeta", ("s3:GetObject",), f"{bucket}/.pulumi/meta.yaml", global_service=True),
            scope.allow(
                "WriteState",
                ("s3:DeleteObject", "s3:GetObject", "s3:PutObject"),
                state_objects(settings, bucket, scope.environment),
                global_service=True,
            ),
        ]
    key = settings.secrets_key(scope.environment)
    if key:
        statements.append(
            scope.allow("StackSecrets", ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"), key, global_service=True)
        )
    return statements


def state_objects(settings: BootstrapSettings, bucket_arn: str, stack: str) -> list[str]:
    """The objects of one stack in a self-managed backend: its checkpoint (`<stack>.json`, `.json.bak`, `.json.gz`,
    ...), history, backups and lock."""
    project = settings.pulumi_project
    return [
        f"{bucket_arn}/.pulumi/stacks/{project}/{stack}.json*",
        *(f"{bucket_arn}/.pulumi/{kind}/{project}/{stack}/*" for kind in ("history", "backups", "locks")),
    ]


def _operations(scope: EnvironmentScope) -> list[Statement]:
    p, partition, account_id = scope.prefix, scope.account.partition, scope.account.account_id
    log_groups = [
        f"/ecs/{p}/*",
        f"/vpc/{p}/*",
        f"/aws/elasticache/{p}/*",
        f"/aws/codebuild/{p}-*",
        f"/aws/lambda/{p}-*",
        f"/aws/rds/instance/{p}-*",
        f"/aws/apigateway/{p}-*",  # HTTP API access logs
    ]
    alarms = scope.arns("cloudwatch", "alarm:*")
    alarm_actions = {
        "ForAllValues:StringLike": {
            "cloudwatch:AlarmActions": [
                f"arn:{partition}:sns:*:{account_id}:{p}-*",
                f"arn:{partition}:autoscaling:*:{account_id}:scalingPolicy:*:resource/ecs/service/{p}/*",
            ]
        }
    }
    return [
        scope.allow("Dashboards", ("cloudwatch:*",), f"arn:{partition}:cloudwatch::{account_id}:dashboard/{p}-*"),
        # Alarms are auto-named (no environment in the name): the environment tag scopes them. PutMetricAlarm
        # creates (the tag in the request) or overwrites (the alarm's tag; tags in the request are then ignored),
        # and may only point the alarm at this environment's topics or ECS scaling policies.
        scope.allow("PutAlarms", ("cloudwatch:PutMetricAlarm",), alarms, scope.tagging_request(), alarm_actions),
        scope.allow("ChangeAlarms", ("cloudwatch:PutMetricAlarm",), alarms, scope.tagged(), alarm_actions),
        scope.allow("TagNewAlarms", ("cloudwatch:TagResource",), alarms, scope.tagging_request()),
        scope.allow(
            "Alarms",
            (
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DisableAlarmActions",
                "cloudwatch:EnableAlarmActions",
                "cloudwatch:ListTagsForResource",
                "cloudwatch:TagResource",
            ),
            alarms,
            scope.tagged(),
        ),
        scope.allow("AlarmReads", ("cloudwatch:DescribeAlarms",), "*"),
        scope.allow(
            "MetricReads",
            ("cloudwatch:Describe*", "cloudwatch:Get*", "cloudwatch:List*"),
            "*",
        ),
        scope.allow(
            "Logs",
            ("logs:*",),
            [arn for group in log_groups for arn in scope.arns("logs", f"log-group:{group}", f"log-group:{group}:*")],
        ),
        # Vended log deliveries (ElastiCache logs) and the account's log resource policy have no resource ARN.
        scope.allow(
            "LogDeliveries",
            (
                "logs:CreateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:DescribeLogGroups",
                "logs:DescribeResourcePolicies",
                "logs:GetLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:UpdateLogDelivery",
            ),
            "*",
        ),
        scope.allow("Events", ("events:*",), scope.arns("events", f"rule/{p}-*")),
        scope.allow("EventReads", ("events:Describe*", "events:List*"), "*"),
        scope.allow("Lambda", ("lambda:*",), scope.arns("lambda", f"function:{p}-*")),
        scope.allow("LambdaReads", ("lambda:GetAccountSettings", "lambda:ListFunctions"), "*"),
        scope.allow("CodeBuild", ("codebuild:*",), scope.arns("codebuild", f"project/{p}-*", f"report-group/{p}-*")),
        scope.allow("CodeBuildReads", ("codebuild:List*",), "*"),
        scope.allow("WhoAmI", ("sts:GetCallerIdentity", "tag:GetResources"), "*", global_service=True),
    ]


def _iam(scope: EnvironmentScope, boundary_arn: str) -> list[Statement]:
    settings, account = scope.settings, scope.account
    path = settings.role_path(scope.environment)
    roles = account.iam_arn(f"role{path}*")
    with_boundary = {"StringEquals": {"iam:PermissionsBoundary": boundary_arn}}
    return [
        scope.allow("CreateRolesWithBoundary", _BOUNDED_ROLE_ACTIONS, roles, with_boundary, global_service=True),
        scope.allow("ManageRoles", _ROLE_LIFECYCLE_ACTIONS, roles, global_service=True),
        scope.allow(
            "PassRoles",
            ("iam:PassRole",),
            roles,
            {"StringEquals": {"iam:PassedToService": list(PASS_ROLE_SERVICES)}},
            global_service=True,
        ),
        scope.allow("ManagePolicies", _MANAGED_POLICY_ACTIONS, account.iam_arn(f"policy{path}*"), global_service=True),
        scope.allow(
            "ManageInstanceProfiles",
            _INSTANCE_PROFILE_ACTIONS,
            account.iam_arn(f"instance-profile{path}*"),
            global_service=True,
        ),
        scope.allow(
            "ReadAwsManagedPolicies",
            ("iam:GetPolicy", "iam:GetPolicyVersion"),
            f"arn:{account.partition}:iam::aws:policy/*",
            global_service=True,
        ),
        scope.allow(
            "ServiceLinkedRoles",
            ("iam:CreateServiceLinkedRole",),
            account.iam_arn("role/aws-service-role/*"),
            {"StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLE_SERVICES)}},
            global_service=True,
        ),
    ]


def _guards(scope: EnvironmentScope, boundary_arn: str) -> list[Statement]:
    """Explicit denies: they hold whatever another statement (or a later policy) allows."""
    settings, account, key = scope.settings, scope.account, scope.tag_key
    path = settings.role_path(scope.environment)
    return [
        {
            "Sid": "ProtectBootstrap",
            "Effect": "Deny",
            "Action": "iam:*",
            "Resource": [
                account.iam_arn(f"role{settings.ci_iam_path}*"),
                account.iam_arn(f"policy{settings.ci_iam_path}*"),
                account.iam_arn(f"oidc-provider/{GITHUB_OIDC_HOST}"),
            ],
        },
        # IAM has no condition key on a trust policy's principals: a trust policy may only change on this
        # environment's own roles (whose boundary caps what any principal gets from them).
        {
            "Sid": "TrustEditsOnlyOnOwnRoles",
            "Effect": "Deny",
            "Action": "iam:UpdateAssumeRolePolicy",
            "NotResource": account.iam_arn(f"role{path}*"),
        },
        {
            "Sid": "RolesOnlyWithTheBoundary",
            "Effect": "Deny",
            "Action": ["iam:CreateRole", "iam:PutRolePermissionsBoundary"],
            "Resource": "*",
            "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": boundary_arn}},
        },
        {"Sid": "KeepBoundaries", "Effect": "Deny", "Action": "iam:DeleteRolePermissionsBoundary", "Resource": "*"},
        {
            "Sid": "OtherEnvironmentsResources",
            "Effect": "Deny",
            "NotAction": sorted(_ECR_PULL_ACTIONS),
            "Resource": "*",
            "Condition": {
                "Null": {f"aws:ResourceTag/{key}": "false"},
                "StringNotEquals": {f"aws:ResourceTag/{key}": scope.environment},
            },
        },
        {
            "Sid": "OtherEnvironmentsTag",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "Null": {f"aws:RequestTag/{key}": "false"},
                "StringNotEquals": {f"aws:RequestTag/{key}": scope.environment},
            },
        },
        {
            "Sid": "KeepEnvironmentTag",
            "Effect": "Deny",
            "Action": sorted(_UNTAG_ACTIONS),
            "Resource": "*",
            "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": [key]}},
        },
    ]


def _document(*statements: Statement) -> PolicyDocument:
    return {"Version": "2012-10-17", "Statement": list(statements)}
