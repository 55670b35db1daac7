"""Each rule family of the shapes check catches a deliberately broken input (and lets the good one pass)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from runner.records import ResourceRecord
from tests.shapes.check import check_resource, universal_target_problems
from tests.shapes.payloads import (
    PolicyDocument,
    dashboard_problems,
    event_pattern_problems,
    lifecycle_policy_problems,
    policy_problems,
)
from tests.shapes.translate import ApiMapping, ProviderOnly, To, translate
from tests.shapes.unknowns import MockValues

TARGET_GROUP = "aws:lb/targetGroup:TargetGroup"
ROLE = "aws:iam/role:Role"
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def resource(
    type_: str, inputs: Mapping[str, Any], name: str = "thing", outputs: Mapping[str, Any] | None = None
) -> ResourceRecord:
    return ResourceRecord(
        urn=f"urn:pulumi:test::p::{type_}::{name}", type=type_, name=name, inputs=inputs, outputs=outputs or {}
    )


def problems(type_: str, inputs: Mapping[str, Any], *others: ResourceRecord) -> list[str]:
    report = check_resource(resource(type_, inputs), MockValues.of(others))
    return [str(p) for p in report.problems]


def target_group(**changes: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "namePrefix": "api",
        "port": 8080,
        "protocol": "HTTP",
        "targetType": "ip",
        "vpcId": "vpc-0123456789abcdef0",
        "healthCheck": {"path": "/health", "interval": 30, "timeout": 5, "healthyThreshold": 2, "matcher": "200"},
        "deregistrationDelay": 60,
    }
    inputs.update(changes)
    return inputs


def test_a_valid_request_has_no_problems() -> None:
    assert problems(TARGET_GROUP, target_group()) == []


def test_bad_enum() -> None:
    found = problems(TARGET_GROUP, target_group(targetType="fargate"))
    assert found == ["CreateTargetGroup.TargetType: 'fargate' is not one of ['instance', 'ip', 'lambda', 'alb']"]


def test_above_max() -> None:
    found = problems(TARGET_GROUP, target_group(healthCheck={"interval": 301}))
    assert found == ["CreateTargetGroup.HealthCheckIntervalSeconds: value 301 is above the maximum 300"]


def test_below_min() -> None:
    found = problems(TARGET_GROUP, target_group(healthCheck={"healthyThreshold": 1}))
    assert len(found) == 1 and "HealthyThresholdCount" in found[0] and "valid min value: 2" in found[0]


def test_too_long_including_the_provider_s_generated_suffix() -> None:
    """A 7-character prefix plus terraform's 26-character unique suffix is one over CreateTargetGroup's 32."""
    found = problems(TARGET_GROUP, target_group(namePrefix="workers"))
    assert len(found) == 1 and found[0].startswith(
        "CreateTargetGroup.Name: 'workers20261124120000000000000001': up to 32"
    )


def test_pattern_mismatch() -> None:
    found = problems(ROLE, {"path": "container-platform", "assumeRolePolicy": TRUST})
    assert len(found) == 1 and found[0].startswith("CreateRole.Path: 'container-platform' does not match the pattern")


def test_auto_named_role_too_long() -> None:
    """Pulumi appends `-` and 7 characters to the logical name: 57 characters are already one too many."""
    report = check_resource(resource(ROLE, {"assumeRolePolicy": TRUST}, name="r" * 57), MockValues.of([]))
    assert [str(p) for p in report.problems] == [
        f"CreateRole.RoleName: length 65 is above the maximum 64 ('{'r' * 57}-1a2b3c4')"
    ]


def test_missing_required() -> None:
    found = problems("aws:ecs/taskDefinition:TaskDefinition", {"containerDefinitions": json.dumps([{"name": "api"}])})
    assert found == ['RegisterTaskDefinition: Missing required parameter in input: "family"']


def test_wrong_type() -> None:
    found = problems("aws:appautoscaling/target:Target", {
        "serviceNamespace": "ecs", "scalableDimension": "ecs:service:DesiredCount",
        "resourceId": "service/c/s", "minCapacity": "1", "maxCapacity": 3,
    })  # fmt: skip
    assert len(found) == 1 and "Invalid type for parameter MinCapacity" in found[0]


def test_unmapped_input_key() -> None:
    found = problems(TARGET_GROUP, target_group(healthCheck={"intervall": 30}))
    assert len(found) == 1 and found[0].startswith("input healthCheck.intervall: `intervall` matches no member")


def test_unmapped_key_inside_a_json_payload() -> None:
    """Container definitions are decoded by the provider; a misspelt key would be dropped silently."""
    containers = [{"name": "api", "image": "nginx", "readonlyRootFS": True}]
    found = problems(
        "aws:ecs/taskDefinition:TaskDefinition", {"family": "f", "containerDefinitions": json.dumps(containers)}
    )
    assert found == [found[0]] and "containerDefinitions.readonlyRootFS: `readonlyRootFS` matches no member" in found[0]


def test_an_unmapped_type_is_an_error() -> None:
    found = problems("aws:newservice/thing:Thing", {"name": "x"})
    assert found and "no API mapping" in found[0]


def test_provider_only_inputs_are_declared_not_guessed() -> None:
    mapping = ApiMapping("sqs", "CreateQueue", {"name": To("QueueName"), "note": ProviderOnly("kept by the provider")})
    translation = translate(resource("t", {"name": "q", "note": "x"}), mapping, MockValues.of([]))
    assert translation.requests == {"CreateQueue": {"QueueName": "q"}} and translation.problems == []


def test_mocked_outputs_are_skipped_but_the_same_literal_is_checked() -> None:
    """The same invalid path: a mocked output of another resource is skipped, the program's literal reported."""
    producer = resource("aws:ssm/parameter:Parameter", {}, name="p", outputs={"value": "not-a-path"})
    assert problems(ROLE, {"path": "not-a-path", "assumeRolePolicy": TRUST}, producer) == []
    assert problems(ROLE, {"path": "not-a-path", "assumeRolePolicy": TRUST}) != []


