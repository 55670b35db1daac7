"""RuntimeSecurity under recording mocks (defaults, detector, responder IAM, audit lock), and in the prod and shop
plans: detection, filters on every service's logs, alarms, the responder, and what GuardDuty's agent needs from
our tasks at runtime (AWS docs, "Prerequisites for AWS Fargate (Amazon ECS only) support")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern

from components.config import ConfigError, parse_stack_config
from components.runtime_security import (
    RESPONDER_TAG_KEYS,
    SECURITY_SIGNALS,
    RuntimeSecurity,
    RuntimeSecurityArgs,
)
from runner.plan import Plan
from tests.plans import planned
from tests.shapes.check import check_resource
from tests.shapes.payloads import event_pattern_problems
from tests.shapes.unknowns import MockValues
from tests.support import Recorded, build, inputs, json_input, statements

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "lambdas" / "events"
ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/jobs-prod"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:jobs-prod-alerts"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/platform"
FUNCTION = "aws:lambda/function:Function"
FILTER = "aws:cloudwatch/logMetricFilter:LogMetricFilter"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def security(**overrides: Any) -> Recorded:
    args = RuntimeSecurityArgs(
        name_prefix="jobs-prod",
        region=REGION,
        account_id=ACCOUNT,
        cluster_arn=CLUSTER_ARN,
        cluster_name="jobs-prod",
        vpc_id="vpc-0abc",
        alert_topic_arn=TOPIC,
        alert_topic_kms_key_arn=KEY,
        log_kms_key_arn=KEY,
        service_log_groups={"api": "/ecs/jobs-prod/api", "worker": "/ecs/jobs-prod/worker"},
        **overrides,
    )
    return build(lambda: RuntimeSecurity("runtime-security", args))


def responder_policy(recorded: Recorded) -> list[dict[str, Any]]:
    return statements(json_input(recorded.find(ROLE_POLICY, "runtime-security-responder-policy"), "policy"))


def by_sid(recorded: Recorded) -> dict[str, dict[str, Any]]:
    return {statement["Sid"]: statement for statement in responder_policy(recorded)}


def sample_finding(cluster_arn: str) -> Any:
    event = json.loads((EVENTS / "guardduty-runtime-fargate.json").read_text())
    event["detail"]["resource"]["ecsClusterDetails"]["arn"] = cluster_arn
    return event


def test_defaults_filters_and_alarms_per_signal_a_responder_and_no_detector() -> None:
    recorded = security()
    assert recorded.of_type("aws:guardduty/detector:Detector") == []
    assert recorded.of_type("aws:ec2/securityGroup:SecurityGroup") == []  # no quarantine unless asked
    filters = {(inputs(f)["logGroupName"], inputs(f)["pattern"]) for f in recorded.of_type(FILTER)}
    assert filters == {
        (group, signal.pattern)
        for group in ("/ecs/jobs-prod/api", "/ecs/jobs-prod/worker")
        for signal in SECURITY_SIGNALS
    }
    alarms = {a.name: inputs(a) for a in recorded.of_type(ALARM)}
    assert set(alarms) == {f"runtime-security-{signal.key}-alarm" for signal in SECURITY_SIGNALS}
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [TOPIC] and alarm["namespace"] == "jobs-prod/security"
        assert (alarm["statistic"], alarm["treatMissingData"]) == ("Sum", "notBreaching")
    assert alarms["runtime-security-aws-access-denied-alarm"]["threshold"] == 0
    function = inputs(recorded.one(FUNCTION))
    assert function["handler"] == "handler.handle"
    variables = function["environment"]["variables"]
    assert variables["CLUSTER_ARN"] == CLUSTER_ARN and variables["RESPONSE_SEVERITY"] == "HIGH"
    assert "QUARANTINE_SECURITY_GROUP_ID" not in variables
    assert function["deadLetterConfig"]["targetArn"] == TOPIC
    assert "ec2:ModifyNetworkInterfaceAttribute" not in json.dumps(responder_policy(recorded))


def test_the_rule_matches_our_clusters_findings_only_as_eventbridge_evaluates_it() -> None:
    rule = inputs(recorded_rule := security().one("aws:cloudwatch/eventRule:EventRule"))
    assert recorded_rule.name == "runtime-security-findings"
    assert event_pattern_problems(rule["eventPattern"]) == []
    pattern = EventPattern.load(rule["eventPattern"])
    assert pattern.matches_event(sample_finding(CLUSTER_ARN))
    assert not pattern.matches_event(sample_finding(f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/other-team"))
    inspector: Any = {**sample_finding(CLUSTER_ARN), "source": "aws.inspector2"}
    assert not pattern.matches_event(inspector)


def test_the_responder_may_stop_and_tag_only_our_clusters_tasks() -> None:
    sids = by_sid(security())
    tasks = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/jobs-prod/*"
    assert sids["StopOurTasks"]["Action"] == ["ecs:DescribeTasks", "ecs:StopTask"]
    assert sids["StopOurTasks"]["Resource"] == [tasks]
    assert sids["StopOurTasks"]["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}}
    assert sids["TagOurTasks"]["Resource"] == [tasks]
    assert sids["TagOurTasks"]["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": list(RESPONDER_TAG_KEYS)}}
    assert all(resource != "*" for s in sids.values() for resource in s["Resource"])


def test_quarantine_adds_a_group_with_no_rules_and_a_grant_limited_to_our_vpc() -> None:
    recorded = security(quarantine=True)
    group = recorded.one("aws:ec2/securityGroup:SecurityGroup")
    assert "ingress" not in inputs(group) and "egress" not in inputs(group)
    assert recorded.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") == []
    statement = by_sid(recorded)["QuarantineOurTasks"]
    assert statement["Condition"] == {"ArnEquals": {"ec2:Vpc": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc/vpc-0abc"}}
    assert statement["Resource"][1].startswith(f"arn:aws:ec2:{REGION}:{ACCOUNT}:security-group/")
    variables = inputs(recorded.one(FUNCTION))["environment"]["variables"]
    assert variables["QUARANTINE_SECURITY_GROUP_ID"]


def test_the_detector_owner_enables_runtime_monitoring_with_fargate_agent_management() -> None:
    recorded = security(manage_detector=True)
    assert inputs(recorded.one("aws:guardduty/detector:Detector"))["enable"] is True
    feature = inputs(recorded.one("aws:guardduty/detectorFeature:DetectorFeature"))
    assert (feature["name"], feature["status"]) == ("RUNTIME_MONITORING", "ENABLED")
    assert feature["additionalConfigurations"] == [{"name": "ECS_FARGATE_AGENT_MANAGEMENT", "status": "ENABLED"}]


def test_audit_records_can_be_locked_in_compliance_mode_with_requests_s3_accepts() -> None:
    recorded = security(audit_object_lock_days=30)
    bucket = next(b for b in recorded.of_type("aws:s3/bucket:Bucket") if b.name == "runtime-security-audit")
    assert inputs(bucket)["objectLockEnabled"] is True
    lock_record = recorded.one("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert inputs(lock_record)["rule"]["defaultRetention"] == {"mode": "COMPLIANCE", "days": 30}
    # No stack locks its audit records yet, so the stack-wide shape tests never see these two requests.
    unknowns = MockValues.of(list(recorded.resources))
    for record in (bucket, lock_record):
        report = check_resource(record, unknowns)
        assert report.problems == [], report.problems
    assert check_resource(lock_record, unknowns).requests["PutObjectLockConfiguration"]["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}}
    }  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"response_severity": "SEVERE"}, "response_severity: 'SEVERE'; allowed: LOW, MEDIUM, HIGH, CRITICAL"),
        ({"audit_object_lock_days": 400}, "audit_object_lock_days: 400 with audit_retention_days 365"),
    ],
)
def test_bad_arguments_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        security(**overrides)


# --- In the program ---


def plan(stack: str) -> Plan:
    return planned(stack)


def of_type(stack: str, type_: str) -> list[Any]:
    return [r for r in plan(stack).resources if r.type == type_]


def test_prod_owns_the_detector_and_the_shop_stack_does_not_but_runs_the_responder() -> None:
    assert len(of_type("prod", "aws:guardduty/detectorFeature:DetectorFeature")) == 1
    assert of_type("shop", "aws:guardduty/detector:Detector") == []
    for stack in ("prod", "shop"):
        assert any(r.name == "runtime-security-responder" for r in of_type(stack, FUNCTION))
        assert any(r.name == "runtime-security-findings" for r in of_type(stack, "aws:cloudwatch/eventRule:EventRule"))


@pytest.mark.parametrize("stack", ["prod", "shop"])
def test_every_service_log_group_has_every_security_filter_and_each_signal_an_alarm(stack: str) -> None:
    # The log group each task's application container (its first) writes to.
    service_groups = {
        json.loads(task.inputs["containerDefinitions"])[0]["logConfiguration"]["options"]["awslogs-group"]
        for task in of_type(stack, "aws:ecs/taskDefinition:TaskDefinition")
    }
    assert service_groups
    filtered = {(r.inputs["logGroupName"], r.inputs["pattern"]) for r in of_type(stack, FILTER)}
    for group in service_groups:
        assert {signal.pattern for signal in SECURITY_SIGNALS} <= {p for g, p in filtered if g == group}, group
    alarms = {
        r.inputs["metricName"] for r in of_type(stack, ALARM) if r.inputs.get("namespace", "").endswith("/security")
    }
    assert alarms == {signal.metric_name for signal in SECURITY_SIGNALS}


@pytest.mark.parametrize("stack", ["prod", "shop"])
def test_every_task_can_run_guarddutys_agent(stack: str) -> None:
    """The execution role pulls the agent (AmazonECSTaskExecutionRolePolicy has the four ECR actions), the task's
    group lets it reach the guardduty-data endpoint on 443, Fargate is Linux on platform 1.4.0+ (LATEST), the VPC
    resolves the endpoint's private DNS name."""
    resources = plan(stack).resources
    managed = {
        r.inputs["role"]
        for r in resources
        if r.type == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
        and r.inputs["policyArn"].endswith(":policy/service-role/AmazonECSTaskExecutionRolePolicy")
    }
    task_definitions = [r for r in resources if r.type == "aws:ecs/taskDefinition:TaskDefinition"]
    assert task_definitions
    for task in task_definitions:
        assert task.inputs["executionRoleArn"].rsplit("/", 1)[1] in managed, task.name
        assert task.inputs["runtimePlatform"]["operatingSystemFamily"] == "LINUX"
    https_out = {
        r.inputs["securityGroupId"]
        for r in resources
        if r.type == "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
        and r.inputs["fromPort"] <= 443 <= r.inputs["toPort"]
        and r.inputs.get("cidrIpv4") == "0.0.0.0/0"
    }
    for service in (r for r in resources if r.type == "aws:ecs/service:Service"):
        assert service.inputs.get("platformVersion", "LATEST") == "LATEST"
        groups = service.inputs["networkConfiguration"]["securityGroups"]
        assert any(group in https_out for group in groups), service.name
    vpc = next(r for r in plan(stack).opaque if r.type == "awsx:ec2:Vpc")
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True


# --- Config ---


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            {"auditRetentionDays": 30, "auditObjectLockDays": 60},
            "runtimeSecurity.auditObjectLockDays: 60 is more than runtimeSecurity.auditRetentionDays 30",
        ),
        (
            {"enabled": False, "manageDetector": True},
            "runtimeSecurity.manageDetector: true with runtimeSecurity.enabled",
        ),
        ({"responseSeverity": "SEVERE"}, "runtimeSecurity.responseSeverity"),
        ({"quarantine": "yes"}, "runtimeSecurity.quarantine"),
        ({"detector": True}, "runtimeSecurity.detector"),
    ],
)
def test_bad_runtime_security_config_names_the_key(section: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_stack_config({"environment": "dev", "runtimeSecurity": section})
    assert any(line.startswith(problem) for line in refused.value.problems), refused.value.problems


def test_runtime_security_defaults() -> None:
    settings = parse_stack_config({"environment": "dev"}).runtimeSecurity
    assert (settings.enabled, settings.manageDetector, settings.responseSeverity, settings.quarantine) == (
        True, False, "HIGH", False
    )  # fmt: skip
    assert (settings.auditRetentionDays, settings.auditObjectLockDays) == (365, None)
