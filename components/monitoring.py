"""Monitoring: the services dashboard and the alarms that page the alert topic.

`alarm()` is the one way any component creates an alarm: it always notifies the topic on ALARM and OK.
`Monitoring` watches the job platform's API behind the ALB or behind the HTTP API entry (then its 5XX and latency
alarms read the HTTP API's own metrics, AWS/ApiGateway `5xx` and `Latency` in milliseconds per `ApiId`, and a
running-below-desired alarm takes the place of the target group's health checks); with `extra_widgets` its
dashboard also shows the data stores' widgets, one platform dashboard instead of one per component. `MeshMonitoring` watches a set of Service Connect
microservices: three alarms per service and ONE dashboard for the whole mesh (a dashboard costs $3/month), a row
per service.

Service Connect metrics (AWS/ECS namespace, Amazon ECS developer guide "Available metrics and dimensions"):
`RequestCount` is per `DiscoveryName, ServiceName, ClusterName` (inbound requests of the serving tasks);
`HTTPCode_Target_5XX_Count` and `TargetResponseTime` (milliseconds) are per `TargetDiscoveryName` (all mesh clients'
traffic to that name) or per `TargetDiscoveryName, ServiceName, ClusterName` where ServiceName is the *calling*
service, so a service's own 5XX and latency use `TargetDiscoveryName` alone. They count only traffic that passes
through Service Connect proxies (mesh calls), not the API gateway's calls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class WatchedWebService:
    name: str
    """Short name used in alarm and widget names."""
    service_name: pulumi.Input[str]
    """ECS service name."""
    target_group_arn_suffix: pulumi.Input[str] | None = None
    """Its target group's ARN suffix; None when it is not behind the ALB (the HTTP API entry). Default: none."""


@dataclass(frozen=True)
class WatchedHttpApi:
    api_id: pulumi.Input[str]
    """API Gateway HTTP API id (the `ApiId` dimension of its metrics)."""


@dataclass(frozen=True)
class MonitoringArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    region: str
    """Region of the dashboard's metrics."""
    topic_arn: pulumi.Input[str]
    """Alert topic every alarm notifies."""
    cluster_name: pulumi.Input[str]
    """ECS cluster name."""
    alb_arn_suffix: pulumi.Input[str] | None = None
    """ALB ARN suffix; None without an ALB. Default: none."""
    http_api: WatchedHttpApi | None = None
    """The HTTP API the services are behind when there is no ALB. Default: none."""
    web_services: Sequence[WatchedWebService] = ()
    """Services behind the ALB (with a target group) or the HTTP API (without). Default: none."""
    cpu_alarm_percent: float = 85
    """Service CPU alarm threshold (seed: 85). Default: 85."""
    memory_alarm_percent: float = 90
    """Service memory alarm threshold (seed: 90). Default: 90."""
    target_5xx_alarm_count: float = 10
    """Target 5XX count per 5 minutes (seed: 10). Default: 10."""
    p99_latency_alarm_seconds: float = 2.0
    """p99 target response time alarm. Default: 2 s."""
    missing_task_minutes: int = 5
    """Without a target group: alarm when fewer tasks run than desired for this many minutes (needs Container
    Insights). Default: 5."""
    extra_widgets: Sequence[pulumi.Input[Sequence[Mapping[str, Any]]]] = ()
    """Other components' dashboard widgets (database, cache, storage), laid out below the services' on the same
    dashboard. Default: none."""

    def __post_init__(self) -> None:
        if self.alb_arn_suffix is not None and self.http_api is not None:
            raise ValueError("MonitoringArgs: alb_arn_suffix and http_api both set; allowed: one entry")
        for service in self.web_services:
            if service.target_group_arn_suffix is not None and self.alb_arn_suffix is None:
                raise ValueError(
                    f"MonitoringArgs.web_services: {service.name} has a target group but alb_arn_suffix is none"
                )


@dataclass(frozen=True)
class WatchedMicroservice:
    name: str
    """Short service name used in alarm and widget names, e.g. `orders`."""
    service_name: pulumi.Input[str]
    """ECS service name."""
    cluster_name: pulumi.Input[str]
    """ECS cluster name."""
    port: int | None
    """Service Connect server port; None for a client-only service (no request, 5XX or latency metrics)."""
    discovery_name: str | None = None
    """Its Service Connect discovery name. `TargetDiscoveryName` metrics are not per cluster, so two stacks in one
    account that serve the same discovery name share them: give each stack its own (e.g. `<app>-<env>-orders`).
    Default: `name`."""

    @property
    def metrics_discovery_name(self) -> str:
        return self.discovery_name or self.name