def test_documented_constraints_beyond_the_model() -> None:
    log_group = problems("aws:cloudwatch/logGroup:LogGroup", {"name": "/x", "retentionInDays": 45})
    assert len(log_group) == 1 and "45 is not one of [1, 3, 5, 7, 14, 30, 60" in log_group[0]
    group = problems("aws:ec2/securityGroup:SecurityGroup", {"vpcId": "vpc-1", "description": "ALB → services"})
    assert len(group) == 1 and "CreateSecurityGroup.Description" in group[0]


def test_documented_ranges_beyond_the_model() -> None:
    key = problems("aws:kms/key:Key", {"description": "k", "deletionWindowInDays": 5})
    assert key == ["ScheduleKeyDeletion.PendingWindowInDays: 5 is not an integer from 7 to 30"]
    database = {"identifier": "db-1", "instanceClass": "db.t4g.micro", "engine": "postgres", "monitoringInterval": 20}
    assert problems("aws:rds/instance:Instance", database) == [
        "CreateDBInstance.MonitoringInterval: 20 is not one of [0, 1, 5, 10, 15, 30, 60]"
    ]
    assert problems("aws:rds/instance:Instance", {**database, "monitoringInterval": 60, "identifier": "1db"}) != []


def test_queue_attribute_ranges_and_redrive_policy() -> None:
    redrive = json.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq", "maxReceiveCount": 0})
    found = problems("aws:sqs/queue:Queue", {"name": "q", "visibilityTimeoutSeconds": 50000, "redrivePolicy": redrive})
    assert found == [
        "CreateQueue.Attributes: VisibilityTimeout is an integer from 0 to 43200, got '50000'",
        "CreateQueue.Attributes: RedrivePolicy: maxReceiveCount is an integer from 1 to 1000, got 0",
    ]


