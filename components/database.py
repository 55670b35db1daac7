"""Database: RDS for PostgreSQL in private subnets, encrypted, with RDS-managed master credentials.

The seed's `ContainerDatabaseIntegration` database half: instance, parameter group, enhanced monitoring role,
dashboard and alarms. Its security group has no rules of its own: each service that calls `attachment()` gets
an SG-to-SG rule on 5432 and the connection settings.

Services never see a password. They connect with IAM database authentication as a role of their own: the job
platform's services as `app_username`, and each service of the `services:` map as `attachment(role=<its name>)`
(one of `service_roles`), in a schema of that name it owns and no other role may use. The task role may
`rds-db:connect` as exactly that user, and the application signs a fresh token for each new connection
(services/common/db.py). The RDS-managed master secret, which RDS rotates every 7 days, is for administration only:
a bootstrap function (`lambdas/db_roles`) in the private subnets reads it when invoked, and creates a role with
`rds_iam`, its own schema and search_path. The program invokes it once per role after the instance exists (again
whenever the instance, the role or the function changes), and each `DB_USER` depends on its role's invocation, so
no task definition (hence no service) is registered before its role exists, and adding a service's role never
touches the others'.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from components.aws_limits import DB_INSTANCE_FAMILIES, is_db_instance_class
from components.ecs_task import HTTPS, ServiceAttachment, allow_between
from components.iam import allow, assume_role_policy
from components.kms import shared_or_own_key
from components.lambda_function import FunctionVpc, logged_function
from components.lambda_package import python_lambda_package
from components.monitoring import alarm, graph_widget

POSTGRES_PORT = 5432
POSTGRES_MAJORS = (16, 17, 18)
ENHANCED_MONITORING_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
LOG_EXPORTS = ("postgresql", "upgrade")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# PostgreSQL reserves `pg_`; RDS its own `rds*` roles (rds_iam, rdsadmin, ...).
RESERVED_ROLE_PREFIXES = ("pg_", "rds")
ROLES_FUNCTION_SOURCE = Path(__file__).resolve().parent.parent / "lambdas" / "db_roles"
ROLES_FUNCTION_RUNTIME = ("python3.13", "3.13")
ROLES_FUNCTION_ARCHITECTURE = "arm64"
CPU_ALARM_PERCENT = 80
# The seed's low-storage alarm: under 2 GB free.
FREE_STORAGE_ALARM_BYTES = 2_000_000_000
# Parameters PostgreSQL only reads at start-up: RDS rejects `immediate` for them.
STATIC_PARAMETERS = frozenset({"max_connections", "wal_buffers"})


@dataclass(frozen=True)
class DatabaseArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    vpc_id: pulumi.Input[str]
    """VPC of the security group."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets of the DB subnet group."""
    account_id: pulumi.Input[str]
    """Account that administers the KMS key and owns the monitoring role."""
    region: str
    """Region of the dashboard's metrics."""
    topic_arn: pulumi.Input[str]
    """Alert topic every alarm notifies."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key of the exported PostgreSQL log groups (the platform key)."""
    instance_class: str = "db.t4g.micro"
    """Instance class, `db.<family>.<size>` (seed: t3 micro dev, t3 large prod). Default: db.t4g.micro."""
    engine_version: str = "17"
    """PostgreSQL version: a major (RDS picks the newest minor and auto minor upgrades never drift) or
    `major.minor` (17.7 or later on RDS today). Default: 17."""
    db_name: str = "app"
    """Database created on the instance. Default: app."""
    master_username: str = "dbadmin"
    """Master user name (seed: dbadmin); RDS generates and rotates its password. For administration only.
    Default: dbadmin."""
    app_username: str = "app"
    """PostgreSQL role the job platform's services connect as, with IAM authentication only (no password); the
    bootstrap function creates it with its own schema of the same name. Default: app."""
    service_roles: Sequence[str] = ()
    """Roles of services that connect as themselves (`attachment(role=...)`), each created like `app_username` with
    a schema of its own that no other role may use. Default: none."""
    roles_function_reserved_concurrency: int | None = None
    """Reserved concurrency of the role bootstrap function; new accounts' low concurrency quota rejects any
    reservation, so none is made unless asked. Default: none (unreserved)."""
    allocated_storage_gb: int = 20
    """Initial gp3 storage in GiB. Default: 20."""
    max_allocated_storage_gb: int = 100
    """Storage autoscaling ceiling in GiB. Default: 100."""
    multi_az: bool = True
    """Standby in a second AZ (seed: prod only). Default: true."""
    deletion_protection: bool = True
    """RDS deletion protection, a final snapshot and a retained KMS key (seed: prod only). Default: true."""
    backup_retention_days: int = 30
    """Automated backup retention, 1-35 days (seed: 30 prod / 7 dev). Default: 30."""
    max_connections: int = 200
    """PostgreSQL `max_connections` (seed: 200). Default: 200."""
    connections_alarm_threshold: int | None = None
    """Connections that raise the alarm. Default: 80% of `max_connections`."""
    log_retention_days: int = 30
    """Retention of the exported PostgreSQL logs. Default: 30."""
    performance_insights_retention_days: int = 7
    """Performance Insights retention (7 is the free tier; else a multiple of 31, up to 731). Default: 7."""
    kms_key_arn: pulumi.Input[str] | None = None
    """The stack's shared KMS key for storage, snapshots and Performance Insights (`kms.sharedKey`). Default: none (its own key)."""
    own_dashboard: bool = True
    """Its own CloudWatch dashboard; false when the platform dashboard shows its widgets (one dashboard, $3/month
    less each). Default: true."""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def major_version(self) -> int:
        return int(self.engine_version.split(".")[0])

    @property
    def connections_threshold(self) -> int:
        if self.connections_alarm_threshold is not None:
            return self.connections_alarm_threshold
        return int(self.max_connections * 0.8)


