"""Monitoring: the services dashboard and the alarms that page the alert topic.

`alarm()` is the one way any component creates an alarm: it always notifies the topic on ALARM and OK.
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
    target_group_arn_suffix: pulumi.Input[str]
    """Its target group's ARN suffix."""


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
    alb_arn_suffix: pulumi.Input[str]
    """ALB ARN suffix."""
    web_services: Sequence[WatchedWebService] = ()
    """Services behind the ALB. Default: none."""
    cpu_alarm_percent: float = 85
    """Service CPU alarm threshold (seed: 85). Default: 85."""
    memory_alarm_percent: float = 90
    """Service memory alarm threshold (seed: 90). Default: 90."""
    target_5xx_alarm_count: float = 10
    """Target 5XX count per 5 minutes (seed: 10). Default: 10."""
    p99_latency_alarm_seconds: float = 2.0
    """p99 target response time alarm. Default: 2 s."""


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
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{args.name_prefix}-containers",
            dashboard_body=pulumi.Output.all(
                args.cluster_name,
                args.alb_arn_suffix,
                [pulumi.Output.from_input(s.service_name) for s in args.web_services],
            ).apply(lambda values: dashboard_body(args.region, values[0], values[1], values[2])),
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
        target = {"LoadBalancer": args.alb_arn_suffix, "TargetGroup": service.target_group_arn_suffix}
        common: dict[str, Any] = {"topic_arn": args.topic_arn, "opts": self._child}
        return [
            alarm(f"{prefix}-cpu-high", description=f"{service.name}: CPU utilization is too high",
                  namespace="AWS/ECS", metric_name="CPUUtilization", dimensions=ecs,
                  threshold=args.cpu_alarm_percent, **common),
            alarm(f"{prefix}-memory-high", description=f"{service.name}: memory utilization is too high",
                  namespace="AWS/ECS", metric_name="MemoryUtilization", dimensions=ecs,
                  threshold=args.memory_alarm_percent, **common),
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


def dashboard_body(region: str, cluster_name: str, alb_arn_suffix: str, service_names: Sequence[str]) -> str:
    """The seed's three widgets per service: ECS metrics, load balancer metrics, error rates."""
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
    alb = ["LoadBalancer", alb_arn_suffix]
    widgets.append(
        graph_widget(
            "Load balancer metrics",
            region,
            [
                ["AWS/ApplicationELB", "RequestCount", *alb, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "TargetResponseTime", *alb, {"yAxis": "right"}],
            ],
        )
    )
    widgets.append(
        graph_widget(
            "Error rates",
            region,
            [
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", *alb, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", *alb, {"stat": "Sum"}],
            ],
        )
    )
    for index, widget in enumerate(widgets):
        widget.update({"x": (index % 2) * 12, "y": (index // 2) * 6, "width": 12, "height": 6})
    return json.dumps({"widgets": widgets})


def graph_widget(title: str, region: str, metrics: list[list[Any]]) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {"title": title, "region": region, "metrics": metrics, "view": "timeSeries", "period": 300},
    }