def _alarm(*queries: dict[str, Any]) -> dict[str, Any]:
    return {
        "comparisonOperator": "GreaterThanThreshold",
        "evaluationPeriods": 1,
        "threshold": 1,
        "metricQueries": list(queries),
    }


def _metric(id_: str, period: int = 60) -> dict[str, Any]:
    return {"id": id_, "metric": {"namespace": "AWS/SQS", "metricName": "M", "stat": "Maximum", "period": period}}


def test_alarm_metric_math() -> None:
    alarm = "aws:cloudwatch/metricAlarm:MetricAlarm"
    good = _alarm(_metric("visible"), {"id": "total", "expression": "FILL(visible, 0) * 2", "returnData": True})
    assert problems(alarm, good) == []
    bad = _alarm(_metric("Visible", period=90), {"id": "total", "expression": "visibel + 1", "returnData": True})
    assert problems(alarm, bad) == [
        "PutMetricAlarm: metric id 'Visible' must start with a lowercase letter (letters, digits, _)",
        "PutMetricAlarm: Visible: Period is 10, 20, 30 or a multiple of 60 seconds, got 90",
        "PutMetricAlarm: total: the expression names unknown ids ['visibel']",
    ]
    no_return = _alarm(_metric("visible"), {"id": "total", "expression": "visible"})
    assert problems(alarm, no_return) == [
        "PutMetricAlarm: exactly one metric or expression must have ReturnData true, got []"
    ]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": "aws.ecr"}, "'source' must be an object or an array"),
        ({"source": []}, "Empty arrays are not allowed"),
        ({"detail": {"n": [{"numeric": [">", "5"]}]}}, "detail.n: numeric takes"),
        ({"detail": {"n": [{"numeric": [">", 5, ">", 7]}]}}, "one lower and one upper bound"),
        ({"detail": {"s": [{"prefix": ["a"]}]}}, "detail.s: prefix takes a string"),
        ({"detail": {"s": [{"startswith": "a"}]}}, "unknown content filter 'startswith'"),
        ({"detail": {"s": [{"anything-but": {"contains": "a"}}]}}, "detail.s: anything-but takes"),
        ({"detail": {"ip": [{"cidr": "10.0.0.0/33"}]}}, "cidr takes a CIDR block"),
        ({"detail": {"s": [{"exists": "true"}]}}, "exists takes true or false"),
        ({"detail": {"s": [{"prefix": "a", "suffix": "b"}]}}, "exactly one operator"),
    ],
)
def test_broken_event_patterns(pattern: dict[str, Any], expected: str) -> None:
    found = event_pattern_problems(json.dumps(pattern))
    assert len(found) == 1 and expected in found[0], found


def test_a_rich_valid_event_pattern() -> None:
    pattern = {
        "source": ["aws.ecr"],
        "detail": {
            "repository-name": [{"prefix": "jobs-"}, {"anything-but": {"suffix": "-test"}}],
            "count": [{"numeric": [">", 0, "<=", 5]}],
            "ip": [{"cidr": "10.0.0.0/16"}],
            "tag": [{"exists": False}, {"equals-ignore-case": "Prod"}, {"wildcard": "a*b"}],
        },
    }
    assert event_pattern_problems(json.dumps(pattern)) == []


def _dashboard(**widget: Any) -> str:
    base: dict[str, Any] = {
        "type": "metric",
        "x": 0,
        "y": 0,
        "width": 12,
        "height": 6,
        "properties": {
            "region": "us-east-1",
            "period": 300,
            "metrics": [["AWS/SQS", "M", "QueueName", "q", {"stat": "p99"}]],
        },
    }
    base.update(widget)
    return json.dumps({"widgets": [base]})


