"""The platform, one stack. Reads like the architecture:

config (validated before anything is registered) -> alerts (platform key + topic) -> network -> cluster + ALB
-> images (ECR + scan pipeline + builds) -> shared storage, database, cache -> job queues + worker -> the API
behind the ALB -> monitoring -> the configured services (one loop; Service Connect between them, SG-to-SG for
each declared call) -> their entry: routes on the ALB, or an API Gateway HTTP API with a VPC link (`entry`).
Each component is built from the outputs of the ones before it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pulumi
import pulumi_aws as aws

from components.alerts import Alerts, AlertsArgs
from components.cache import Cache, CacheArgs
from components.cluster import ContainerCluster, ContainerClusterArgs
from components.config import (
    ECS_STRATEGIES,
    JOB_PLATFORM_API_ROUTES,
    OFFLINE_DIGEST,
    ConfigError,
    DeploymentConfig,
    ServiceSpec,
    StackConfig,
    api_shifts_traffic_on_alb,
    database_role,
    load_stack_config,
    min_count,
    missing_digests,
    platform_images,
    queue_url_variable,
    refuse_ci_without_boundary,
    refuse_placeholders,
    refuse_untagged_deployment,
    rolling_only_reason,
    running_offline,
    service_build_order,
    service_deployment,
    worker_deployment,
)
from components.database import Database, DatabaseArgs
from components.ecs_task import DeploymentWait, Rollout, ServiceAttachment, service_connect_discovery_name
from components.guardrails import iam_role_guardrails
from components.http_api import HttpApi, HttpApiArgs, HttpApiDomain, HttpApiTarget, JwtAuthorizer
from components.internal_alb import InternalLoadBalancer, InternalLoadBalancerArgs
from components.microservice import AlbEntry, AlbRoute, EmailSender, Microservice, MicroserviceArgs, allow_call
from components.monitoring import (
    MeshMonitoring,
    MeshMonitoringArgs,
    Monitoring,
    MonitoringArgs,
    WatchedHttpApi,
    WatchedMicroservice,
    WatchedWebService,
)
from components.network import Network, NetworkArgs
from components.office_hours import OfficeHours, OfficeHoursArgs, ScheduledService
from components.registry_cache import PullThroughCache, PullThroughCacheArgs
from components.runtime_security import RuntimeSecurity, RuntimeSecurityArgs
from components.scanning import ImageScanning, ImageScanningArgs, ImageSource
from components.service_queue import ServiceQueueArgs
from components.static_site import ApiOrigin, SiteDomain, StaticSite, StaticSiteArgs
from components.storage import SharedStorage, SharedStorageArgs
from components.tracing import CollectorImage, collector_image_through_cache
from components.web_service import WebService, WebServiceArgs
from components.worker import QueueWorker, QueueWorkerArgs

IMAGES = {
    "api": ImageSource(context=".", dockerfile="services/api/Dockerfile"),
    "worker": ImageSource(context=".", dockerfile="services/worker/Dockerfile"),
}


def app_environment(config: StackConfig) -> dict[str, pulumi.Input[str]]:
    return {
        "APP_ENV": config.environment,
        "LOG_LEVEL": "INFO" if config.is_prod else "DEBUG",
        "AWS_REGION": config.region,
    }


def deployment_wait(config: StackConfig) -> DeploymentWait:
    return DeploymentWait(
        wait_for_steady_state=config.deployment.waitForSteadyState, timeout_minutes=config.deployment.timeoutMinutes
    )


def rollout(settings: DeploymentConfig, *, shifts_traffic: bool = True, headless: bool = False) -> Rollout:
    """The ECS deployment a service gets from its settings: ROLLING where ECS cannot run the chosen strategy (a
    service with several ALB rules or Cloud Map SRV records only), BLUE_GREEN for canary or linear where there is
    no traffic to shift in steps (`headless`: the worker, Service Connect clients)."""
    strategy = settings.strategy if shifts_traffic else "rolling"
    if headless and strategy in ("canary", "linear"):
        strategy = "blueGreen"
    return Rollout(
        strategy=ECS_STRATEGIES[strategy],
        bake_time_minutes=settings.bakeTimeMinutes,
        canary_percent=settings.canaryPercent,
        linear_step_percent=settings.linearStepPercent,
        step_minutes=settings.stepMinutes,
        rollback_alarms=settings.rollbackAlarms,
    )


# API Gateway HTTP API quotas that cannot be raised: 10 MB request payload, 30 s integration timeout. Behind it the
# API refuses larger uploads itself (its own 413 with the limit), instead of API Gateway cutting them off.
HTTP_API_MAX_PAYLOAD_BYTES = 10_000_000


def entry_limits(config: StackConfig) -> dict[str, pulumi.Input[str]]:
    return {"MAX_UPLOAD_BYTES": str(HTTP_API_MAX_PAYLOAD_BYTES)} if config.entry == "httpApi" else {}


def api_processes(cpu_units: int) -> int:
    """uvicorn processes per API task (API_WORKERS): one per whole vCPU, as one Python process can use one."""
    return max(1, cpu_units // 1024)


def main() -> None:
    config = load_stack_config()
    placeholders = refuse_placeholders(config)
    refuse_ci_without_boundary(config, os.environ)
    default_tags = pulumi.Config("aws").get_object("defaultTags") or {}
    refuse_untagged_deployment(config, default_tags)
    prefix = config.name_prefix
    account_id = aws.get_caller_identity_output().account_id
    # Every role of every component gets the platform's IAM path and permissions boundary.
    guarded = pulumi.ResourceOptions(
        transformations=[iam_role_guardrails(config.iam.path, config.iam.permissionsBoundaryArn)]
    )
    common = {"name_prefix": prefix, "region": config.region, "account_id": account_id}

    # With kms.sharedKey the platform key is the stack's one key, kept with deletion-protected data stores.
    retain_key = config.kms.sharedKey and config.deletionProtection
    alerts = Alerts("alerts", AlertsArgs(**common, alert_email=config.alertEmail, retain_key=retain_key), guarded)
    network = Network(
        "network",
        NetworkArgs(
            name_prefix=prefix,
            account_id=account_id,
            log_kms_key_arn=alerts.key_arn,
            cidr_block=config.network.cidrBlock,
            max_azs=config.network.maxAzs,
            nat_gateways=config.network.natGateways,
            egress=config.network.egress,
            nat_instance_type=config.network.natInstanceType,
            nat_instance_ssm=config.network.natInstanceSsm,
            flow_log_retention_days=config.network.flowLogRetentionDays,
            launch_tags=dict(default_tags.get("tags") or {}),
        ),
        guarded,
    )
    test_listener = api_shifts_traffic_on_alb(config)
    cluster = ContainerCluster(
        "cluster",
        ContainerClusterArgs(
            name_prefix=prefix,
            vpc_id=network.vpc_id,
            public_subnet_ids=network.public_subnet_ids,
            log_kms_key_arn=alerts.key_arn,
            log_retention_days=config.logRetentionDays,
            container_insights=config.containerInsights,
            certificate_arn=config.certificateArn,
            deletion_protection=config.deletionProtection,
            entry=config.entry,
            service_connect=bool(config.services),
            test_listener=test_listener,
            test_listener_source_ips=network.nat_public_ips if test_listener else (),
        ),
        guarded,
    )
    images = build_images(config, common, alerts, guarded)
    if config.images.managePullThroughCache:
        PullThroughCache("registry-cache", PullThroughCacheArgs(), guarded)
    in_vpc = {
        **common,
        "vpc_id": network.vpc_id,
        "private_subnet_ids": network.private_subnet_ids,
        "topic_arn": alerts.topic_arn,
    }
    data = data_attachments(config, in_vpc, alerts, guarded)
    attachments = data.attachments

    api_attachments = list(attachments)
    worker = None
    if config.jobPlatform.enabled and images is not None:
        worker = job_worker(config, common, network, cluster, alerts, images, attachments, guarded)
        api_attachments.append(worker.producer_attachment())
    shared = {a.name: a for a in api_attachments}
    services = microservices(config, in_vpc, cluster, alerts, images, shared, data.database, guarded)
    if services:
        mesh_monitoring(config, cluster, alerts, services, guarded)
    if config.entry == "httpApi":
        api = None
        if config.jobPlatform.enabled:
            api = job_platform_api(config, common, network, cluster, alerts, images, api_attachments, guarded)
        http_api = http_entry(config, in_vpc, alerts, services, guarded, platform_targets=api_targets(config, api))
        pulumi.export("url", http_api.endpoint)
        api_origin = ApiOrigin(http_api.endpoint.apply(lambda url: url.removeprefix("https://")), "https-only")
        if api is not None or config.dashboards == "single":
            platform_monitoring(config, cluster, alerts, api, data.dashboard_widgets, guarded, http_api=http_api)
    else:
        api = job_platform_api(config, common, network, cluster, alerts, images, api_attachments, guarded)
        platform_monitoring(config, cluster, alerts, api, data.dashboard_widgets, guarded)
        api_origin = alb_api_origin(config, cluster)
        pulumi.export("albDnsName", cluster.alb_dns_name)
        pulumi.export(
            "url", pulumi.Output.concat("https://" if config.certificateArn else "http://", cluster.alb_dns_name)
        )
    if config.console_enabled:
        console = web_console(config, account_id, api_origin, placeholders)
        pulumi.export("consoleUrl", console.url)
        pulumi.export("consoleBucket", console.bucket_name)
        pulumi.export("consoleDistributionId", console.distribution_id)
    if config.schedule.officeHours is not None:
        office_hours(config, common, network, cluster, data.database, api, worker, guarded)
    if config.runtimeSecurity.enabled:
        log_groups = {name: service.log_group_name for name, service in services.items()}
        if api is not None:
            log_groups["api"] = api.log_group_name
        if worker is not None:
            log_groups["worker"] = worker.task.log_group.name
        runtime_security(config, common, network, cluster, alerts, log_groups, guarded)
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("vpcId", network.vpc_id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("namespaceId", cluster.namespace_id)
    pulumi.export("alertTopicArn", alerts.topic_arn)
    if images is not None:
        pulumi.export("repositoryUrls", images.repository_urls)
        pulumi.export("imageRefs", images.image_refs)
        pulumi.export("scanReportsBucket", images.reports_bucket_name)
    if placeholders:
        pulumi.export("offlineOnlyPlaceholders", placeholders)
    if worker is not None:
        pulumi.export("workerServiceName", worker.service_name)
        pulumi.export("queueUrls", worker.queue_urls)
        pulumi.export("deadLetterQueueUrl", worker.dead_letter_queue_url)
    if services:
        pulumi.export("serviceNames", {name: service.service_name for name, service in services.items()})


def runtime_security(
    config: StackConfig,
    common: Mapping[str, pulumi.Input[str]],
    network: Network,
    cluster: ContainerCluster,
    alerts: Alerts,
    log_groups: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> RuntimeSecurity:
    """GuardDuty (in the stack that owns the detector), security alarms on the services' logs, the responder."""
    settings = config.runtimeSecurity
    security = RuntimeSecurity(
        "runtime-security",
        RuntimeSecurityArgs(
            **common,  # type: ignore[arg-type]
            cluster_arn=cluster.cluster_arn,
            cluster_name=cluster.cluster_name,
            vpc_id=network.vpc_id,
            alert_topic_arn=alerts.topic_arn,
            alert_topic_kms_key_arn=alerts.key_arn,
            log_kms_key_arn=alerts.key_arn,
            kms_key_arn=shared_key_arn(config, alerts),
            service_log_groups=dict(log_groups),
            manage_detector=settings.manageDetector,
            response_severity=settings.responseSeverity,
            quarantine=settings.quarantine,
            audit_retention_days=settings.auditRetentionDays,
            audit_object_lock_days=settings.auditObjectLockDays,
            log_retention_days=config.logRetentionDays,
        ),
        opts,
    )
    pulumi.export("securityAuditBucket", security.audit_bucket_name)
    return security