def _validate(args: DatabaseArgs) -> None:
    if not is_db_instance_class(args.instance_class):
        raise ValueError(
            f"instance_class={args.instance_class!r} is not db.<family>.<size> with a known family; "
            f"families: {', '.join(DB_INSTANCE_FAMILIES)}"
        )
    if not re.fullmatch(r"\d+(\.\d+)?", args.engine_version) or args.major_version not in POSTGRES_MAJORS:
        raise ValueError(
            f"engine_version={args.engine_version!r} must be a major or major.minor, major one of {POSTGRES_MAJORS}"
        )
    for field_name in ("db_name", "master_username", "app_username"):
        if not IDENTIFIER.match(getattr(args, field_name)):
            raise ValueError(f"{field_name}={getattr(args, field_name)!r} must be lowercase letters, digits, _")
    if args.app_username == args.master_username or args.app_username.startswith(RESERVED_ROLE_PREFIXES):
        raise ValueError(
            f"app_username={args.app_username!r} must differ from master_username={args.master_username!r} and not "
            f"start with {' or '.join(RESERVED_ROLE_PREFIXES)}: rds_iam would turn off the master's password login"
        )
    _validate_service_roles(args)
    concurrency = args.roles_function_reserved_concurrency
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"roles_function_reserved_concurrency={concurrency} must be at least 1 or unset")
    if args.allocated_storage_gb < 20 or args.max_allocated_storage_gb < args.allocated_storage_gb:
        raise ValueError(
            f"allocated_storage_gb={args.allocated_storage_gb} must be at least 20 and at most "
            f"max_allocated_storage_gb={args.max_allocated_storage_gb}"
        )
    if not 1 <= args.backup_retention_days <= 35:
        raise ValueError(f"backup_retention_days={args.backup_retention_days} must be 1-35 (0 turns backups off)")
    if not 10 <= args.max_connections <= 5000:
        raise ValueError(f"max_connections={args.max_connections} must be 10-5000")
    if not 0 < args.connections_threshold <= args.max_connections:
        raise ValueError(
            f"connections_alarm_threshold={args.connections_alarm_threshold} must be 1 to "
            f"max_connections={args.max_connections}"
        )
    retention = args.performance_insights_retention_days
    if retention != 7 and (retention % 31 or not 31 <= retention <= 731):
        raise ValueError(f"performance_insights_retention_days={retention} must be 7 or a multiple of 31 up to 731")