@pytest.mark.parametrize(
    ("widget", "expected"),
    [
        ({"width": 25}, "width is an integer from 1 to 24, got 25"),
        ({"x": 20}, "x + width = 32 goes past the grid's 24 columns"),
        ({"height": 0}, "height is an integer from 1 to 1000"),
        ({"type": "graph"}, "type 'graph' is not one of"),
        ({"properties": {"metrics": [["AWS/SQS", "M"]]}}, "a metric widget needs `region`"),
        (
            {"properties": {"region": "us-east-1", "period": 90, "metrics": [["AWS/SQS", "M"]]}},
            "period is 1, 5, 10, 30",
        ),
        ({"properties": {"region": "us-east-1", "metrics": [["AWS/SQS", "M", "QueueName"]]}}, "name/value pairs"),
        (
            {"properties": {"region": "us-east-1", "metrics": [["AWS/SQS", "M", {"stat": "Mean"}]]}},
            "'Mean' is not a CloudWatch statistic",
        ),
        (
            {"properties": {"region": "us-east-1", "metrics": [["AWS/SQS", "M", {"axis": "right"}]]}},
            "unknown rendering properties ['axis']",
        ),
    ],
)
def test_broken_dashboards(widget: dict[str, Any], expected: str) -> None:
    assert dashboard_problems(_dashboard()) == []
    found = dashboard_problems(_dashboard(**widget))
    assert any(expected in p for p in found), found


def _lifecycle(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})


def _rule(priority: int, **selection: Any) -> dict[str, Any]:
    base = {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1}
    return {"rulePriority": priority, "selection": {**base, **selection}, "action": {"type": "expire"}}


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([_rule(1, tagStatus="tagged")], "a `tagged` selection needs tagPrefixList or tagPatternList"),
        ([_rule(1, countType="imageCountMoreThan")], "countUnit `days` goes with countType sinceImagePushed"),
        ([_rule(1), _rule(1, tagStatus="any")], "rulePriority values must be unique"),
        ([_rule(1, tagStatus="any"), _rule(2)], "tagStatus `any` must have the highest rulePriority"),
        ([_rule(1, countNumber=0)], "countNumber is an integer >= 1"),
    ],
)
def test_broken_lifecycle_policies(rules: list[dict[str, Any]], expected: str) -> None:
    found = lifecycle_policy_problems(_lifecycle(*rules))
    assert any(expected in p for p in found), found


def test_a_valid_lifecycle_policy() -> None:
    keep = _rule(2, tagStatus="any", countType="imageCountMoreThan", countNumber=10)
    del keep["selection"]["countUnit"]
    assert lifecycle_policy_problems(_lifecycle(_rule(1), keep)) == []


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


BROKEN_POLICIES = [
    (
        "identity",
        {"Effect": "Allow", "Action": "sqs:RecieveMessage", "Resource": "*"},
        "'recievemessage' is not one of",
    ),
    (
        "identity",
        {"Effect": "Alow", "Action": "sqs:ReceiveMessage", "Resource": "*"},
        "'Alow' is not one of ['Allow', 'Deny']",
    ),
    (
        "identity",
        {"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": "queue/jobs"},
        "'queue/jobs' does not match",
    ),
    (
        "trust",
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Resource": "*",
        },
        "'Resource' was unexpected",
    ),
    ("sqs-queue", {"Effect": "Deny", "Action": "sqs:*", "Resource": "*"}, "Principal"),
]


@pytest.fixture(scope="module")
def linted_policies() -> dict[str, list[str]]:
    """All broken documents in one cfn-lint run (a run costs seconds, a document a tenth of one)."""
    documents = [
        PolicyDocument(str(i), kind, _policy(statement)) for i, (kind, statement, _) in enumerate(BROKEN_POLICIES)
    ]
    return policy_problems(documents)


@pytest.mark.parametrize("case", range(len(BROKEN_POLICIES)))
def test_broken_policy_documents(case: int, linted_policies: dict[str, list[str]]) -> None:
    expected = BROKEN_POLICIES[case][2]
    found = linted_policies.get(str(case), [])
    assert any(expected in p for p in found), found