def office_hours(
    config: StackConfig,
    common: Mapping[str, pulumi.Input[str]],
    network: Network,
    cluster: ContainerCluster,
    database: Database | None,
    api: WebService | None,
    worker: QueueWorker | None,
    opts: pulumi.ResourceOptions,
) -> OfficeHours | None:
    """Outside office hours: the database stopped, the API and worker at 0 tasks, the NAT instance terminated.
    The configured `services` keep running (they are sized and scaled by their own settings)."""
    hours = config.schedule.officeHours
    if hours is None:
        return None
    services = []
    if api is not None:
        service = config.service
        services.append(
            ScheduledService("api", cluster.cluster_name, api.service_name, min_count(service), service.maxCount)
        )
    if worker is not None:
        sizing = config.jobPlatform.worker
        services.append(
            ScheduledService("worker", cluster.cluster_name, worker.service_name, sizing.minCount, sizing.maxCount)
        )
    return OfficeHours(
        "office-hours",
        OfficeHoursArgs(
            name_prefix=config.name_prefix,
            region=config.region,
            account_id=common["account_id"],
            timezone=hours.timezone,
            weekdays=hours.weekdays,
            start=hours.start,
            stop=hours.stop,
            database_identifier=database.instance_identifier if database is not None else None,
            services=services,
            nat_group_name=network.nat_group_name,
        ),
        # The scheduled actions need the services' scalable targets registered first.
        pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(depends_on=[r for r in (api, worker) if r is not None])
        ),
    )