@dataclass(frozen=True)
class MeshMonitoringArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    region: str
    """Region of the dashboard's metrics."""
    topic_arn: pulumi.Input[str]
    """Alert topic every alarm notifies."""
    services: Sequence[WatchedMicroservice]
    """The services of the mesh, one dashboard row each, in this order."""
    target_5xx_alarm_count: float = 10
    """5XX responses per 5 minutes, two periods in a row (the ALB alarm's threshold). Default: 10."""
    latency_alarm_milliseconds: float = 2000
    """Response time alarm threshold; Service Connect reports milliseconds. Default: 2000 (the ALB alarm's 2 s)."""
    latency_statistic: str = "Average"
    """Statistic of the latency alarm. AWS documents Average, Minimum, Maximum, Sum and SampleCount for Service
    Connect's TargetResponseTime; a percentile with no data would leave the alarm silent forever (missing data is
    not breaching), so the documented Average is the default. Default: Average."""
    missing_task_minutes: int = 5
    """Alarm when fewer tasks run than desired for this many consecutive minutes (a deployment or a scale-out
    fills the gap within a few). Needs Container Insights on the cluster. Default: 5."""


def alarm(
    name: str,
    *,
    topic_arn: pulumi.Input[str],
    description: str,
    namespace: str,
    metric_name: str,
    dimensions: Mapping[str, pulumi.Input[str]],
    threshold: float,
    statistic: str | None = "Average",
    extended_statistic: str | None = None,
    comparison: str = "GreaterThanThreshold",
    evaluation_periods: int = 2,
    period: int = 300,
    treat_missing_data: str = "missing",
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric_name,
        dimensions=dict(dimensions),
        statistic=None if extended_statistic else statistic,
        extended_statistic=extended_statistic,
        period=period,
        evaluation_periods=evaluation_periods,
        comparison_operator=comparison,
        threshold=threshold,
        treat_missing_data=treat_missing_data,
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=opts,
    )