def _validate_service_roles(args: DatabaseArgs) -> None:
    taken = (args.master_username, args.app_username)
    for role in args.service_roles:
        if not IDENTIFIER.match(role) or role.startswith(RESERVED_ROLE_PREFIXES) or role in taken:
            raise ValueError(
                f"service_roles: {role!r} must be lowercase letters, digits, _, not start with "
                f"{' or '.join(RESERVED_ROLE_PREFIXES)}, and differ from {' and '.join(taken)}"
            )
    repeated = sorted({r for r in args.service_roles if list(args.service_roles).count(r) > 1})
    if repeated:
        raise ValueError(f"service_roles: {', '.join(repeated)} listed more than once; allowed: each role once")


def parameters(max_connections: int) -> dict[str, str]:
    """The seed's parameter group in RDS units, with the changes explained inline."""
    return {
        "max_connections": str(max_connections),
        # shared_buffers / effective_cache_size dropped: the seed's 256MB / 1GB fit only a 1 GiB instance;
        # RDS's defaults scale with instance memory ({DBInstanceClassMemory/32768}, /16384; 8 kB pages).
        "work_mem": "4096",  # kB (seed: 4MB)
        "maintenance_work_mem": "65536",  # kB (seed: 64MB)
        # Seed: `all`, which writes every statement with its literal values (data leak, log cost): DDL only.
        "log_statement": "ddl",
        "log_min_duration_statement": "1000",  # ms
        "log_checkpoints": "1",
        "log_connections": "1",
        "log_disconnections": "1",
        "checkpoint_completion_target": "0.9",
        "wal_buffers": "2048",  # 8 kB pages (seed: 16MB)
        "default_statistics_target": "100",
        "rds.force_ssl": "1",
    }