def mesh_monitoring(
    config: StackConfig,
    cluster: ContainerCluster,
    alerts: Alerts,
    services: Mapping[str, Microservice],
    opts: pulumi.ResourceOptions,
) -> MeshMonitoring:
    """One dashboard for the configured services (a row each) and their alarms to the alert topic."""
    watched = [
        WatchedMicroservice(
            name=name,
            service_name=services[name].service_name,
            cluster_name=cluster.cluster_name,
            port=config.services[name].port,
            discovery_name=service_connect_discovery_name(config.name_prefix, name),
        )
        for name in sorted(services)
    ]
    return MeshMonitoring(
        "mesh",
        MeshMonitoringArgs(
            name_prefix=config.name_prefix, region=config.region, topic_arn=alerts.topic_arn, services=watched
        ),
        opts,
    )


def job_platform_api(
    config: StackConfig,
    common: Mapping[str, pulumi.Input[str]],
    network: Network,
    cluster: ContainerCluster,
    alerts: Alerts,
    images: ImageScanning | None,
    api_attachments: list[ServiceAttachment],
    guarded: pulumi.ResourceOptions,
) -> WebService:
    """The job platform's API: behind the ALB, or registered in Cloud Map for the HTTP API entry (no ALB)."""
    service = config.service
    image = service.image or (images.image_refs["api"] if images is not None else None)
    if image is None:  # config validation requires one of them
        raise ValueError("service.image: missing and no API image is built")
    alb: dict[str, object] = {}
    if cluster.has_alb:
        alb = {
            "listener_arn": cluster.listener_arn,
            "alb_security_group_id": cluster.alb_security_group_id,
            "alb_arn_suffix": cluster.alb_arn_suffix,
        }
    if cluster.test_listener is not None:
        alb["test_listener"] = cluster.test_listener
    deploy = service_deployment(config, service.deployment)
    api = WebService(
        "api",
        WebServiceArgs(
            **common,  # type: ignore[arg-type]
            service_name="api",
            image=image,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cluster_arn=cluster.cluster_arn,
            cluster_name=cluster.cluster_name,
            namespace_id=cluster.namespace_id,
            log_kms_key_arn=alerts.key_arn,
            cpu=service.cpu,
            memory=service.memory,
            desired_count=service.desiredCount,
            min_count=min_count(service),
            max_count=service.maxCount,
            container_port=service.containerPort,
            health_check_path=service.healthCheckPath,
            environment={
                **app_environment(config),
                "API_WORKERS": str(api_processes(service.cpu)),
                **entry_limits(config),
            },
            attachments=api_attachments,
            log_retention_days=config.logRetentionDays,
            cpu_architecture=service.cpuArchitecture,
            on_demand_base=service.onDemandBase,
            spot_weight=service.spotWeight,
            enable_execute_command=service.enableExecuteCommand,
            deployment=deployment_wait(config),
            # Behind the HTTP API the API is found through Cloud Map SRV records, which ECS does not shift.
            rollout=rollout(deploy, shifts_traffic=cluster.has_alb),
            smoke_tests=[(test.path, test.status) for test in deploy.smokeTests],
            register_for_http_api=not cluster.has_alb,
            **alb,  # type: ignore[arg-type]
        ),
        guarded,
    )
    pulumi.export("apiServiceName", api.service_name)
    pulumi.export("apiLogGroup", api.log_group_name)
    return api