class Monitoring(pulumi.ComponentResource):
    dashboard_name: pulumi.Output[str]
    """CloudWatch dashboard name."""
    alarm_arns: pulumi.Output[list[str]]
    """Every alarm this component created."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:monitoring:Monitoring", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        for service in args.web_services:
            self.alarms.extend(self._service_alarms(name, args, service))
        entry = args.http_api.api_id if args.http_api is not None else args.alb_arn_suffix
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{args.name_prefix}-containers",
            dashboard_body=pulumi.Output.all(
                args.cluster_name,
                entry,
                [pulumi.Output.from_input(s.service_name) for s in args.web_services],
                [pulumi.Output.from_input(w) for w in args.extra_widgets],
            ).apply(
                lambda values: dashboard_body(
                    args.region,
                    values[0],
                    values[1] if args.http_api is None else None,
                    values[2],
                    http_api_id=values[1] if args.http_api is not None else None,
                    extra_widgets=[widget for widgets in values[3] for widget in widgets],
                )
            ),
            opts=self._child,
        )
        self.dashboard_name = self.dashboard.dashboard_name
        self.alarm_arns = pulumi.Output.all(*[a.arn for a in self.alarms])
        self.register_outputs({"dashboard_name": self.dashboard_name, "alarm_arns": self.alarm_arns})

    def _service_alarms(
        self, name: str, args: MonitoringArgs, service: WatchedWebService
    ) -> list[aws.cloudwatch.MetricAlarm]:
        prefix = f"{name}-{service.name}"
        ecs = {"ClusterName": args.cluster_name, "ServiceName": service.service_name}
        common: dict[str, Any] = {"topic_arn": args.topic_arn, "opts": self._child}
        alarms = [
            alarm(f"{prefix}-cpu-high", description=f"{service.name}: CPU utilization is too high",
                  namespace="AWS/ECS", metric_name="CPUUtilization", dimensions=ecs,
                  threshold=args.cpu_alarm_percent, **common),
            alarm(f"{prefix}-memory-high", description=f"{service.name}: memory utilization is too high",
                  namespace="AWS/ECS", metric_name="MemoryUtilization", dimensions=ecs,
                  threshold=args.memory_alarm_percent, **common),
        ]  # fmt: skip
        if service.target_group_arn_suffix is None:
            return [*alarms, *self._http_api_alarms(prefix, args, service)]
        if args.alb_arn_suffix is None:  # __post_init__ refuses it; narrows the type
            raise ValueError("MonitoringArgs.alb_arn_suffix: none with a target group")
        target = {"LoadBalancer": args.alb_arn_suffix, "TargetGroup": service.target_group_arn_suffix}
        return [
            *alarms,
            alarm(f"{prefix}-target-5xx", description=f"{service.name}: too many 5XX errors from the application",
                  namespace="AWS/ApplicationELB", metric_name="HTTPCode_Target_5XX_Count", dimensions=target,
                  statistic="Sum", threshold=args.target_5xx_alarm_count, treat_missing_data="notBreaching",
                  **common),
            alarm(f"{prefix}-unhealthy-hosts", description=f"{service.name}: targets failing health checks",
                  namespace="AWS/ApplicationELB", metric_name="UnHealthyHostCount", dimensions=target,
                  statistic="Maximum", threshold=0, period=60, evaluation_periods=3, **common),
            alarm(f"{prefix}-latency-p99", description=f"{service.name}: p99 response time is too high",
                  namespace="AWS/ApplicationELB", metric_name="TargetResponseTime", dimensions=target,
                  extended_statistic="p99", threshold=args.p99_latency_alarm_seconds, period=60,
                  evaluation_periods=5, treat_missing_data="notBreaching", **common),
        ]  # fmt: skip

    def _http_api_alarms(
        self, prefix: str, args: MonitoringArgs, service: WatchedWebService
    ) -> list[aws.cloudwatch.MetricAlarm]:
        """No target group, so no ALB health checks: tasks missing against desired (the ECS container health
        check replaces failing tasks), and the HTTP API's 5XX and p99 latency (milliseconds) when it has one."""
        watched = WatchedMicroservice(
            name=service.name, service_name=service.service_name, cluster_name=args.cluster_name, port=None
        )
        alarms = [
            tasks_missing_alarm(
                f"{prefix}-tasks-missing",
                watched,
                topic_arn=args.topic_arn,
                minutes=args.missing_task_minutes,
                opts=self._child,
            )
        ]
        if args.http_api is None:
            return alarms
        api = {"ApiId": args.http_api.api_id}
        common: dict[str, Any] = {"topic_arn": args.topic_arn, "opts": self._child, "namespace": "AWS/ApiGateway"}
        return [
            *alarms,
            alarm(f"{prefix}-api-5xx", description=f"{service.name}: too many 5XX responses from the HTTP API",
                  metric_name="5xx", dimensions=api, statistic="Sum", threshold=args.target_5xx_alarm_count,
                  treat_missing_data="notBreaching", **common),
            alarm(f"{prefix}-latency-p99", description=f"{service.name}: p99 response time is too high",
                  metric_name="Latency", dimensions=api, extended_statistic="p99",
                  threshold=args.p99_latency_alarm_seconds * 1000, period=60, evaluation_periods=5,
                  treat_missing_data="notBreaching", **common),
        ]  # fmt: skip


