"""SharedStorage (EFS), and a service attached to storage + database + cache getting exactly what it needs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from components.storage import SharedStorage, SharedStorageArgs, check_subnet_count
from runner import plan
from tests.support import Recorded, build, env_map, inputs, json_input

ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:jobs-alerts"
SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]
LOG_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/platform"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
MOCK_TOKEN = "MockToken0123456789abcdefABCDEF"


def mock_random_password(patch: pytest.MonkeyPatch) -> None:
    """The shared mocks echo inputs; a RandomPassword's `result` is an output, so give it a value."""
    patch.setitem(plan._TYPE_OUTPUTS, RANDOM_PASSWORD, lambda name, inputs, region: {"result": MOCK_TOKEN})


@pytest.fixture(scope="module")
def mocked_random() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        mock_random_password(patch)
        yield


def retained_names(patch: pytest.MonkeyPatch) -> set[str]:
    """Names of resources registered with `retain_on_delete` (the shared recorder does not keep options)."""
    names: set[str] = set()
    register = plan._RecordingMonitor.RegisterResource

    def recording(self, request):
        if request.retainOnDelete:
            names.add(request.name)
        return register(self, request)

    patch.setattr(plan._RecordingMonitor, "RegisterResource", recording)
    return names


def storage_args(env: str = "dev", **overrides) -> SharedStorageArgs:
    values = {
        "name_prefix": f"jobs-{env}",
        "vpc_id": "vpc-1",
        "private_subnet_ids": SUBNETS[:2],
        "subnet_count": 2,
        "account_id": ACCOUNT,
        "region": "us-east-1",
        "topic_arn": TOPIC,
    }
    if env == "dev":
        values |= {"throughput_mode": "bursting", "transition_to_archive_days": None, "deletion_protection": False}
    else:
        values |= {"private_subnet_ids": SUBNETS, "subnet_count": 3}
    values.update(overrides)
    return SharedStorageArgs(**values)


def build_storage(args: SharedStorageArgs) -> Recorded:
    return build(lambda: SharedStorage("storage", args))


@pytest.fixture(scope="module")
def dev() -> Recorded:
    return build_storage(storage_args("dev"))


@pytest.fixture(scope="module")
def prod() -> tuple[Recorded, set[str]]:
    with pytest.MonkeyPatch.context() as patch:
        names = retained_names(patch)
        return build_storage(storage_args("prod")), names


def file_system(recorded: Recorded) -> dict:
    return inputs(recorded.one("aws:efs/fileSystem:FileSystem"))


def test_every_child_is_parented_to_the_component(dev):
    component = dev.one("container-platform:storage:SharedStorage")
    assert all(r.parent == component.urn for r in dev.resources if r is not component)


def test_file_system_is_encrypted_with_its_own_rotating_key(dev):
    key = dev.one("aws:kms/key:Key")
    assert inputs(key)["enableKeyRotation"] is True
    policy = json_input(key, "policy")
    assert [s["Sid"] for s in policy["Statement"]] == ["AccountAdministers"]
    fs = file_system(dev)
    assert fs["encrypted"] is True
    assert fs["kmsKeyId"] == key.outputs["arn"]


def test_dev_bursts_and_moves_cold_files_to_infrequent_access(dev):
    fs = file_system(dev)
    assert (fs["performanceMode"], fs["throughputMode"]) == ("generalPurpose", "bursting")
    assert "provisionedThroughputInMibps" not in fs
    assert fs["lifecyclePolicies"] == [
        {"transitionToIa": "AFTER_30_DAYS"},
        {"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"},
    ]


def test_prod_is_elastic_archives_after_90_days_and_is_retained(prod):
    recorded, retained = prod
    fs = file_system(recorded)
    assert (fs["performanceMode"], fs["throughputMode"]) == ("generalPurpose", "elastic")
    assert fs["lifecyclePolicies"] == [
        {"transitionToIa": "AFTER_30_DAYS"},
        {"transitionToArchive": "AFTER_90_DAYS"},
        {"transitionToPrimaryStorageClass": "AFTER_1_ACCESS"},
    ]
    assert retained == {"storage-key", "storage-fs"}


def test_provisioned_throughput_is_passed_through():
    recorded = build_storage(
        storage_args(
            "prod",
            performance_mode="maxIO",
            throughput_mode="provisioned",
            provisioned_throughput_mibps=100,
            transition_to_archive_days=None,
        )
    )
    fs = file_system(recorded)
    assert (fs["performanceMode"], fs["throughputMode"], fs["provisionedThroughputInMibps"]) == (
        "maxIO",
        "provisioned",
        100,
    )
    assert not recorded.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")


def test_one_mount_target_per_private_subnet_behind_the_efs_security_group(prod):
    recorded, _ = prod
    targets = sorted(
        (inputs(t) for t in recorded.of_type("aws:efs/mountTarget:MountTarget")), key=lambda t: t["subnetId"]
    )
    assert [t["subnetId"] for t in targets] == SUBNETS
    assert all(t["securityGroups"] == ["storage-sg-id"] and t["fileSystemId"] == "storage-fs-id" for t in targets)