def api_targets(config: StackConfig, api: WebService | None) -> list[tuple[HttpApiTarget, WebService]]:
    """The job platform's API as the HTTP API's catch-all target (every route no service claims)."""
    if api is None:
        return []
    target = HttpApiTarget(
        service="api",
        discovery_service_arn=api.discovery_service_arn,
        port=config.service.containerPort,
        routes=list(JOB_PLATFORM_API_ROUTES),
        security_group_id=api.security_group_id,
    )
    return [(target, api)]


def platform_monitoring(
    config: StackConfig,
    cluster: ContainerCluster,
    alerts: Alerts,
    api: WebService | None,
    data_widgets: Sequence[pulumi.Output[list[dict[str, Any]]]],
    opts: pulumi.ResourceOptions,
    *,
    http_api: HttpApi | None = None,
) -> Monitoring:
    """The API's alarms and the platform dashboard (with the data stores' widgets when `dashboards: single`)."""
    watched = []
    if api is not None:
        watched.append(WatchedWebService("api", api.service_name, api.target_group_arn_suffix))
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            name_prefix=config.name_prefix,
            region=config.region,
            topic_arn=alerts.topic_arn,
            cluster_name=cluster.cluster_name,
            alb_arn_suffix=cluster.alb_arn_suffix if cluster.has_alb else None,
            http_api=WatchedHttpApi(http_api.api_id) if http_api is not None else None,
            web_services=watched,
            extra_widgets=list(data_widgets) if config.dashboards == "single" else [],
        ),
        opts,
    )
    pulumi.export("dashboardName", monitoring.dashboard_name)
    return monitoring