def dashboard_body(
    region: str,
    cluster_name: str,
    alb_arn_suffix: str | None,
    service_names: Sequence[str],
    *,
    http_api_id: str | None = None,
    extra_widgets: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The seed's three widgets per service: ECS metrics, entry (load balancer or HTTP API) metrics, error rates;
    then `extra_widgets` (other components' own), flowed below in rows of 24 grid units."""
    widgets: list[dict[str, Any]] = []
    for service in service_names:
        ecs = ["ClusterName", cluster_name, "ServiceName", service]
        widgets.append(
            graph_widget(
                f"{service}: ECS service metrics",
                region,
                [
                    ["AWS/ECS", "CPUUtilization", *ecs],
                    ["AWS/ECS", "MemoryUtilization", *ecs],
                    ["ECS/ContainerInsights", "RunningTaskCount", *ecs, {"yAxis": "right"}],
                ],
            )
        )
    if alb_arn_suffix is not None:
        widgets.extend(_alb_widgets(region, alb_arn_suffix))
    if http_api_id is not None:
        widgets.extend(_http_api_widgets(region, http_api_id))
    for index, widget in enumerate(widgets):
        widget.update({"x": (index % 2) * 12, "y": (index // 2) * 6, "width": 12, "height": 6})
    top = ((len(widgets) + 1) // 2) * 6
    return json.dumps({"widgets": [*widgets, *flow_layout(extra_widgets, top=top)]})


def _alb_widgets(region: str, alb_arn_suffix: str) -> list[dict[str, Any]]:
    alb = ["LoadBalancer", alb_arn_suffix]
    return [
        graph_widget(
            "Load balancer metrics",
            region,
            [
                ["AWS/ApplicationELB", "RequestCount", *alb, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "TargetResponseTime", *alb, {"yAxis": "right"}],
            ],
        ),
        graph_widget(
            "Error rates",
            region,
            [
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", *alb, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *alb, {"stat": "Sum"}],
            ],
        ),
    ]


def _http_api_widgets(region: str, api_id: str) -> list[dict[str, Any]]:
    api = ["ApiId", api_id]
    return [
        graph_widget(
            "HTTP API metrics",
            region,
            [
                ["AWS/ApiGateway", "Count", *api, {"stat": "Sum"}],
                ["AWS/ApiGateway", "Latency", *api, {"stat": "p99", "yAxis": "right"}],
                ["AWS/ApiGateway", "IntegrationLatency", *api, {"stat": "p99", "yAxis": "right"}],
            ],
        ),
        graph_widget(
            "Error rates",
            region,
            [
                ["AWS/ApiGateway", "4xx", *api, {"stat": "Sum"}],
                ["AWS/ApiGateway", "5xx", *api, {"stat": "Sum"}],
            ],
        ),
    ]


DASHBOARD_GRID_WIDTH = 24


def flow_layout(widgets: Sequence[Mapping[str, Any]], *, top: int) -> list[dict[str, Any]]:
    """Widgets left to right from row `top`, wrapping at the grid's 24 units; each keeps its width and height."""
    placed: list[dict[str, Any]] = []
    x, y, row_height = 0, top, 0
    for widget in widgets:
        width, height = int(widget.get("width", 6)), int(widget.get("height", 6))
        if x + width > DASHBOARD_GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append({**widget, "x": x, "y": y, "width": width, "height": height})
        x, row_height = x + width, max(row_height, height)
    return placed


def graph_widget(title: str, region: str, metrics: list[list[Any]]) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {"title": title, "region": region, "metrics": metrics, "view": "timeSeries", "period": 300},
    }


class MeshMonitoring(pulumi.ComponentResource):
    """Per microservice: 5XX, latency and running-below-desired alarms to the alert topic; one dashboard."""

    dashboard_name: pulumi.Output[str]
    """CloudWatch dashboard name."""
    alarm_arns: pulumi.Output[list[str]]
    """Every alarm this component created."""

    def __init__(self, name: str, args: MeshMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:monitoring:MeshMonitoring", name, None, opts)
        _require_unique_names(args.services)
        self._child = pulumi.ResourceOptions(parent=self)
        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        for service in args.services:
            self.alarms.extend(self._service_alarms(name, args, service))
        rows = pulumi.Output.all(*[pulumi.Output.all(s.cluster_name, s.service_name) for s in args.services]).apply(
            lambda names: [_row(s, cluster, ecs) for s, (cluster, ecs) in zip(args.services, names, strict=True)]
        )
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{args.name_prefix}-mesh",
            dashboard_body=rows.apply(lambda resolved: mesh_dashboard_body(args.region, resolved)),
            opts=self._child,
        )
        self.dashboard_name = self.dashboard.dashboard_name
        self.alarm_arns = pulumi.Output.all(*[a.arn for a in self.alarms])
        self.register_outputs({"dashboard_name": self.dashboard_name, "alarm_arns": self.alarm_arns})

    def _service_alarms(
        self, name: str, args: MeshMonitoringArgs, service: WatchedMicroservice
    ) -> list[aws.cloudwatch.MetricAlarm]:
        prefix = f"{name}-{service.name}"
        alarms = [missing_tasks_alarm(f"{prefix}-tasks-missing", args, service, opts=self._child)]
        if service.port is None:
            return alarms
        target = {"TargetDiscoveryName": service.metrics_discovery_name}
        common: dict[str, Any] = {"topic_arn": args.topic_arn, "opts": self._child, "namespace": "AWS/ECS"}
        return [
            *alarms,
            alarm(f"{prefix}-target-5xx", description=f"{service.name}: too many 5XX responses to mesh calls",
                  metric_name="HTTPCode_Target_5XX_Count", dimensions=target, statistic="Sum",
                  threshold=args.target_5xx_alarm_count, treat_missing_data="notBreaching", **common),
            alarm(f"{prefix}-latency", description=f"{service.name}: {args.latency_statistic} response time to mesh "
                  f"calls is above {args.latency_alarm_milliseconds:g} ms",
                  metric_name="TargetResponseTime", dimensions=target, **_statistic(args.latency_statistic),
                  threshold=args.latency_alarm_milliseconds, period=60, evaluation_periods=5,
                  treat_missing_data="notBreaching", **common),
        ]  # fmt: skip


def missing_tasks_alarm(
    name: str, args: MeshMonitoringArgs, service: WatchedMicroservice, *, opts: pulumi.ResourceOptions
) -> aws.cloudwatch.MetricAlarm:
    return tasks_missing_alarm(name, service, topic_arn=args.topic_arn, minutes=args.missing_task_minutes, opts=opts)


def tasks_missing_alarm(
    name: str,
    service: WatchedMicroservice,
    *,
    topic_arn: pulumi.Input[str],
    minutes: int,
    opts: pulumi.ResourceOptions,
) -> aws.cloudwatch.MetricAlarm:
    """Desired minus running tasks above zero for `minutes` minutes: tasks that crash, fail their health check or
    cannot be placed. Container Insights publishes both counts per service."""
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=f"{service.name}: fewer tasks running than desired for {minutes} minutes",
        metric_queries=[
            *tasks_missing_queries(service.cluster_name, service.service_name),
            aws.cloudwatch.MetricAlarmMetricQueryArgs(
                id="missing", expression="desired - running", label="Tasks missing", return_data=True
            ),
        ],
        evaluation_periods=minutes,
        datapoints_to_alarm=minutes,
        comparison_operator="GreaterThanThreshold",
        threshold=0,
        treat_missing_data="missing",
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=opts,
    )


def _statistic(statistic: str) -> dict[str, str | None]:
    """`p99`-style statistics are extended statistics in PutMetricAlarm."""
    if statistic in {"SampleCount", "Average", "Sum", "Minimum", "Maximum"}:
        return {"statistic": statistic}
    return {"statistic": None, "extended_statistic": statistic}


def _require_unique_names(services: Sequence[WatchedMicroservice]) -> None:
    names = [s.name for s in services]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"MeshMonitoringArgs.services: each service name once; repeated: {', '.join(repeated)}")


@dataclass(frozen=True)
class MeshRow:
    """One service's dashboard row, with every name resolved."""

    name: str
    cluster_name: str
    service_name: str
    discovery_name: str | None
    """None: a client-only service (no traffic widgets)."""


def _row(service: WatchedMicroservice, cluster_name: str, service_name: str) -> MeshRow:
    discovery = service.metrics_discovery_name if service.port is not None else None
    return MeshRow(service.name, cluster_name, service_name, discovery)


ROW_HEIGHT = 6
WIDGET_WIDTH = 6


def mesh_dashboard_body(region: str, rows: Sequence[MeshRow]) -> str:
    """A row per service: CPU and memory, running against desired tasks, requests and 5XX, latency."""
    widgets: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        row_widgets = _row_widgets(region, row)
        for column, widget in enumerate(row_widgets):
            widget.update(
                {"x": column * WIDGET_WIDTH, "y": index * ROW_HEIGHT, "width": WIDGET_WIDTH, "height": ROW_HEIGHT}
            )
        widgets.extend(row_widgets)
    return json.dumps({"widgets": widgets})


def _row_widgets(region: str, row: MeshRow) -> list[dict[str, Any]]:
    ecs = ["ClusterName", row.cluster_name, "ServiceName", row.service_name]
    widgets = [
        graph_widget(
            f"{row.name}: CPU and memory (%)",
            region,
            [["AWS/ECS", "CPUUtilization", *ecs], ["AWS/ECS", "MemoryUtilization", *ecs]],
        ),
        graph_widget(
            f"{row.name}: tasks",
            region,
            [
                ["ECS/ContainerInsights", "RunningTaskCount", *ecs],
                ["ECS/ContainerInsights", "DesiredTaskCount", *ecs],
            ],
        ),
    ]
    if row.discovery_name is None:
        return widgets
    target = ["TargetDiscoveryName", row.discovery_name]
    inbound = ["DiscoveryName", row.discovery_name, *ecs]
    widgets.append(
        graph_widget(
            f"{row.name}: requests and 5XX",
            region,
            [
                ["AWS/ECS", "RequestCount", *inbound, {"stat": "Sum"}],
                ["AWS/ECS", "HTTPCode_Target_5XX_Count", *target, {"stat": "Sum", "yAxis": "right"}],
            ],
        )
    )
    widgets.append(
        graph_widget(
            f"{row.name}: response time (ms)",
            region,
            [
                ["AWS/ECS", "TargetResponseTime", *target, {"stat": "Average"}],
                ["AWS/ECS", "TargetResponseTime", *target, {"stat": "p99"}],
            ],
        )
    )
    return widgets


# --- Rollback alarms (the web service's and the microservices'; ECS reads their state) ---


@dataclass(frozen=True)
class RollbackAlarm:
    """One alarm ECS watches during a deployment and its bake time: metric queries and the expression that alarms."""

    kind: str
    """Suffix of the alarm's name, `<prefix>-rollback-<kind>`."""
    description: str
    """What the alarm means."""
    queries: Sequence[aws.cloudwatch.MetricAlarmMetricQueryArgs]
    """The metrics the expression reads (return_data false)."""
    expression: str
    """Metric math over `queries`; the alarm compares it with `threshold`."""
    threshold: float
    """Above this for 3 one-minute periods: alarm."""


def rollback_alarms(
    prefix: str, alarms: Sequence[RollbackAlarm], *, opts: pulumi.ResourceOptions
) -> list[pulumi.Output[str]]:
    """The alarms, named `<prefix>-rollback-<kind>` (no actions: ECS reads their state), each over 3 one-minute
    periods so one slow request does not roll back a deployment. Returns their names for the service's `alarms`."""
    names = []
    for spec in alarms:
        alarm = aws.cloudwatch.MetricAlarm(
            f"{prefix}-rollback-{spec.kind}",
            name=f"{prefix}-rollback-{spec.kind}",
            alarm_description=f"{spec.description} (rolls back a deployment in progress)",
            metric_queries=[
                *spec.queries,
                aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="value", expression=spec.expression, label=spec.kind, return_data=True
                ),
            ],
            comparison_operator="GreaterThanThreshold",
            threshold=spec.threshold,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            treat_missing_data="notBreaching",
            opts=opts,
        )
        names.append(alarm.name)
    return names


def metric_query(
    query_id: str, namespace: str, name: str, stat: str, dimensions: Mapping[str, pulumi.Input[str]]
) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        return_data=False,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=namespace, metric_name=name, dimensions=dict(dimensions), period=60, stat=stat
        ),
    )