def test_valid_policy_documents() -> None:
    identity = _policy(
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage"], "Resource": "arn:aws:sqs:us-east-1:123456789012:q"}
    )
    assert policy_problems([PolicyDocument("a", "identity", identity), PolicyDocument("b", "trust", TRUST)]) == {}


def test_container_health_check_ranges() -> None:
    container = {
        "name": "api",
        "image": "nginx",
        "healthCheck": {"command": ["curl", "-f", "localhost"], "interval": 3},
    }
    found = problems(
        "aws:ecs/taskDefinition:TaskDefinition", {"family": "f", "containerDefinitions": json.dumps([container])}
    )
    assert found == [
        "RegisterTaskDefinition.containerDefinitions[0]: healthCheck.interval is from 5 to 300, got 3",
        "RegisterTaskDefinition.containerDefinitions[0]: healthCheck.command starts with CMD or CMD-SHELL, got ['curl']",
    ]


def test_follow_up_requests_only_when_an_input_calls_for_them() -> None:
    function = {"name": "f", "role": "arn:aws:iam::123456789012:role/r", "code": {"path": "lambdas"}}
    without = check_resource(resource("aws:lambda/function:Function", function), MockValues.of([]))
    assert set(without.requests) == {"CreateFunction"} and without.problems == []
    too_many = check_resource(
        resource("aws:lambda/function:Function", {**function, "reservedConcurrentExecutions": -2}), MockValues.of([])
    )
    assert [str(p) for p in too_many.problems] == [
        "PutFunctionConcurrency.ReservedConcurrentExecutions: Invalid value for parameter ReservedConcurrentExecutions,"
        " value: -2, valid min value: 0"
    ]


def test_scaling_policy_metric_math() -> None:
    def query(id_: str) -> dict[str, Any]:
        return {
            "id": id_,
            "returnData": False,
            "metricStat": {"stat": "Sum", "metric": {"namespace": "AWS/SQS", "metricName": "M"}},
        }

    def policy(*metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "serviceNamespace": "ecs", "scalableDimension": "ecs:service:DesiredCount", "resourceId": "service/c/s",
            "policyType": "TargetTrackingScaling",
            "targetTrackingScalingPolicyConfiguration": {
                "targetValue": 10, "customizedMetricSpecification": {"metrics": list(metrics)},
            },
        }  # fmt: skip

    total = {"id": "per_task", "expression": "visible_high / 2", "returnData": True}
    assert problems("aws:appautoscaling/policy:Policy", policy(query("visible_high"), total)) == []
    found = problems("aws:appautoscaling/policy:Policy", policy(query("Visible_high"), total))
    assert [f.split(": ", 1)[1] for f in found] == [
        "metric id 'Visible_high' must start with a lowercase letter (letters, digits, _)",
        "per_task: the expression names unknown ids ['visible_high']",
    ]


def test_a_universal_target_s_input_is_validated_as_the_api_request_it_makes() -> None:
    """EventBridge Scheduler sends the input as the named API's request: RDS StopDBInstance needs its instance."""

    def schedule(action: str, payload: dict[str, object]) -> ResourceRecord:
        target = {"arn": f"arn:aws:scheduler:::aws-sdk:rds:{action}", "input": json.dumps(payload)}
        return ResourceRecord(urn="urn:s", type="aws:scheduler/schedule:Schedule", name="s", inputs={"target": target})

    assert universal_target_problems(schedule("stopDBInstance", {"DbInstanceIdentifier": "jobs-dev-db"})) == []
    missing = universal_target_problems(schedule("startDBInstance", {}))
    assert [p.message for p in missing] and "DBInstanceIdentifier" in str(missing[0])
    (unknown,) = universal_target_problems(schedule("stopDBInstance", {"DbInstanceIdentifier": "db", "Force": True}))
    assert unknown.message == "Force: no member of StopDBInstance's request"