def service_environment(
    config: StackConfig, spec: ServiceSpec, internal: InternalLoadBalancer | None = None
) -> dict[str, pulumi.Input[str]]:
    """The platform's variables, `<CALLEE>_URL` per declared call (`http://<callee>:<port>`, the Service Connect
    name, or the internal ALB's listener of a callee behind it), then the service's own."""
    calls: dict[str, pulumi.Input[str]] = {}
    for callee in spec.calls:
        port = config.services[callee].port
        url = f"http://{callee}:{port}"
        calls[f"{callee.upper().replace('-', '_')}_URL"] = (
            internal.url(port)
            if internal is not None and port is not None and config.services[callee].internalLoadBalancer
            else url
        )
    return {**app_environment(config), **calls, **spec.environment}


def internal_load_balancer(
    config: StackConfig, in_vpc: Mapping[str, pulumi.Input[str]], opts: pulumi.ResourceOptions
) -> InternalLoadBalancer | None:
    """The one internal ALB, only where config puts a service behind it."""
    if not any(spec.internalLoadBalancer for spec in config.services.values()):
        return None
    internal = InternalLoadBalancer(
        "internal",
        InternalLoadBalancerArgs(
            name_prefix=config.name_prefix,
            vpc_id=in_vpc["vpc_id"],
            private_subnet_ids=in_vpc["private_subnet_ids"],  # type: ignore[arg-type]
            deletion_protection=config.deletionProtection,
            certificate_arn=config.internalLoadBalancer.certificateArn,
            domain_name=config.internalLoadBalancer.domainName,
        ),
        opts,
    )
    pulumi.export("internalAlbDnsName", internal.dns_name)
    return internal


def alb_routes(config: StackConfig) -> dict[str, list[AlbRoute]]:
    """Listener rule priorities 1..N over every service's routes in name order (below the API's catch-all 100)."""
    ordered = [(name, route) for name in sorted(config.services) for route in config.services[name].routes]
    routes: dict[str, list[AlbRoute]] = {}
    for priority, (name, route) in enumerate(ordered, start=1):
        routes.setdefault(name, []).append(AlbRoute(priority=priority, route=route))
    return routes


def microservices(
    config: StackConfig,
    in_vpc: Mapping[str, pulumi.Input[str]],
    cluster: ContainerCluster,
    alerts: Alerts,
    images: ImageScanning | None,
    attachments: Mapping[str, ServiceAttachment],
    database: Database | None,
    opts: pulumi.ResourceOptions,
) -> dict[str, Microservice]:
    """Every configured service, each from the same secure task (queue owners before the services that send to
    them); then SG-to-SG for exactly the declared calls."""
    on_alb = alb_routes(config) if cluster.has_alb else {}
    collector = tracing_collector(config)
    internal = internal_load_balancer(config, in_vpc, opts)
    built: dict[str, Microservice] = {}
    for name in service_build_order(config):
        spec = config.services[name]
        alb = None
        if name in on_alb:
            alb = AlbEntry(
                listener_arn=cluster.listener_arn,
                security_group_id=cluster.alb_security_group_id,
                arn_suffix=cluster.alb_arn_suffix,
                routes=on_alb[name],
            )
        built[name] = Microservice(
            name,
            MicroserviceArgs(
                name_prefix=config.name_prefix,
                service_name=name,
                image=spec.image or service_image(images, name),
                region=config.region,
                account_id=in_vpc["account_id"],
                vpc_id=in_vpc["vpc_id"],
                private_subnet_ids=in_vpc["private_subnet_ids"],  # type: ignore[arg-type]
                cluster_arn=cluster.cluster_arn,
                cluster_name=cluster.cluster_name,
                namespace_id=cluster.namespace_id,
                namespace_arn=cluster.namespace_arn,
                log_kms_key_arn=alerts.key_arn,
                port=spec.port,
                cpu=spec.cpu,
                memory=spec.memory,
                desired_count=spec.desiredCount,
                min_count=min_count(spec),
                max_count=spec.maxCount,
                health_check_path=spec.healthCheckPath,
                health_check_command=spec.healthCheckCommand,
                environment=service_environment(config, spec, internal),
                secrets=spec.secrets,
                attachments=service_attachments(name, spec, attachments, database, built),
                request_timeout_seconds=spec.requestTimeoutSeconds,
                log_retention_days=config.logRetentionDays,
                cpu_architecture=config.service.cpuArchitecture,
                on_demand_base=spec.onDemandBase,
                spot_weight=spec.spotWeight,
                deployment=deployment_wait(config),
                rollout=rollout(
                    service_deployment(config, spec.deployment),
                    shifts_traffic=rolling_only_reason(config, spec) is None,
                    headless=spec.port is None,
                ),
                alb=alb,
                internal_alb=internal.entry if internal is not None and spec.internalLoadBalancer else None,
                register_for_http_api=config.entry == "httpApi" and bool(spec.routes),
                tracing=collector if spec.tracing else None,
                alert_topic_arn=alerts.topic_arn,
                queue=service_queue(spec),
                generated_secrets={variable: secret.bytes for variable, secret in spec.generatedSecrets.items()},
                keep_previous=[variable for variable, secret in spec.generatedSecrets.items() if secret.keepPrevious],
                email=EmailSender(spec.email.fromAddress, spec.email.sending_identity) if spec.email else None,
            ),
            opts,
        )
    for name, spec in config.services.items():
        for callee in spec.calls:
            allow_call(built[name], built[callee])
    return built