def alb_rollback_alarms(
    prefix: str,
    targets: Sequence[tuple[pulumi.Input[str], pulumi.Input[str]]],
    *,
    error_rate_percent: float,
    p99_latency_seconds: float,
) -> list[RollbackAlarm]:
    """5xx rate, p99 latency and unhealthy hosts over every (load balancer, target group) ARN-suffix pair given."""

    def each(prefix_id: str, name: str, stat: str) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
        return [
            metric_query(f"{prefix_id}{i}", "AWS/ApplicationELB", name, stat, {"TargetGroup": tg, "LoadBalancer": lb})
            for i, (lb, tg) in enumerate(targets)
        ]

    def ids(prefix_id: str) -> str:
        return ", ".join(f"{prefix_id}{i}" for i in range(len(targets)))

    return [
        RollbackAlarm(
            "5xx-rate",
            f"{prefix}: more than {error_rate_percent:g} % of requests answered 5xx by the targets",
            [*each("e", "HTTPCode_Target_5XX_Count", "Sum"), *each("r", "RequestCount", "Sum")],
            f"100 * SUM([{ids('e')}]) / MAX([1, SUM([{ids('r')}])])",
            error_rate_percent,
        ),
        RollbackAlarm(
            "p99-latency",
            f"{prefix}: p99 target response time above {p99_latency_seconds:g} s",
            each("l", "TargetResponseTime", "p99"),
            f"MAX([{ids('l')}])",
            p99_latency_seconds,
        ),
        RollbackAlarm(
            "unhealthy-hosts",
            f"{prefix}: a target failed its health checks",
            each("u", "UnHealthyHostCount", "Maximum"),
            f"MAX([{ids('u')}])",
            0,
        ),
    ]


def tasks_missing_queries(
    cluster_name: pulumi.Input[str], service_name: pulumi.Input[str]
) -> list[aws.cloudwatch.MetricAlarmMetricQueryArgs]:
    """Container Insights' desired and running task counts of one service (`desired - running` is what is missing)."""
    dimensions = {"ClusterName": cluster_name, "ServiceName": service_name}
    return [
        metric_query("desired", "ECS/ContainerInsights", "DesiredTaskCount", "Average", dimensions),
        metric_query("running", "ECS/ContainerInsights", "RunningTaskCount", "Average", dimensions),
    ]
