"""MeshMonitoring: per-microservice alarms to the alert topic and one dashboard for the whole mesh."""

from __future__ import annotations

import pytest

from components.database import database_widgets
from components.monitoring import (
    MeshMonitoring,
    MeshMonitoringArgs,
    Monitoring,
    MonitoringArgs,
    WatchedHttpApi,
    WatchedMicroservice,
    WatchedWebService,
    flow_layout,
)
from components.storage import efs_widgets
from runner.records import ResourceRecord
from tests.shapes.check import check_resource
from tests.shapes.unknowns import MockValues
from tests.support import Recorded, build, inputs, json_input

TOPIC = "arn:aws:sns:us-east-1:123456789012:shop-dev-alerts"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"


def watched(name: str, port: int | None = 8080, discovery_name: str | None = None) -> WatchedMicroservice:
    return WatchedMicroservice(name, f"shop-dev-{name}", "shop-dev", port, discovery_name)


def build_mesh(*services: WatchedMicroservice, latency_statistic: str = "p99") -> Recorded:
    args = MeshMonitoringArgs(
        name_prefix="shop-dev",
        region="us-east-1",
        topic_arn=TOPIC,
        services=services,
        latency_statistic=latency_statistic,
    )
    return build(lambda: MeshMonitoring("mesh", args))


@pytest.fixture(scope="module")
def mesh() -> Recorded:
    return build_mesh(
        watched("orders"), watched("products", discovery_name="shop-dev-products"), watched("mailer", None)
    )


def alarms_by_name(recorded: Recorded) -> dict[str, dict]:
    return {r.name: inputs(r) for r in recorded.of_type(ALARM)}


def test_a_server_gets_5xx_latency_and_missing_task_alarms_a_client_only_the_task_alarm(mesh):
    assert sorted(alarms_by_name(mesh)) == [
        "mesh-mailer-tasks-missing",
        "mesh-orders-latency",
        "mesh-orders-target-5xx",
        "mesh-orders-tasks-missing",
        "mesh-products-latency",
        "mesh-products-target-5xx",
        "mesh-products-tasks-missing",
    ]


def test_every_alarm_pages_the_alert_topic_on_alarm_and_ok(mesh):
    for alarm in alarms_by_name(mesh).values():
        assert (alarm["alarmActions"], alarm["okActions"]) == ([TOPIC], [TOPIC])


def test_5xx_and_latency_use_the_service_connect_target_metrics_of_its_discovery_name(mesh):
    alarms = alarms_by_name(mesh)
    errors, latency = alarms["mesh-orders-target-5xx"], alarms["mesh-orders-latency"]
    assert (errors["namespace"], errors["metricName"], errors["statistic"]) == (
        "AWS/ECS",
        "HTTPCode_Target_5XX_Count",
        "Sum",
    )
    assert errors["dimensions"] == {"TargetDiscoveryName": "orders"}
    assert (latency["metricName"], latency["extendedStatistic"], latency["threshold"]) == (
        "TargetResponseTime",
        "p99",
        2000,
    )
    assert "statistic" not in latency
    assert alarms["mesh-products-latency"]["dimensions"] == {"TargetDiscoveryName": "shop-dev-products"}


def test_latency_statistic_can_be_a_plain_statistic():
    alarm = alarms_by_name(build_mesh(watched("orders"), latency_statistic="Maximum"))["mesh-orders-latency"]
    assert alarm["statistic"] == "Maximum"
    assert "extendedStatistic" not in alarm