def service_attachments(
    name: str,
    spec: ServiceSpec,
    shared: Mapping[str, ServiceAttachment],
    database: Database | None,
    built: Mapping[str, Microservice],
) -> list[ServiceAttachment]:
    """The shared resources a service attaches (the database as its own role), then a send grant for each queue
    it sends to (its owner is built already)."""
    attachments = [
        database.attachment(role=database_role(name)) if resource == "database" and database else shared[resource]
        for resource in spec.attaches
    ]
    for target in spec.sendsTo:
        queue = built[target].queue
        if queue is None:  # config validation requires a queue on every sendsTo target
            raise ValueError(f"services.{name}.sendsTo: {target!r} has no queue")
        attachments.append(queue.sender_attachment(target, queue_url_variable(target)))
    return attachments


def service_queue(spec: ServiceSpec) -> ServiceQueueArgs | None:
    queue = spec.queue
    if queue is None:
        return None
    return ServiceQueueArgs(
        max_receives=queue.maxReceives,
        visibility_timeout_seconds=queue.visibilityTimeoutSeconds,
        retention_seconds=queue.retentionDays * 24 * 3600,
        acceptable_latency_seconds=queue.acceptableLatencySeconds,
        average_processing_seconds=queue.averageProcessingSeconds,
        oldest_message_alarm_seconds=queue.oldestMessageAlarmSeconds,
    )


def tracing_collector(config: StackConfig) -> CollectorImage | None:
    """The ADOT collector through this account's pull-through cache of public.ecr.aws, when a service traces.
    The account id is read once, as a plain string: a sidecar's image is checked before the task is built."""
    if not any(spec.tracing for spec in config.services.values()):
        return None
    return collector_image_through_cache(aws.get_caller_identity().account_id, config.region)


def service_image(images: ImageScanning | None, name: str) -> pulumi.Output[str]:
    if images is None or name not in images.image_refs:  # config validation requires image or build
        raise ValueError(f"services.{name}: no image and none built")
    return images.image_refs[name]


def http_entry(
    config: StackConfig,
    in_vpc: Mapping[str, pulumi.Input[str]],
    alerts: Alerts,
    services: Mapping[str, Microservice],
    opts: pulumi.ResourceOptions,
    platform_targets: Sequence[tuple[HttpApiTarget, WebService]] = (),
) -> HttpApi:
    """The HTTP API in front of every service with routes; each lets the VPC link in on its port only."""
    targets = []
    for name, spec in config.services.items():
        discovery = services[name].discovery_service_arn
        if not spec.routes or discovery is None or spec.port is None:
            continue
        targets.append(
            HttpApiTarget(
                service=name,
                discovery_service_arn=discovery,
                port=spec.port,
                routes=list(spec.routes),
                security_group_id=services[name].security_group_id,
            )
        )
    targets.extend(target for target, _ in platform_targets)
    settings = config.httpApi
    domain = settings.customDomain
    jwt = settings.jwtAuthorizer
    api = HttpApi(
        "http-api",
        HttpApiArgs(
            name_prefix=config.name_prefix,
            region=config.region,
            account_id=in_vpc["account_id"],
            vpc_id=in_vpc["vpc_id"],
            subnet_ids=in_vpc["private_subnet_ids"],  # type: ignore[arg-type]
            targets=targets,
            log_kms_key_arn=alerts.key_arn,
            log_retention_days=config.logRetentionDays,
            throttling_burst_limit=settings.throttlingBurstLimit,
            throttling_rate_limit=settings.throttlingRateLimit,
            route_throttling={route: (limit.burst, limit.rate) for route, limit in settings.routeThrottling.items()},
            custom_domain=HttpApiDomain(domain.domainName, domain.certificateArn) if domain else None,
            jwt_authorizer=JwtAuthorizer(jwt.issuer, list(jwt.audiences)) if jwt else None,
            public_routes=list(settings.publicRoutes),
        ),
        opts,
    )
    receivers: dict[str, Microservice | WebService] = {**services, **{t.service: s for t, s in platform_targets}}
    for target in targets:
        receivers[target.service].allow_ingress_from("http-api", api.vpc_link_security_group_id)
    if settings.publicRoutes:
        # Public on purpose: the runner feeds them to the pack, whose authorization advisory then skips them.
        pulumi.export(
            "policyPackConfig",
            {"aws-apigateway-route-require-authorization": {"publicRouteKeys": sorted(settings.publicRoutes)}},
        )
    return api