class Database(pulumi.ComponentResource):
    endpoint_address: pulumi.Output[str]
    """Instance host name."""
    master_secret_arn: pulumi.Output[str]
    """RDS-managed Secrets Manager secret with the master `username` and `password` (administration only)."""
    app_username: pulumi.Output[str]
    """The job platform's role; resolves only once the bootstrap function has created it."""
    roles_function_name: pulumi.Output[str]
    """Lambda that creates the services' roles (safe to invoke again by hand)."""
    security_group_id: pulumi.Output[str]
    """Instance security group; services get 5432 ingress to it through `attachment()`."""
    instance_identifier: pulumi.Output[str]
    """RDS instance identifier (CloudWatch dimension)."""
    dashboard_name: pulumi.Output[str] | None
    """CloudWatch dashboard name; None without its own dashboard (`own_dashboard` false)."""
    dashboard_widgets: pulumi.Output[list[dict[str, Any]]]
    """Its dashboard widgets, for a platform dashboard that shows every component."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:database:Database", name, None, opts)
        self._name = name
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        identifier = f"{args.name_prefix}-postgres"
        # Final snapshots and retained backups stay readable only while their key exists.
        self.key, key_arn = shared_or_own_key(
            f"{name}-key",
            args.kms_key_arn,
            description=f"{args.name_prefix}: PostgreSQL storage and Performance Insights",
            account_id=args.account_id,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.deletion_protection),
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix} PostgreSQL: 5432 only from services that use it",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-subnets",
            description=f"{args.name_prefix} PostgreSQL private subnets",
            subnet_ids=args.private_subnet_ids,
            opts=self._child,
        )
        parameter_group = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{args.major_version}",
            description=f"{args.name_prefix} PostgreSQL {args.major_version}: the seed's settings, TLS only",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(
                    name=key,
                    value=value,
                    apply_method="pending-reboot" if key in STATIC_PARAMETERS else "immediate",
                )
                for key, value in parameters(args.max_connections).items()
            ],
            opts=self._child,
        )
        monitoring_role, monitoring_policy = self._monitoring_role(name, args)
        log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-logs-{export}",
                name=f"/aws/rds/instance/{identifier}/{export}",
                retention_in_days=args.log_retention_days,
                kms_key_id=args.log_kms_key_arn,
                opts=self._child,
            )
            for export in LOG_EXPORTS
        ]
        self.instance = aws.rds.Instance(
            f"{name}-instance",
            identifier=identifier,
            engine="postgres",
            engine_version=args.engine_version,
            # No paid RDS Extended Support: an end-of-life major fails to create instead of billing silently.
            engine_lifecycle_support="open-source-rds-extended-support-disabled",
            instance_class=args.instance_class,
            db_name=args.db_name,
            username=args.master_username,
            manage_master_user_password=True,
            port=POSTGRES_PORT,
            allocated_storage=args.allocated_storage_gb,
            max_allocated_storage=args.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=key_arn,
            multi_az=args.multi_az,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[self.security_group.id],
            publicly_accessible=False,
            parameter_group_name=parameter_group.name,
            backup_retention_period=args.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            skip_final_snapshot=not args.deletion_protection,
            final_snapshot_identifier=f"{identifier}-final" if args.deletion_protection else None,
            delete_automated_backups=not args.deletion_protection,
            iam_database_authentication_enabled=True,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=key_arn,
            performance_insights_retention_period=args.performance_insights_retention_days,
            monitoring_interval=60,
            monitoring_role_arn=monitoring_role.arn,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            tags={"Name": identifier},
            # RDS would create the export log groups itself, unencrypted and kept forever. RDS checks the monitoring
            # role's permissions at create: before its policy is attached, "IAM role ARN value is invalid or does not
            # include the required permissions for: ENHANCED_MONITORING" (pulumi/pulumi#5628).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*log_groups, monitoring_policy]),
        )
        self.endpoint_address = self.instance.address
        self.master_secret_arn = self.instance.master_user_secrets.apply(_first_secret_arn)
        self.security_group_id = self.security_group.id
        self.instance_identifier = self.instance.identifier
        self.roles_function, invocations = self._role_bootstrap(name, args)
        # Any output of an invocation carries it as a dependency to whatever uses the value (task definitions).
        self._usernames = {
            role: invocation.id.apply(lambda _, role=role: role) for role, invocation in invocations.items()
        }
        self.app_username = self._usernames[args.app_username]
        self.roles_function_name = self.roles_function.name
        self._monitoring(name, args)
        self.register_outputs(
            {
                "endpoint_address": self.endpoint_address,
                "master_secret_arn": self.master_secret_arn,
                "security_group_id": self.security_group_id,
                "app_username": self.app_username,
                "roles_function_name": self.roles_function_name,
                "dashboard_name": self.dashboard_name,
            }
        )

    def attachment(self, role: str | None = None) -> ServiceAttachment:
        """Connection settings in `environment` (no secrets: IAM authentication), `rds-db:connect` as exactly one
        role for the task role, 5432 from the service. Without `role`, the job platform's app role; with one of
        `service_roles`, that role and its schema (`DB_SCHEMA`)."""
        user = role or self._args.app_username
        if user not in self._usernames:
            allowed = ", ".join(self._args.service_roles) or "none (no service_roles)"
            raise ValueError(f"attachment(role={role!r}): not one of the database's service_roles; allowed: {allowed}")
        environment: dict[str, pulumi.Input[str]] = {
            "DB_HOST": self.instance.address,
            "DB_PORT": str(POSTGRES_PORT),
            "DB_NAME": self._args.db_name,
            "DB_USER": self._usernames[user],
            "DB_AUTH": "iam",
            # RDS accepts IAM tokens over TLS only (and rds.force_ssl refuses anything else).
            "DB_SSLMODE": "require",
        }
        if role is not None:
            environment["DB_SCHEMA"] = role
        return ServiceAttachment(
            name=self._name,
            environment=environment,
            task_role_statements=[
                allow(["rds-db:connect"], [self.user_arn(user)], sid="ConnectAsOwnRole" if role else "ConnectAsAppRole")
            ],
            peer_security_group_id=self.security_group.id,
            port=POSTGRES_PORT,
        )

    def user_arn(self, role: str) -> pulumi.Output[str]:
        """`arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<role>`: what `rds-db:connect` names."""
        return pulumi.Output.concat(
            "arn:aws:rds-db:",
            self._args.region,
            ":",
            self._args.account_id,
            ":dbuser:",
            self.instance.resource_id,
            "/",
            role,
        )

    # --- IAM ---

    def _monitoring_role(self, name: str, args: DatabaseArgs) -> tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]:
        role = aws.iam.Role(
            f"{name}-monitoring-role",
            assume_role_policy=assume_role_policy("monitoring.rds.amazonaws.com", args.account_id),
            description=f"{args.name_prefix}: RDS enhanced monitoring publishes OS metrics",
            opts=self._child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-monitoring-policy",
            role=role.name,
            policy_arn=ENHANCED_MONITORING_POLICY,
            opts=self._child,
        )
        return role, attachment

    # --- The services' role ---

    def _role_bootstrap(
        self, name: str, args: DatabaseArgs
    ) -> tuple[aws.lambda_.Function, dict[str, aws.lambda_.Invocation]]:
        function_name = f"{args.name_prefix}-db-roles"
        security_group, network = self._roles_function_network(name, args)
        runtime, python_version = ROLES_FUNCTION_RUNTIME
        package = python_lambda_package(
            ROLES_FUNCTION_SOURCE, ["pg8000"], python_version=python_version, architecture=ROLES_FUNCTION_ARCHITECTURE
        )
        function = logged_function(
            f"{name}-roles",
            function_name=function_name,
            role_description="read the master secret, create the services' database roles",
            statements=[allow(["secretsmanager:GetSecretValue"], [self.master_secret_arn], sid="ReadMasterSecret")],
            account_id=args.account_id,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            parent=self,
            vpc=FunctionVpc(args.private_subnet_ids, [security_group.id], args.region),
            description="Creates the services' PostgreSQL roles (IAM authentication, own schemas); idempotent",
            runtime=runtime,
            architectures=[ROLES_FUNCTION_ARCHITECTURE],
            handler="handler.handler",
            code=package.archive,
            timeout=60,
            memory_size=256,
            reserved_concurrent_executions=args.roles_function_reserved_concurrency,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={
                    "DB_HOST": self.instance.address,
                    "DB_PORT": str(POSTGRES_PORT),
                    "DB_NAME": args.db_name,
                    "MASTER_SECRET_ARN": self.master_secret_arn,
                    "ROLES": ",".join((args.app_username, *args.service_roles)),
                    "DB_SSLMODE": "require",
                }
            ),
        )
        invocations = {
            role: aws.lambda_.Invocation(
                f"{name}-roles-invocation" if role == args.app_username else f"{name}-roles-invocation-{role}",
                function_name=function.name,
                input=json.dumps({"roles": [role]}),
                # CREATE_ONLY (the default) invokes on create and on replacement; a changed trigger replaces it.
                triggers={
                    "instance": self.instance.resource_id,
                    "database": args.db_name,
                    "role": role,
                    "code": package.digest,
                },
                # The function must reach the database and Secrets Manager when it runs.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[function, network]),
            )
            for role in (args.app_username, *args.service_roles)
        }
        return function, invocations

    def _roles_function_network(
        self, name: str, args: DatabaseArgs
    ) -> tuple[aws.ec2.SecurityGroup, pulumi.ComponentResource]:
        """Its own security group: 5432 to the database only, HTTPS out for Secrets Manager. The rules are
        grouped under one component, so the invocation can wait for all of them."""
        security_group = aws.ec2.SecurityGroup(
            f"{name}-roles-sg",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix} db-roles function: 5432 to the database, HTTPS to AWS APIs",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        network = pulumi.ComponentResource(
            "container-platform:database:RolesFunctionNetwork", f"{name}-roles-network", None, self._child
        )
        rules = pulumi.ResourceOptions(parent=network)
        allow_between(
            f"{name}-roles-to-database",
            source_security_group_id=security_group.id,
            target_security_group_id=self.security_group.id,
            port=POSTGRES_PORT,
            description=f"{args.name_prefix} db-roles function to PostgreSQL",
            opts=rules,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-roles-egress-https",
            security_group_id=security_group.id,
            description="HTTPS to Secrets Manager through NAT or an endpoint",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4="0.0.0.0/0",
            opts=rules,
        )
        network.register_outputs({})
        return security_group, network

    # --- Monitoring ---

    def _monitoring(self, name: str, args: DatabaseArgs) -> None:
        dimensions = {"DBInstanceIdentifier": self.instance.identifier}
        common: dict[str, Any] = {
            "topic_arn": args.topic_arn, "namespace": "AWS/RDS", "dimensions": dimensions,
            "opts": self._child,
        }  # fmt: skip
        db = f"{args.name_prefix} PostgreSQL"
        self.alarms = [
            alarm(f"{name}-cpu-high", description=f"{db}: CPU utilization is high",
                  metric_name="CPUUtilization", threshold=CPU_ALARM_PERCENT, **common),
            alarm(f"{name}-storage-low", description=f"{db}: free storage space is low",
                  metric_name="FreeStorageSpace", threshold=FREE_STORAGE_ALARM_BYTES,
                  comparison="LessThanThreshold", evaluation_periods=1, **common),
            alarm(f"{name}-connections-high", description=f"{db}: connections near max_connections",
                  metric_name="DatabaseConnections", statistic="Maximum",
                  threshold=args.connections_threshold, **common),
        ]  # fmt: skip
        self.dashboard_widgets = self.instance.identifier.apply(lambda db: database_widgets(args.region, db))
        self.dashboard: aws.cloudwatch.Dashboard | None = None
        self.dashboard_name = None
        if args.own_dashboard:
            self.dashboard = aws.cloudwatch.Dashboard(
                f"{name}-dashboard",
                dashboard_name=f"{args.name_prefix}-database",
                dashboard_body=self.dashboard_widgets.apply(lambda widgets: json.dumps({"widgets": widgets})),
                opts=self._child,
            )
            self.dashboard_name = self.dashboard.dashboard_name


def _first_secret_arn(secrets: Sequence[aws.rds.outputs.InstanceMasterUserSecret] | None) -> str:
    arn = secrets[0].secret_arn if secrets else None
    if not arn:
        raise ValueError("the RDS instance reported no master user secret; manage_master_user_password must be on")
    return arn


def database_dashboard_body(region: str, instance_identifier: str) -> str:
    return json.dumps({"widgets": database_widgets(region, instance_identifier)})


def database_widgets(region: str, instance_identifier: str) -> list[dict[str, Any]]:
    """The seed's widgets: performance (CPU, connections), latency, free storage."""
    db = ["DBInstanceIdentifier", instance_identifier]
    free_storage = graph_widget("Free storage space", region, [["AWS/RDS", "FreeStorageSpace", *db]])
    free_storage["properties"]["view"] = "singleValue"
    widgets: list[dict[str, Any]] = [
        graph_widget(
            "Database performance",
            region,
            [["AWS/RDS", "CPUUtilization", *db], ["AWS/RDS", "DatabaseConnections", *db, {"yAxis": "right"}]],
        ),
        graph_widget("Database latency", region, [["AWS/RDS", "ReadLatency", *db], ["AWS/RDS", "WriteLatency", *db]]),
        free_storage,
    ]
    for widget, width in zip(widgets, (12, 12, 6), strict=True):
        widget.update({"width": width, "height": 6})
    return widgets
