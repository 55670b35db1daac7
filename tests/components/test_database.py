"""Database: RDS PostgreSQL 17, encrypted, private, RDS-managed credentials, the seed's parameters and alarms;
services connect as their own role with IAM authentication, created by the role bootstrap function."""

from __future__ import annotations

import re

import pytest

from components.database import Database, DatabaseArgs
from components.web_service import WebService
from runner.plan import ARCHIVE_SIG
from tests.components.test_storage import ACCOUNT, LOG_KEY, TOPIC, retained_names
from tests.components.test_web_service import web_args
from tests.support import Recorded, build, env_map, inputs, json_input


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
    network = dev.one("container-platform:database:RolesFunctionNetwork")
    assert network.parent == component.urn
    assert all(r.parent in (component.urn, network.urn) for r in dev.resources if r is not component)


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
    role = dev.find("aws:iam/role:Role", "database-monitoring-role")
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
        "/aws/lambda/jobs-dev-db-roles",
    }
    assert all((g["retentionInDays"], g["kmsKeyId"]) == (30, LOG_KEY) for g in groups.values())


def test_security_groups_have_no_inline_rules(dev):
    for group in dev.of_type("aws:ec2/securityGroup:SecurityGroup"):
        assert "ingress" not in inputs(group)
        assert "egress" not in inputs(group)


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
        ({"app_username": "App"}, "app_username='App' must be lowercase letters, digits, _"),
        ({"app_username": "dbadmin"}, "app_username='dbadmin' must differ from master_username='dbadmin'"),
        ({"app_username": "rds_iam"}, "app_username='rds_iam' must differ from master_username='dbadmin' and not"),
        ({"app_username": "pg_app"}, "app_username='pg_app' must differ from master_username='dbadmin' and not"),
        ({"roles_function_reserved_concurrency": 0}, "roles_function_reserved_concurrency=0 must be at least 1"),
        ({"service_roles": ["orders", "Orders"]}, "service_roles: 'Orders' must be lowercase letters, digits, _"),
        (
            {"service_roles": ["rds_proxy"]},
            "service_roles: 'rds_proxy' must be lowercase letters, digits, _, not start",
        ),
        (
            {"service_roles": ["app"]},
            "service_roles: 'app' must be lowercase letters, digits, _, not start with pg_ or "
            "rds, and differ from dbadmin and app",
        ),
        (
            {"service_roles": ["orders", "orders"]},
            "service_roles: orders listed more than once; allowed: each role once",
        ),
    ],
)
def test_unknown_or_contradicting_args_are_rejected(overrides, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        database_args("prod", **overrides)


# --- Creation order ---


def test_instance_waits_for_the_monitoring_policy_attachment_not_just_the_role(dev):
    # RDS validates the monitoring role when the instance is created: the role alone (without its policy attached
    # yet) fails the create with "IAM role ARN value is invalid or does not include the required permissions".
    attachment = dev.find("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "database-monitoring-policy")
    assert attachment.urn in dev.one("aws:rds/instance:Instance").dependencies


# --- How services connect: IAM authentication as the app role, no secrets ---

RESOURCE_ID = "db-ABCDEFGHIJKLMNOPQRSTUVWXY0"  # the mock's DbiResourceId


@pytest.fixture(scope="module")
def service() -> Recorded:
    return build(lambda: WebService("api", web_args(attachments=[Database("database", database_args()).attachment()])))


def container(recorded: Recorded) -> dict:
    (definition,) = json_input(recorded.one("aws:ecs/taskDefinition:TaskDefinition"), "containerDefinitions")
    return definition


def test_services_get_connection_settings_for_iam_auth_and_no_secret(service):
    definition = container(service)
    assert env_map(definition["environment"]) == {
        "PORT": "8080",
        "SHUTDOWN_TIMEOUT_SECONDS": "25",
        "DB_HOST": "database-instance.abcdefghij.us-east-1.rds.amazonaws.com",
        "DB_PORT": "5432",
        "DB_NAME": "app",
        "DB_USER": "app",
        "DB_AUTH": "iam",
        "DB_SSLMODE": "require",
    }
    assert definition["secrets"] == []
    # Nothing to read at task start: the master secret stays with the bootstrap function.
    policies = {r.name for r in service.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert policies == {"jobs-dev-api-task-policy", "database-roles-policy"}


def test_task_role_may_connect_as_exactly_the_app_user_of_this_instance(service):
    policy = json_input(service.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-task-policy"), "policy")
    assert policy["Statement"] == [
        {
            "Sid": "ConnectAsAppRole",
            "Effect": "Allow",
            "Action": ["rds-db:connect"],
            "Resource": [f"arn:aws:rds-db:us-east-1:{ACCOUNT}:dbuser:{RESOURCE_ID}/app"],
        }
    ]


def test_no_task_definition_before_the_role_exists(service):
    invocation = service.one("aws:lambda/invocation:Invocation")
    assert invocation.urn in service.one("aws:ecs/taskDefinition:TaskDefinition").dependencies


def test_the_app_role_name_is_configurable():
    recorded = build(
        lambda: WebService(
            "api", web_args(attachments=[Database("database", database_args(app_username="jobs_api")).attachment()])
        )
    )
    assert env_map(container(recorded)["environment"])["DB_USER"] == "jobs_api"
    policy = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-task-policy"), "policy")
    assert policy["Statement"][0]["Resource"] == [f"arn:aws:rds-db:us-east-1:{ACCOUNT}:dbuser:{RESOURCE_ID}/jobs_api"]
    function = inputs(recorded.one("aws:lambda/function:Function"))
    assert function["environment"]["variables"]["ROLES"] == "jobs_api"


# --- Services of the `services:` map: a role and a schema each ---


@pytest.fixture(scope="module")
def shop() -> Recorded:
    def program() -> None:
        database = Database("database", database_args(service_roles=["users", "orders"]))
        for role in ("users", "orders"):
            WebService(role, web_args(service_name=role, attachments=[database.attachment(role=role)]))

    return build(program)


def test_each_service_connects_as_its_own_role_in_its_own_schema(shop):
    for role in ("users", "orders"):
        task = shop.find("aws:ecs/taskDefinition:TaskDefinition", f"jobs-dev-{role}-task")
        (definition,) = json_input(task, "containerDefinitions")
        environment = env_map(definition["environment"])
        assert (environment["DB_USER"], environment["DB_SCHEMA"], environment["DB_AUTH"]) == (role, role, "iam")
        policy = json_input(shop.find("aws:iam/rolePolicy:RolePolicy", f"jobs-dev-{role}-task-policy"), "policy")
        assert policy["Statement"] == [
            {
                "Sid": "ConnectAsOwnRole",
                "Effect": "Allow",
                "Action": ["rds-db:connect"],
                "Resource": [f"arn:aws:rds-db:us-east-1:{ACCOUNT}:dbuser:{RESOURCE_ID}/{role}"],
            }
        ]


def test_each_role_has_its_own_invocation_and_a_service_waits_only_for_its_own(shop):
    function = inputs(shop.one("aws:lambda/function:Function"))
    assert function["environment"]["variables"]["ROLES"] == "app,users,orders"
    invocations = {r.name: r for r in shop.of_type("aws:lambda/invocation:Invocation")}
    assert set(invocations) == {
        "database-roles-invocation",
        "database-roles-invocation-users",
        "database-roles-invocation-orders",
    }
    assert {name: inputs(r)["input"] for name, r in invocations.items()} == {
        "database-roles-invocation": '{"roles": ["app"]}',
        "database-roles-invocation-users": '{"roles": ["users"]}',
        "database-roles-invocation-orders": '{"roles": ["orders"]}',
    }
    task = shop.find("aws:ecs/taskDefinition:TaskDefinition", "jobs-dev-users-task")
    waits_for = {name for name, r in invocations.items() if r.urn in task.dependencies}
    assert waits_for == {"database-roles-invocation-users"}


def test_a_role_that_is_not_a_service_role_is_refused():
    def program() -> None:
        Database("database", database_args(service_roles=["users"])).attachment(role="orders")

    with pytest.raises(ValueError, match=r"attachment\(role='orders'\): not one of the database's service_roles; "
                                         "allowed: users"):  # fmt: skip
        build(program)


# --- The role bootstrap function ---


def roles_function(recorded: Recorded) -> dict:
    return inputs(recorded.one("aws:lambda/function:Function"))


def test_roles_function_runs_in_the_private_subnets_with_its_own_security_group(dev):
    function = roles_function(dev)
    assert function["vpcConfig"] == {
        "subnetIds": ["subnet-a", "subnet-b"],
        "securityGroupIds": ["database-roles-sg-id"],
    }
    assert (function["runtime"], function["architectures"], function["handler"]) == (
        "python3.13",
        ["arm64"],
        "handler.handler",
    )
    assert (function["timeout"], function["memorySize"]) == (60, 256)
    assert "reservedConcurrentExecutions" not in function
    assert function["loggingConfig"]["logGroup"] == "/aws/lambda/jobs-dev-db-roles"
    secret = dev.one("aws:rds/instance:Instance").outputs["masterUserSecrets"][0]["secretArn"]
    assert function["environment"]["variables"] == {
        "DB_HOST": "database-instance.abcdefghij.us-east-1.rds.amazonaws.com",
        "DB_PORT": "5432",
        "DB_NAME": "app",
        "MASTER_SECRET_ARN": secret,
        "ROLES": "app",
        "DB_SSLMODE": "require",
    }
    assert (
        roles_function(build_database(database_args(roles_function_reserved_concurrency=1)))[
            "reservedConcurrentExecutions"
        ]
        == 1
    )


def test_roles_function_package_is_the_handler_and_pure_python_pg8000(dev):
    code = roles_function(dev)["code"]
    assert code["4dabf18193072939515e22adb298388d"] == ARCHIVE_SIG
    paths = set(code["assets"])
    assert {"handler.py", "pg8000/native.py", "scramp/core.py", "scramp-1.5.0.dist-info/METADATA"} <= paths
    assert not [p for p in paths if p.endswith((".so", ".pyc")) or "__pycache__" in p or p.endswith("/RECORD")]
    assert code["assets"]["handler.py"]["path"] == "lambdas/db_roles/handler.py"


def test_roles_function_may_read_only_the_master_secret_write_its_logs_and_attach_to_the_vpc(dev):
    secret = dev.one("aws:rds/instance:Instance").outputs["masterUserSecrets"][0]["secretArn"]
    role = dev.find("aws:iam/role:Role", "database-roles-role")
    (trust,) = json_input(role, "assumeRolePolicy")["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    policy = json_input(dev.find("aws:iam/rolePolicy:RolePolicy", "database-roles-policy"), "policy")
    assert {s["Sid"]: (s["Action"], s["Resource"]) for s in policy["Statement"]} == {
        "ReadMasterSecret": (["secretsmanager:GetSecretValue"], [secret]),
        "WriteOwnLogs": (
            ["logs:CreateLogStream", "logs:PutLogEvents"],
            [f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/jobs-dev-db-roles:*"],
        ),
        "ManageVpcNetworkInterfaces": (
            ["ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
             "ec2:UnassignPrivateIpAddresses"],
            [f"arn:aws:ec2:us-east-1:{ACCOUNT}:*/*"],
        ),
        "DescribeVpcNetworkInterfaces": (["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], ["*"]),
    }  # fmt: skip
    function = dev.one("aws:lambda/function:Function")
    assert dev.find("aws:iam/rolePolicy:RolePolicy", "database-roles-policy").urn in function.dependencies


def test_roles_function_reaches_only_the_database_and_https(dev):
    def rules(type_: str) -> set[tuple]:
        return {
            (v["securityGroupId"], v.get("referencedSecurityGroupId"), v.get("cidrIpv4"), v["fromPort"], v["toPort"])
            for v in map(inputs, dev.of_type(type_))
        }

    function_sg, database_sg = "database-roles-sg-id", "database-sg-id"
    assert rules("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") == {
        (function_sg, database_sg, None, 5432, 5432),
        (function_sg, None, "0.0.0.0/0", 443, 443),
    }
    assert rules("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == {
        (database_sg, function_sg, None, 5432, 5432)
    }


def test_invocation_runs_after_the_network_path_and_again_when_instance_role_or_code_change(dev):
    invocation = dev.one("aws:lambda/invocation:Invocation")
    values = inputs(invocation)
    assert values["functionName"] == "jobs-dev-db-roles"
    assert values["input"] == '{"roles": ["app"]}'
    assert "lifecycleScope" not in values  # CREATE_ONLY: never invoked on destroy
    triggers = values["triggers"]
    assert {k: v for k, v in triggers.items() if k != "code"} == {
        "instance": RESOURCE_ID,
        "database": "app",
        "role": "app",
    }
    assert re.fullmatch(r"[0-9a-f]{64}", triggers["code"])
    rules = [
        *dev.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
        *dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
    ]
    assert {r.urn for r in rules} <= set(invocation.dependencies)
    assert dev.one("aws:lambda/function:Function").urn in invocation.dependencies


def test_without_its_own_dashboard_it_hands_its_widgets_to_the_platform_dashboard():
    recorded = build_database(database_args(own_dashboard=False))
    assert recorded.of_type("aws:cloudwatch/dashboard:Dashboard") == []
    own = json_input(build_database(database_args()).one("aws:cloudwatch/dashboard:Dashboard"), "dashboardBody")
    assert [w["properties"]["title"] for w in own["widgets"]] == [
        "Database performance",
        "Database latency",
        "Free storage space",
    ]