def alb_api_origin(config: StackConfig, cluster: ContainerCluster) -> ApiOrigin:
    """The ALB as the console's API origin: by the name its certificate covers over TLS, else by its DNS name over
    HTTP (an ALB without a certificate serves nothing else; the pack flags the plaintext hop)."""
    if config.certificateArn is not None and config.console.apiOriginDomain is not None:
        return ApiOrigin(config.console.apiOriginDomain, "https-only")
    return ApiOrigin(cluster.alb_dns_name, "http-only")


def web_console(
    config: StackConfig, account_id: pulumi.Input[str], api_origin: ApiOrigin, placeholders: list[str]
) -> StaticSite:
    """The console on S3 + CloudFront. Offline, an unbuilt app plans with no content (listed with the
    placeholders); a real deployment refuses it, as it refuses placeholders."""
    settings = config.console
    built = Path(__file__).resolve().parent / settings.buildDirectory
    content: Path | None = built
    if not (built / "index.html").is_file():
        problem = f"console.buildDirectory: {settings.buildDirectory} has no index.html; run `npm --prefix web ci && npm --prefix web run build` first"
        if not running_offline():
            raise ConfigError([problem])
        placeholders.append(problem)
        content = None
    domain = settings.customDomain
    return StaticSite(
        "console",
        StaticSiteArgs(
            name_prefix=config.name_prefix,
            account_id=account_id,
            content_directory=content,
            api_origin=api_origin,
            custom_domain=SiteDomain(domain.domainName, domain.certificateArn) if domain else None,
            web_acl_arn=settings.webAclArn,
            price_class=settings.priceClass,
            log_expiration_days=config.logRetentionDays,
        ),
    )


def promoted_digests(config: StackConfig) -> dict[str, str]:
    """The digests CI gave; offline, a marked placeholder for each one missing (a real deploy refuses to run)."""
    return {**dict.fromkeys(missing_digests(config), OFFLINE_DIGEST), **config.images.digests.given()}


def build_images(
    config: StackConfig, common: Mapping[str, pulumi.Input[str]], alerts: Alerts, opts: pulumi.ResourceOptions
) -> ImageScanning | None:
    """Repositories, scan pipeline and builds for the job platform's images and each service with `build`;
    None when nothing is built or promoted here (every service runs a pinned image from elsewhere). The stack that
    owns the account's pull-through cache rule (the tracing collector's source) creates it here too."""
    overrides = {
        key: image
        for key, image in (("api", config.service.image), ("worker", config.jobPlatform.worker.image))
        if image is not None
    }
    wanted = {key: IMAGES[key] for key in platform_images(config)}
    for name, spec in config.services.items():
        if spec.build is not None:
            wanted[name] = ImageSource(context=".", dockerfile=f"{spec.build}/Dockerfile")
    if not wanted:
        return None
    service_digests = {name: spec.digest for name, spec in config.services.items() if spec.digest is not None}
    return ImageScanning(
        "images",
        ImageScanningArgs(
            **common,  # type: ignore[arg-type]
            images=wanted,
            alert_topic_arn=alerts.topic_arn,
            alert_topic_kms_key_arn=alerts.key_arn,
            log_kms_key_arn=alerts.key_arn,
            kms_key_arn=shared_key_arn(config, alerts),
            platform=config.images.platform,
            keep_tagged_images=config.images.keepTaggedImages,
            manage_registry_scanning=config.images.manageRegistryScanning,
            continuous_scanning=config.images.continuousScanning,
            severity_threshold=config.images.severityThreshold,
            build_images=config.images.build,
            image_overrides=overrides,
            promoted_digests={**promoted_digests(config), **service_digests},
            source_repository_url=config.images.sourceRepositoryUrl,
            pull_principals=tuple(config.images.pullPrincipals),
            log_retention_days=config.logRetentionDays,
        ),
        opts,
    )


def shared_key_arn(config: StackConfig, alerts: Alerts) -> pulumi.Output[str] | None:
    """The platform key as every component's key with `kms.sharedKey`; None: each component makes its own."""
    return alerts.key_arn if config.kms.sharedKey else None


class DataStores(NamedTuple):
    attachments: list[ServiceAttachment]
    """What a service needs to use each store (the database as the job platform's app role)."""
    dashboard_widgets: list[pulumi.Output[list[dict[str, Any]]]]
    """Each store's dashboard widgets, for the platform dashboard with `dashboards: single`."""
    database: Database | None
    """The database, for attachments as a service's own role; None when disabled."""