def test_missing_tasks_alarm_is_desired_minus_running_for_five_minutes(mesh):
    alarm = alarms_by_name(mesh)["mesh-orders-tasks-missing"]
    queries = {q["id"]: q for q in alarm["metricQueries"]}
    assert queries["missing"]["expression"] == "desired - running"
    assert queries["missing"]["returnData"] is True
    for metric_id, metric_name in (("desired", "DesiredTaskCount"), ("running", "RunningTaskCount")):
        metric = queries[metric_id]["metric"]
        assert (metric["namespace"], metric["metricName"]) == ("ECS/ContainerInsights", metric_name)
        assert metric["dimensions"] == {"ClusterName": "shop-dev", "ServiceName": "shop-dev-orders"}
    assert (alarm["comparisonOperator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    assert (alarm["evaluationPeriods"], alarm["datapointsToAlarm"]) == (5, 5)


def test_one_dashboard_for_the_mesh_with_a_row_per_service(mesh):
    (dashboard,) = mesh.of_type(DASHBOARD)
    assert inputs(dashboard)["dashboardName"] == "shop-dev-mesh"
    widgets = json_input(dashboard, "dashboardBody")["widgets"]
    rows: dict[int, list[str]] = {}
    for widget in widgets:
        rows.setdefault(widget["y"], []).append(widget["properties"]["title"])
    assert list(rows.values()) == [
        ["orders: CPU and memory (%)", "orders: tasks", "orders: requests and 5XX", "orders: response time (ms)"],
        [
            "products: CPU and memory (%)",
            "products: tasks",
            "products: requests and 5XX",
            "products: response time (ms)",
        ],
        ["mailer: CPU and memory (%)", "mailer: tasks"],
    ]


def test_dashboard_reads_requests_per_discovery_name_and_service_and_errors_per_target(mesh):
    widgets = json_input(mesh.one(DASHBOARD), "dashboardBody")["widgets"]
    traffic = next(w for w in widgets if w["properties"]["title"] == "products: requests and 5XX")
    requests, errors = traffic["properties"]["metrics"]
    assert requests[:2] == ["AWS/ECS", "RequestCount"]
    assert dict(zip(requests[2:-1:2], requests[3:-1:2], strict=True)) == {
        "DiscoveryName": "shop-dev-products",
        "ClusterName": "shop-dev",
        "ServiceName": "shop-dev-products",
    }
    assert errors[:4] == ["AWS/ECS", "HTTPCode_Target_5XX_Count", "TargetDiscoveryName", "shop-dev-products"]


def test_fifty_services_still_make_one_dashboard_and_pass_the_aws_request_checks():
    recorded = build_mesh(*[watched(f"svc{i}", None if i % 10 == 0 else 8080) for i in range(50)])
    assert len(recorded.of_type(DASHBOARD)) == 1
    assert len(recorded.of_type(ALARM)) == 50 + 45 * 2
    assert_aws_accepts(recorded.resources)


def test_alarms_and_dashboard_pass_the_aws_request_checks(mesh):
    assert_aws_accepts(mesh.resources)


def assert_aws_accepts(resources: list[ResourceRecord]) -> None:
    unknowns = MockValues.of(resources)
    problems = {
        f"{r.type} {r.name}": [str(p) for p in check_resource(r, unknowns).problems]
        for r in resources
        if r.custom and r.type in (ALARM, DASHBOARD)
    }
    assert {label: found for label, found in problems.items() if found} == {}


def test_a_service_named_twice_is_refused_with_its_name():
    with pytest.raises(ValueError, match="repeated: orders"):
        build_mesh(watched("orders"), watched("orders"))


# --- Monitoring: the job platform's API behind the HTTP API, one platform dashboard ---

DATA_WIDGETS = [database_widgets("us-east-1", "jobs-dev-postgres"), efs_widgets("us-east-1", "fs-1")]


@pytest.fixture(scope="module")
def platform() -> Recorded:
    args = MonitoringArgs(
        name_prefix="jobs-dev",
        region="us-east-1",
        topic_arn=TOPIC,
        cluster_name="jobs-dev",
        http_api=WatchedHttpApi("a1b2c3"),
        web_services=[WatchedWebService("api", "jobs-dev-api")],
        extra_widgets=DATA_WIDGETS,
    )
    return build(lambda: Monitoring("monitoring", args))


def test_behind_the_http_api_errors_and_latency_read_its_metrics_and_missing_tasks_replace_health_checks(platform):
    alarms = alarms_by_name(platform)
    assert sorted(alarms) == [
        "monitoring-api-api-5xx",
        "monitoring-api-cpu-high",
        "monitoring-api-latency-p99",
        "monitoring-api-memory-high",
        "monitoring-api-tasks-missing",
    ]
    errors, latency = alarms["monitoring-api-api-5xx"], alarms["monitoring-api-latency-p99"]
    assert (errors["namespace"], errors["metricName"], errors["dimensions"]) == (
        "AWS/ApiGateway",
        "5xx",
        {"ApiId": "a1b2c3"},
    )
    assert errors["statistic"] == "Sum"
    assert (latency["metricName"], latency["extendedStatistic"]) == ("Latency", "p99")
    assert latency["threshold"] == 2000  # API Gateway reports milliseconds; the ALB alarm's 2 s
    queries = {q["id"]: q for q in alarms["monitoring-api-tasks-missing"]["metricQueries"]}
    assert queries["missing"]["expression"] == "desired - running"
    assert all(a["alarmActions"] == [TOPIC] == a["okActions"] for a in alarms.values())


def test_one_platform_dashboard_shows_the_api_and_every_data_widget_without_overlap(platform):
    (dashboard,) = platform.of_type(DASHBOARD)
    widgets = json_input(dashboard, "dashboardBody")["widgets"]
    titles = [w["properties"]["title"] for w in widgets]
    assert titles == [
        "jobs-dev-api: ECS service metrics",
        "HTTP API metrics",
        "Error rates",
        "Database performance",
        "Database latency",
        "Free storage space",
        "EFS I/O bytes",
        "EFS connections and burst credits",
        "EFS storage bytes",
    ]
    namespaces = {m[0] for w in widgets[:3] for m in w["properties"]["metrics"]}
    assert "AWS/ApplicationELB" not in namespaces and "AWS/ApiGateway" in namespaces
    cells = [
        (x, y) for w in widgets for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])
    ]
    assert len(cells) == len(set(cells)), "widgets overlap"
    assert max(w["x"] + w["width"] for w in widgets) <= 24
    assert_aws_accepts(platform.resources)


def test_flow_layout_wraps_at_the_grid_width_below_the_given_row():
    placed = flow_layout([{"width": 12, "height": 6}, {"width": 12, "height": 3}, {"width": 6, "height": 6}], top=12)
    assert [(w["x"], w["y"]) for w in placed] == [(0, 12), (12, 12), (0, 18)]


def test_an_alb_and_an_http_api_together_are_refused():
    with pytest.raises(ValueError, match="alb_arn_suffix and http_api both set"):
        MonitoringArgs(
            "jobs-dev", "us-east-1", TOPIC, "jobs-dev", alb_arn_suffix="app/x/1", http_api=WatchedHttpApi("a")
        )
