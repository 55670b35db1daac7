"""The classes of misses of issue 15, each with failing and passing programs written the way teams write them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, Severity

from policy.rules import ALL_POLICIES
from policy.rules.base import container_definitions
from policy.rules.lb import minimum_tls_minor
from tests.policy import baselines as b
from tests.policy.baselines import ACCOUNT, DIGEST, container, task_definition, with_props
from tests.policy.helpers import run_policy, run_stack_policy

ROOT = "aws-ecs-taskdefinition-disallow-root-user"
PRIVILEGED = "aws-ecs-taskdefinition-disallow-privileged-containers"
CAPABILITIES = "aws-ecs-taskdefinition-disallow-added-capabilities"
READONLY = "aws-ecs-taskdefinition-enable-readonly-root-filesystem"
LOGGING = "aws-ecs-taskdefinition-configure-logging"
MUTABLE = "aws-ecs-taskdefinition-disallow-mutable-image-tags"
LAMBDA_MUTABLE = "aws-lambda-function-disallow-mutable-image-tags"
PUBLIC_IP = "aws-ecs-service-disallow-public-ip"
REPO = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
ECS_POLICIES = [
    p.name
    for p in ALL_POLICIES
    if p.name.startswith("aws-ecs-taskdefinition-") and isinstance(p, ResourceValidationPolicy)
]


def pascal_case(value: Any) -> Any:
    """The same JSON with every struct key spelled PascalCase, as CloudFormation-minded teams write it."""
    if isinstance(value, dict):
        free_maps = ("options", "dockerLabels")
        return {k[0].upper() + k[1:]: (v if k in free_maps else pascal_case(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal_case(v) for v in value]
    return value


def raw_task(*containers: dict[str, Any]) -> dict[str, Any]:
    return with_props(b.TASK_DEFINITION, containerDefinitions=json.dumps(list(containers)))


# --- Class 1: values read the way the provider and the runtime read them ------------------------------------


@pytest.mark.parametrize("user", ["00", "000:000", "+0", " 0 ", "0\t", "root", "ROOT:1000", ":1000", "0:1000"])
def test_every_spelling_of_uid_0_is_root(user: str) -> None:
    assert run_policy(ROOT, b.TASK_DEFINITION, task_definition(container(user=user))).messages == [
        f"container 'app' runs as root (user '{user}')"
    ]


@pytest.mark.parametrize("user", ["1000", "01000", "10", "1000:0", "nobody", "app:app", "65532:65532"])
def test_non_zero_users_are_not_root(user: str) -> None:
    assert run_policy(ROOT, b.TASK_DEFINITION, task_definition(container(user=user))).messages == []


def test_root_user_names_are_configurable() -> None:
    props = task_definition(container(user="toor"))
    assert run_policy(ROOT, b.TASK_DEFINITION, props).messages == []
    assert run_policy(ROOT, b.TASK_DEFINITION, props, {"rootUserNames": ["root", "toor"]}).messages == [
        "container 'app' runs as root (user 'toor')"
    ]


@pytest.mark.parametrize("spell", [pascal_case, lambda c: {k.upper(): v for k, v in c.items()}])
def test_insecure_containers_are_flagged_whatever_the_key_casing(spell: Any) -> None:
    insecure = container(user="0", privileged=True, readonlyRootFilesystem=False, logConfiguration=None)
    insecure["linuxParameters"] = {"capabilities": {"add": ["SYS_ADMIN"]}}
    props = raw_task(spell(insecure))
    for policy in (ROOT, PRIVILEGED, CAPABILITIES, READONLY, LOGGING):
        assert run_policy(policy, b.TASK_DEFINITION, props).messages, policy


def test_a_secure_pascal_case_definition_passes_every_ecs_rule() -> None:
    props = raw_task(pascal_case(container(linuxParameters={"capabilities": {"drop": ["ALL"]}})))
    assert {p: run_policy(p, b.TASK_DEFINITION, props, stack="prod").messages for p in ECS_POLICIES} == {
        p: [] for p in ECS_POLICIES
    }


def test_a_later_duplicate_key_wins_as_in_go() -> None:
    props = raw_task({**container(), "Privileged": True})
    assert run_policy(PRIVILEGED, b.TASK_DEFINITION, props).messages == ["container 'app' is privileged"]
    # AND duplicate objects merge, so a capability added in one spelling survives the other
    twice = {**container(), "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}, "LinuxParameters": {}}
    assert len(run_policy(CAPABILITIES, b.TASK_DEFINITION, raw_task(twice)).messages) == 1


def test_the_reader_normalises_nested_keys_but_keeps_free_form_maps() -> None:
    definitions = json.dumps([{"NAME": "a", "LogConfiguration": {"LogDriver": "awslogs", "Options": {"Mode": "x"}}}])
    [read] = container_definitions({"containerDefinitions": definitions})
    assert read["name"] == "a"
    assert read["logConfiguration"]["logDriver"] == "awslogs"
    assert read["logConfiguration"]["options"] == {"Mode": "x"}


# --- Class 2: risk carried by fields nobody read ------------------------------------------------------------


@pytest.mark.parametrize("capability", ["SYS_ADMIN", "ALL", "NET_ADMIN", "SYS_PTRACE", "cap_sys_module"])
def test_added_capabilities_are_flagged(capability: str) -> None:
    props = task_definition(container(linuxParameters={"capabilities": {"add": [capability]}}))
    assert len(run_policy(CAPABILITIES, b.TASK_DEFINITION, props).messages) == 1


def test_dropped_capabilities_and_an_allowed_sys_ptrace_pass() -> None:
    dropped = task_definition(container(linuxParameters={"capabilities": {"drop": ["ALL"]}}))
    assert run_policy(CAPABILITIES, b.TASK_DEFINITION, dropped).messages == []
    ptrace = task_definition(container(linuxParameters={"capabilities": {"add": ["SYS_PTRACE"]}}))
    assert run_policy(CAPABILITIES, b.TASK_DEFINITION, ptrace, {"allowedCapabilities": ["SYS_PTRACE"]}).messages == []


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ("aws-ecs-taskdefinition-disallow-host-pid-mode", "pidMode"),
        ("aws-ecs-taskdefinition-disallow-host-ipc-mode", "ipcMode"),
        ("aws-ecs-taskdefinition-disallow-host-network-mode", "networkMode"),
    ],
)
def test_host_namespaces_fail_and_task_namespaces_pass(policy: str, key: str) -> None:
    assert len(run_policy(policy, b.TASK_DEFINITION, with_props(b.TASK_DEFINITION, **{key: "HOST"})).messages) == 1
    assert run_policy(policy, b.TASK_DEFINITION, with_props(b.TASK_DEFINITION, **{key: "task"})).messages == []
    awsx = with_props(b.AWSX_TASK_DEFINITION, **{key: "host"})
    assert len(run_policy(policy, b.AWSX_TASK_DEFINITION, awsx).messages) == 1


# --- awsx components: the same checks on the component's own inputs ----------------------------------------


def awsx_service(**container_changes: Any) -> dict[str, Any]:
    return with_props(b.AWSX_FARGATE_SERVICE, taskDefinitionArgs={"container": container(**container_changes)})


def test_an_insecure_awsx_fargate_service_is_flagged() -> None:
    props = awsx_service(user="root", privileged=True, image="nginx:latest")
    assert run_policy(ROOT, b.AWSX_FARGATE_SERVICE, props).messages == ["container 'app' runs as root (user 'root')"]
    assert run_policy(PRIVILEGED, b.AWSX_FARGATE_SERVICE, props).messages == ["container 'app' is privileged"]
    assert run_policy("aws-ecs-taskdefinition-disallow-latest-tag", b.AWSX_FARGATE_SERVICE, props).messages
    assert run_policy("aws-ecs-taskdefinition-allowed-image-registries", b.AWSX_FARGATE_SERVICE, props).messages
    public = with_props(b.AWSX_FARGATE_SERVICE, networkConfiguration=None, assignPublicIp=True)
    assert run_policy(PUBLIC_IP, b.AWSX_FARGATE_SERVICE, public).messages == [
        "assignPublicIp is true, so every task gets a public IP address in the default VPC's public subnets"
    ]


def test_awsx_containers_map_is_checked_per_container_and_logging_defaults_apply() -> None:
    props = {"containers": {"web": container(name="web"), "sidecar": container(name="sidecar", user="0")}}
    assert run_policy(ROOT, b.AWSX_TASK_DEFINITION, props).messages == ["container 'sidecar' runs as root (user '0')"]
    # awsx adds an awslogs configuration to containers without one, unless the log group is skipped
    quiet = {"container": container(logConfiguration=None)}
    assert run_policy(LOGGING, b.AWSX_TASK_DEFINITION, quiet).messages == []
    assert run_policy(LOGGING, b.AWSX_TASK_DEFINITION, {**quiet, "logGroup": {"skip": True}}).messages


def test_an_awsx_image_not_known_yet_is_not_checked_rather_than_a_violation() -> None:
    props = awsx_service(image=None)
    outcome = run_policy("aws-ecs-taskdefinition-allowed-image-registries", b.AWSX_FARGATE_SERVICE, props)
    assert (outcome.messages, outcome.unknown is not None) == ([], True)


@pytest.mark.parametrize("type_", [b.AWSX_FARGATE_SERVICE, b.AWSX_TASK_DEFINITION, b.AWSX_REPOSITORY])
def test_secure_awsx_components_pass_every_resource_policy(type_: str) -> None:
    resource_policies = [p.name for p in ALL_POLICIES if isinstance(p, ResourceValidationPolicy)]
    outcomes = {name: run_policy(name, type_, b.BASELINES[type_], stack="prod") for name in resource_policies}
    assert {name: o.messages for name, o in outcomes.items() if o.messages or o.unknown} == {}


def test_awsx_repository_settings_are_checked() -> None:
    mutable = with_props(b.AWSX_REPOSITORY, imageTagMutability="MUTABLE")
    assert run_policy("aws-ecr-repository-enable-immutable-tags", b.AWSX_REPOSITORY, mutable).messages
    unscanned = (b.AWSX_REPOSITORY, "repo", with_props(b.AWSX_REPOSITORY, imageScanningConfiguration=None))
    assert run_stack_policy("aws-ecr-repository-enable-image-scanning", [unscanned]).messages
    # awsx gives repositories a lifecycle policy unless told to skip it
    assert run_stack_policy("aws-ecr-repository-configure-lifecycle-policy", [unscanned]).messages == []


# --- Class 4: sibling resource types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "type_", "changes"),
    [
        ("aws-rds-instance-enable-storage-encryption", b.DB_CLUSTER, {"storageEncrypted": None}),
        ("aws-rds-instance-disallow-public-access", b.DB_CLUSTER_INSTANCE, {"publiclyAccessible": True}),
        (
            "aws-rds-instance-disallow-public-access",
            b.DB_CLUSTER,
            {"dbClusterInstanceClass": "db.m6gd.large", "dbSubnetGroupName": None},
        ),
        ("aws-rds-instance-use-managed-master-password", b.DB_CLUSTER, {"masterPassword": "hunter2hunter2"}),
        ("aws-rds-instance-configure-backup-retention", b.DB_CLUSTER, {"backupRetentionPeriod": 1}),
        ("aws-rds-instance-enable-iam-authentication", b.DB_CLUSTER, {"iamDatabaseAuthenticationEnabled": None}),
        ("aws-rds-instance-enable-enhanced-monitoring", b.DB_CLUSTER_INSTANCE, {"monitoringInterval": 0}),
        ("aws-rds-parametergroup-enforce-ssl", b.CLUSTER_PARAMETER_GROUP, {"parameters": []}),
    ],
)
def test_aurora_clusters_and_instances_are_covered(policy: str, type_: str, changes: dict[str, Any]) -> None:
    assert run_policy(policy, type_, b.BASELINES[type_], stack="prod").messages == []
    assert len(run_policy(policy, type_, with_props(type_, **changes), stack="prod").messages) == 1


@pytest.mark.parametrize(
    ("type_", "props"),
    [
        (b.BUCKET, {"bucket": "site", "acl": "public-read"}),
        (b.BUCKET_ACL, {"bucket": "site", "acl": "authenticated-read"}),
        (
            b.BUCKET_ACL,
            {
                "bucket": "site",
                "accessControlPolicy": {
                    "grants": [
                        {
                            "grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"},
                            "permission": "READ",
                        }
                    ],
                    "owner": {"id": "abc"},
                },
            },
        ),
        ("aws:s3/bucketObjectv2:BucketObjectv2", {"bucket": "site", "key": "index.html", "acl": "public-read"}),
    ],
)
def test_public_acls_fail(type_: str, props: dict[str, Any]) -> None:
    assert len(run_policy("aws-s3-bucket-disallow-public-acl", type_, props).messages) == 1


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": ["*"]}, "Action": "s3:*", "Resource": "*"},
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}},
        },
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringLike": {"aws:SourceVpce": "vpce-*"}},
        },
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:SourceVpce": "vpce-1"}},
        },
    ],
)
def test_public_bucket_policies_fail(statement: dict[str, Any]) -> None:
    props = {"bucket": "site", "policy": b.bucket_policy(statement)}
    assert len(run_policy("aws-s3-bucket-disallow-public-policy", b.BUCKET_POLICY, props).messages) == 1


@pytest.mark.parametrize(
    "statement",
    [
        {
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": "arn:aws:cloudfront::1:distribution/D"}},
        },
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}},
        },
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/app"},
            "Action": "s3:*",
            "Resource": "*",
        },
    ],
)
def test_restricted_bucket_policies_pass(statement: dict[str, Any]) -> None:
    props = {"bucket": "site", "policy": b.bucket_policy(statement)}
    assert run_policy("aws-s3-bucket-disallow-public-policy", b.BUCKET_POLICY, props).messages == []


def repository(name: str, mutability: str, **extra: Any) -> tuple[str, str, dict[str, Any]]:
    return (b.REPOSITORY, name, {"name": name, "imageTagMutability": mutability, **extra})


def task(image: str) -> tuple[str, str, dict[str, Any]]:
    return (b.TASK_DEFINITION, "task", task_definition(container(image=image)))


@pytest.mark.parametrize(
    ("image", "repositories", "flagged"),
    [
        (f"{REPO}/app:v1.2.3", [repository("app", "MUTABLE")], True),
        (f"{REPO}/app:v1.2.3", [], True),
        ("public.ecr.aws/nginx/nginx:1.27", [], True),
        (f"{REPO}/app:v1.2.3", [repository("app", "IMMUTABLE")], False),
        (f"{REPO}/app@{DIGEST}", [repository("app", "MUTABLE")], False),
        (
            f"{REPO}/app:dev-42",
            [
                repository(
                    "app",
                    "IMMUTABLE_WITH_EXCLUSION",
                    imageTagMutabilityExclusionFilters=[{"filter": "dev-*", "filterType": "WILDCARD"}],
                )
            ],
            True,
        ),
    ],
)
def test_mutable_image_tags(image: str, repositories: list[Any], flagged: bool) -> None:
    messages = run_stack_policy(MUTABLE, [*repositories, task(image)]).messages
    assert bool(messages) is flagged, messages


def test_mutable_tags_in_awsx_services_and_lambda_images() -> None:
    service = (b.AWSX_FARGATE_SERVICE, "svc", awsx_service(image=f"{REPO}/app:v2"))
    assert run_stack_policy(MUTABLE, [repository("app", "MUTABLE"), service]).messages == [
        f"container 'app' image '{REPO}/app:v2' uses tag 'v2', which repository 'app' of this stack lets anyone "
        "overwrite"
    ]
    function = (b.LAMBDA, "fn", {"packageType": "Image", "imageUri": f"{REPO}/fn:latest"})
    assert run_stack_policy(LAMBDA_MUTABLE, [function]).messages
    pinned = (b.LAMBDA, "fn", {"packageType": "Image", "imageUri": f"{REPO}/fn@{DIGEST}"})
    assert run_stack_policy(LAMBDA_MUTABLE, [pinned]).messages == []
    shared = {"immutableRepositories": [f"{REPO}/shared/"]}
    assert run_stack_policy(MUTABLE, [task(f"{REPO}/shared/app:v1")], shared).messages == []


@pytest.mark.parametrize(
    ("policy", "type_", "secure_default", "insecure"),
    [
        ("aws-sqs-queue-enable-encryption", b.QUEUE, {}, {"sqsManagedSseEnabled": False}),
        (
            "aws-elasticache-replicationgroup-enable-at-rest-encryption",
            b.REPLICATION_GROUP,
            with_props(b.REPLICATION_GROUP, atRestEncryptionEnabled=None, engine="valkey"),
            with_props(b.REPLICATION_GROUP, atRestEncryptionEnabled=None, engine="redis"),
        ),
        ("aws-sns-topic-enable-encryption", b.TOPIC, {"kmsMasterKeyId": "alias/aws/sns"}, {}),
    ],
)
def test_defaults_are_read_as_aws_applies_them(
    policy: str, type_: str, secure_default: dict[str, Any], insecure: dict[str, Any]
) -> None:
    assert run_policy(policy, type_, secure_default).messages == []
    assert len(run_policy(policy, type_, insecure).messages) == 1


# --- Class 5: levels that match the text, and the TLS policy list -------------------------------------------


def test_must_with_high_or_critical_severity_is_mandatory_and_mandatory_says_must() -> None:
    for policy in ALL_POLICIES:
        says_must = " must " in f" {policy.description} "
        mandatory = policy.enforcement_level == EnforcementLevel.MANDATORY
        if says_must and policy.severity in (Severity.HIGH, Severity.CRITICAL):
            assert mandatory, policy.name
        if mandatory:
            assert says_must, policy.name


@pytest.mark.parametrize(
    "policy",
    [
        "ELBSecurityPolicy-TLS13-1-2-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
        "ELBSecurityPolicy-TLS13-1-3-2021-06",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
        "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09",
        "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
        "ELBSecurityPolicy-TLS-1-2-2017-01",
        "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
        "ELBSecurityPolicy-FS-1-2-2019-08",
        "ELBSecurityPolicy-FS-1-2-Res-2020-10",
    ],
)
def test_every_tls_1_2_plus_elb_policy_is_accepted(policy: str) -> None:
    listener = with_props(b.LISTENER, sslPolicy=policy)
    assert run_policy("aws-lb-listener-use-secure-tls-policy", b.LISTENER, listener).messages == []


@pytest.mark.parametrize(
    "policy",
    [
        "ELBSecurityPolicy-2016-08",
        "ELBSecurityPolicy-2015-05",
        "ELBSecurityPolicy-TLS-1-0-2015-04",
        "ELBSecurityPolicy-TLS-1-1-2017-01",
        "ELBSecurityPolicy-FS-2018-06",
        "ELBSecurityPolicy-FS-1-1-2019-08",
        "ELBSecurityPolicy-TLS13-1-0-2021-06",
        "ELBSecurityPolicy-TLS13-1-1-2021-06",
        "ELBSecurityPolicy-TLS13-1-0-FIPS-2023-04",
    ],
)
def test_tls_1_0_and_1_1_policies_are_rejected(policy: str) -> None:
    listener = with_props(b.LISTENER, sslPolicy=policy)
    assert len(run_policy("aws-lb-listener-use-secure-tls-policy", b.LISTENER, listener).messages) == 1
    assert (minimum_tls_minor(policy) or 0) < 2