def test_security_group_has_no_rules_of_its_own(dev):
    sg = inputs(dev.one("aws:ec2/securityGroup:SecurityGroup"))
    assert "ingress" not in sg
    assert "egress" not in sg
    assert not dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")


def test_access_point_is_a_non_root_subdirectory(dev):
    point = inputs(dev.one("aws:efs/accessPoint:AccessPoint"))
    assert point["rootDirectory"] == {
        "path": "/shared",
        "creationInfo": {"ownerUid": 1001, "ownerGid": 1001, "permissions": "755"},
    }
    assert point["posixUser"] == {"uid": 1001, "gid": 1001}


def test_backups_on_and_plain_nfs_denied(dev):
    assert inputs(dev.one("aws:efs/backupPolicy:BackupPolicy"))["backupPolicy"] == {"status": "ENABLED"}
    (statement,) = json_input(dev.one("aws:efs/fileSystemPolicy:FileSystemPolicy"), "policy")["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == dev.one("aws:efs/fileSystem:FileSystem").outputs["arn"]


def test_bursting_gets_the_seed_burst_credit_alarm_and_the_dashboard(dev):
    alarm = inputs(dev.one("aws:cloudwatch/metricAlarm:MetricAlarm"))
    assert (alarm["metricName"], alarm["threshold"], alarm["comparisonOperator"]) == (
        "BurstCreditBalance",
        1_000_000_000,
        "LessThanThreshold",
    )
    assert alarm["dimensions"] == {"FileSystemId": "storage-fs-id"}
    assert alarm["alarmActions"] == alarm["okActions"] == [TOPIC]
    body = json_input(dev.one("aws:cloudwatch/dashboard:Dashboard"), "dashboardBody")
    metrics = {m[1] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert metrics == {"TotalIOBytes", "ClientConnections", "BurstCreditBalance", "StorageBytes"}


def test_elastic_throughput_has_no_burst_credit_alarm(prod):
    recorded, _ = prod
    assert not recorded.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"throughput_mode": "provisioned", "transition_to_archive_days": None},
         "throughput_mode='provisioned' needs provisioned_throughput_mibps > 0 (got None)"),
        ({"throughput_mode": "bursting", "provisioned_throughput_mibps": 100, "transition_to_archive_days": None},
         "provisioned_throughput_mibps=100 is only allowed with throughput_mode='provisioned'"),
        ({"performance_mode": "maxIO"}, "performance_mode='maxIO' does not support throughput_mode='elastic'"),
        ({"throughput_mode": "bursting"}, "transition_to_archive_days=90 needs throughput_mode='elastic'"),
        ({"transition_to_archive_days": 30}, "transition_to_archive_days=30 must be one of"),
        ({"transition_to_ia_days": 45}, "transition_to_ia_days=45 must be one of"),
        ({"subnet_count": 0}, "subnet_count=0 must be at least 1"),
    ],
)  # fmt: skip
def test_contradicting_args_are_rejected_naming_both_fields(overrides, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        storage_args("prod", **overrides)


def test_subnet_count_must_match_the_subnets():
    with pytest.raises(ValueError, match=r"^subnet_count=3 but private_subnet_ids has 2 subnets"):
        storage_args("prod", private_subnet_ids=SUBNETS[:2])
    # Subnets that arrive as an Output are checked the same way when they resolve.
    with pytest.raises(ValueError, match=r"^subnet_count=2 but private_subnet_ids has 3 subnets"):
        check_subnet_count(SUBNETS, 2)


@pytest.mark.parametrize("path", ["relative", "/", "/tmp"])
def test_mount_path_must_be_a_dedicated_absolute_path(path):
    with pytest.raises(ValueError, match=f"mount_path='{path}' must be an absolute path"):
        build(lambda: SharedStorage("storage", storage_args("dev")).attachment(mount_path=path))


# --- A service attached to storage, database and cache ------------------------------------------------------


@pytest.fixture(scope="module")
def attached(mocked_random) -> Recorded:
    from components.cache import Cache
    from components.database import Database
    from components.web_service import WebService
    from tests.components.test_cache import cache_args
    from tests.components.test_database import database_args
    from tests.components.test_web_service import web_args

    def program() -> None:
        storage = SharedStorage("storage", storage_args("dev"))
        database = Database("database", database_args("dev"))
        cache = Cache("cache", cache_args("dev"))
        attachments = [storage.attachment(), database.attachment(), cache.attachment()]
        WebService("api", web_args(attachments=attachments))

    return build(program)


def api_container(recorded: Recorded) -> dict:
    (definition,) = json_input(recorded.one("aws:ecs/taskDefinition:TaskDefinition"), "containerDefinitions")
    return definition


def test_attached_service_mounts_the_access_point_over_tls_with_iam(attached):
    task = inputs(attached.one("aws:ecs/taskDefinition:TaskDefinition"))
    assert task["volumes"] == [
        {"name": "tmp"},
        {
            "name": "storage",
            "efsVolumeConfiguration": {
                "fileSystemId": "storage-fs-id",
                "rootDirectory": "/",
                "transitEncryption": "ENABLED",
                "authorizationConfig": {"accessPointId": "storage-access-point-id", "iam": "ENABLED"},
            },
        },
    ]
    assert api_container(attached)["mountPoints"] == [
        {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False},
        {"sourceVolume": "storage", "containerPath": "/mnt/shared", "readOnly": False},
    ]


def test_attached_service_gets_endpoints_in_env_and_credentials_only_as_secrets(attached):
    container = api_container(attached)
    token_secret = attached.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    assert env_map(container["environment"]) == {
        "PORT": "8080",
        "SHUTDOWN_TIMEOUT_SECONDS": "25",
        "STORAGE_PATH": "/mnt/shared",
        "DB_HOST": "database-instance.abcdefghij.us-east-1.rds.amazonaws.com",
        "DB_PORT": "5432",
        "DB_NAME": "app",
        "DB_USER": "app",
        "DB_AUTH": "iam",
        "DB_SSLMODE": "require",
        "REDIS_HOST": "master.cache-group.abcdef.us-east-1.cache.amazonaws.com",
        "REDIS_PORT": "6379",
        "REDIS_TLS": "true",
    }
    # The database needs no secret: IAM authentication (tests/components/test_database.py).
    assert env_map(container["secrets"], "valueFrom") == {"REDIS_AUTH_TOKEN": token_secret}
    assert MOCK_TOKEN not in json.dumps(container)


def test_execution_role_reads_exactly_the_one_secret(attached):
    token_secret = attached.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    policy = json_input(attached.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-exec-secrets"), "policy")
    assert policy["Statement"] == [
        {
            "Sid": "ReadOwnSecrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": [token_secret],
        }
    ]


def test_task_role_may_only_mount_and_write_this_file_system_through_the_access_point(attached):
    fs_arn = attached.one("aws:efs/fileSystem:FileSystem").outputs["arn"]
    access_point_arn = attached.one("aws:efs/accessPoint:AccessPoint").outputs["arn"]
    # Besides the database's role bootstrap function's own policy.
    policies = {r.name for r in attached.of_type("aws:iam/rolePolicy:RolePolicy")} - {"database-roles-policy"}
    assert policies == {"jobs-dev-api-exec-secrets", "jobs-dev-api-task-policy"}
    policy = json_input(attached.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-task-policy"), "policy")
    assert [s for s in policy["Statement"] if s["Sid"] != "ConnectAsAppRole"] == [
        {
            "Sid": "MountSharedStorage",
            "Effect": "Allow",
            "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
            "Resource": [fs_arn],
            "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": access_point_arn}},
        }
    ]


def test_network_paths_are_sg_to_sg_on_exactly_the_three_ports(attached):
    def rules(type_: str) -> set[tuple]:
        found = set()
        # The database's role bootstrap function has its own paths (tests/components/test_database.py).
        for rule in (r for r in attached.of_type(type_) if "-roles-" not in r.name):
            values = inputs(rule)
            found.add((values["securityGroupId"], values.get("referencedSecurityGroupId"), values.get("cidrIpv4"),
                       values["fromPort"], values["toPort"]))  # fmt: skip
        return found

    api = "jobs-dev-api-sg-id"
    peers = {"storage-sg-id": 2049, "database-sg-id": 5432, "cache-sg-id": 6379}
    assert rules("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == {
        (api, "sg-alb", None, 8080, 8080),
        *((peer, api, None, port, port) for peer, port in peers.items()),
    }
    assert rules("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") == {
        ("sg-alb", api, None, 8080, 8080),
        (api, None, "0.0.0.0/0", 443, 443),
        *((api, peer, None, port, port) for peer, port in peers.items()),
    }
    for sg in attached.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert "ingress" not in inputs(sg)
        assert "egress" not in inputs(sg)


def test_read_only_attachment_grants_only_client_mount(mocked_random):
    from components.web_service import WebService
    from tests.components.test_web_service import web_args

    def program() -> None:
        storage = SharedStorage("storage", storage_args("dev"))
        WebService("api", web_args(attachments=[storage.attachment("/data", read_only=True)]))

    recorded = build(program)
    policy = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-task-policy"), "policy")
    (statement,) = policy["Statement"]
    assert statement["Action"] == ["elasticfilesystem:ClientMount"]
    assert api_container(recorded)["mountPoints"][1] == {
        "sourceVolume": "storage",
        "containerPath": "/data",
        "readOnly": True,
    }
    assert env_map(api_container(recorded)["environment"])["STORAGE_PATH"] == "/data"


def test_without_its_own_dashboard_there_is_none():
    assert build_storage(storage_args(own_dashboard=False)).of_type("aws:cloudwatch/dashboard:Dashboard") == []
    assert len(build_storage(storage_args()).of_type("aws:cloudwatch/dashboard:Dashboard")) == 1