def data_attachments(
    config: StackConfig, in_vpc: Mapping[str, pulumi.Input[str]], alerts: Alerts, opts: pulumi.ResourceOptions
) -> DataStores:
    """Storage, database and cache, each when enabled, as what a service needs to use them."""
    attachments: list[ServiceAttachment] = []
    widgets: list[pulumi.Output[list[dict[str, Any]]]] = []
    database: Database | None = None
    own_dashboard = config.dashboards == "perComponent"
    protect = config.deletionProtection
    if config.storage.enabled:
        storage = SharedStorage(
            "storage",
            SharedStorageArgs(
                **in_vpc,  # type: ignore[arg-type]
                subnet_count=config.network.maxAzs,
                performance_mode=config.storage.performanceMode,
                throughput_mode=config.storage.throughputMode,
                provisioned_throughput_mibps=config.storage.provisionedThroughputMibps,
                # EFS offers the archive tier only to generalPurpose + elastic file systems.
                transition_to_archive_days=90 if config.storage.throughputMode == "elastic" else None,
                deletion_protection=protect,
                kms_key_arn=shared_key_arn(config, alerts),
                own_dashboard=own_dashboard,
            ),
            opts,
        )
        attachments.append(storage.attachment(mount_path=config.storage.mountPath))
        widgets.append(storage.dashboard_widgets)
    if config.database.enabled:
        database = Database(
            "database",
            DatabaseArgs(
                **in_vpc,  # type: ignore[arg-type]
                log_kms_key_arn=alerts.key_arn,
                instance_class=config.database.instanceClass,
                allocated_storage_gb=config.database.allocatedStorageGb,
                max_allocated_storage_gb=config.database.maxAllocatedStorageGb,
                multi_az=config.database.multiAz,
                deletion_protection=protect,
                backup_retention_days=config.database.backupRetentionDays,
                max_connections=config.database.maxConnections,
                log_retention_days=config.logRetentionDays,
                kms_key_arn=shared_key_arn(config, alerts),
                own_dashboard=own_dashboard,
                service_roles=[database_role(n) for n, s in config.services.items() if "database" in s.attaches],
            ),
            opts,
        )
        attachments.append(database.attachment())
        widgets.append(database.dashboard_widgets)
    if config.cache.enabled:
        cache = Cache(
            "cache",
            CacheArgs(
                **in_vpc,  # type: ignore[arg-type]
                log_kms_key_arn=alerts.key_arn,
                node_type=config.cache.nodeType,
                num_cache_clusters=config.cache.numCacheClusters,
                multi_az=config.cache.automaticFailover,
                snapshot_retention_days=config.cache.snapshotRetentionDays,
                log_retention_days=config.logRetentionDays,
                deletion_protection=protect,
                kms_key_arn=shared_key_arn(config, alerts),
                own_dashboard=own_dashboard,
            ),
            opts,
        )
        attachments.append(cache.attachment())
        widgets.append(cache.dashboard_widgets)
    return DataStores(attachments, widgets, database)


def job_worker(
    config: StackConfig,
    common: Mapping[str, pulumi.Input[str]],
    network: Network,
    cluster: ContainerCluster,
    alerts: Alerts,
    images: ImageScanning,
    attachments: list[ServiceAttachment],
    opts: pulumi.ResourceOptions,
) -> QueueWorker:
    jobs = config.jobPlatform
    return QueueWorker(
        "worker",
        QueueWorkerArgs(
            **common,  # type: ignore[arg-type]
            image=jobs.worker.image or images.image_refs["worker"],
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            cluster_arn=cluster.cluster_arn,
            cluster_name=cluster.cluster_name,
            log_kms_key_arn=alerts.key_arn,
            alert_topic_arn=alerts.topic_arn,
            cpu=jobs.worker.cpu,
            memory=jobs.worker.memory,
            min_count=jobs.worker.minCount,
            max_count=jobs.worker.maxCount,
            on_demand_base=jobs.worker.onDemandBase,
            spot_weight=jobs.worker.spotWeight,
            acceptable_latency_seconds=jobs.acceptableLatencySeconds,
            average_processing_seconds=jobs.averageProcessingSeconds,
            max_receives=jobs.maxReceives,
            visibility_timeout_seconds=jobs.visibilityTimeoutSeconds,
            oldest_message_alarm_seconds=jobs.oldestMessageAlarmSeconds,
            environment=app_environment(config),
            attachments=attachments,
            log_retention_days=config.logRetentionDays,
            cpu_architecture=config.service.cpuArchitecture,
            deployment=deployment_wait(config),
            rollout=rollout(worker_deployment(config)),
        ),
        opts,
    )


main()
