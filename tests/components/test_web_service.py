"""WebService: the secure task, the service wiring, routing and the seed's autoscaling."""

from __future__ import annotations

import json
import re

import pulumi
import pytest

from components.cluster import AlbTestListener
from components.ecs_task import EXECUTION_MANAGED_POLICY, Rollout, ServiceAttachment
from components.web_service import WebService, WebServiceArgs
from tests.support import Recorded, actions_of, build, env_map, inputs, json_input

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/api@sha256:" + "a" * 64
DB_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
API_KEY_PARAM = "arn:aws:ssm:us-east-1:123456789012:parameter/jobs/dev/api-key"


def web_args(**overrides) -> WebServiceArgs:
    values = {
        "name_prefix": "jobs-dev",
        "service_name": "api",
        "image": IMAGE,
        "region": "us-east-1",
        "account_id": "123456789012",
        "vpc_id": "vpc-1",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "cluster_arn": "arn:aws:ecs:us-east-1:123456789012:cluster/jobs-dev",
        "cluster_name": "jobs-dev",
        "namespace_id": "ns-1",
        "listener_arn": "arn:aws:elasticloadbalancing:listener/app/x",
        "alb_security_group_id": "sg-alb",
        "alb_arn_suffix": "app/jobs-dev-alb/50dc6c495c0c9188",
        "log_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/k",
        "desired_count": 2,
        "min_count": 1,
        "max_count": 5,
    }
    values.update(overrides)
    return WebServiceArgs(**values)


def build_service(**overrides) -> Recorded:
    return build(lambda: WebService("api", web_args(**overrides)))


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    return build_service(secrets={"DATABASE_URL": f"{DB_SECRET}:url::", "API_KEY": API_KEY_PARAM})


def container(recorded: Recorded) -> dict:
    (definition,) = json_input(recorded.one("aws:ecs/taskDefinition:TaskDefinition"), "containerDefinitions")
    return definition


def test_every_child_is_parented_to_the_component(recorded):
    component = recorded.one("container-platform:web-service:WebService")
    assert all(r.parent == component.urn for r in recorded.resources if r is not component)


def test_container_runs_locked_down(recorded):
    c = container(recorded)
    assert c["user"] == "1001:1001"
    assert c["readonlyRootFilesystem"] is True
    assert c["privileged"] is False
    assert c["linuxParameters"] == {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}}
    assert c["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]
    assert c["image"] == IMAGE
    assert c["memoryReservation"] == 819
    assert c["portMappings"] == [{"containerPort": 8080, "protocol": "tcp", "name": "http"}]
    assert c["logConfiguration"]["logDriver"] == "awslogs"
    assert c["logConfiguration"]["options"]["awslogs-group"] == "/ecs/jobs-dev/api"


def test_secrets_go_through_secrets_and_never_environment(recorded):
    c = container(recorded)
    assert env_map(c["secrets"], "valueFrom") == {"API_KEY": API_KEY_PARAM, "DATABASE_URL": f"{DB_SECRET}:url::"}
    assert set(env_map(c["environment"])) == {"PORT", "SHUTDOWN_TIMEOUT_SECONDS"}


def test_health_check_uses_the_seed_timings(recorded):
    check = container(recorded)["healthCheck"]
    assert (check["interval"], check["timeout"], check["retries"], check["startPeriod"]) == (30, 5, 3, 60)
    assert check["command"][0] == "CMD"
    assert "http://127.0.0.1:8080/health" in check["command"][-1]


def test_task_definition_is_fargate_with_tmp_volume(recorded):
    task = inputs(recorded.one("aws:ecs/taskDefinition:TaskDefinition"))
    assert (task["cpu"], task["memory"], task["networkMode"]) == ("512", "1024", "awsvpc")
    assert task["requiresCompatibilities"] == ["FARGATE"]
    assert task["volumes"] == [{"name": "tmp"}]


def test_execution_role_reads_only_its_own_secrets(recorded):
    attachment = recorded.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert inputs(attachment)["policyArn"] == EXECUTION_MANAGED_POLICY
    policy = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-exec-secrets"), "policy")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadOwnSecrets"]["Resource"] == [DB_SECRET]
    assert by_sid["ReadOwnSecrets"]["Action"] == ["secretsmanager:GetSecretValue"]
    assert by_sid["ReadOwnParameters"]["Resource"] == [API_KEY_PARAM]


def test_roles_trust_only_ecs_tasks_of_this_account(recorded):
    for role in recorded.of_type("aws:iam/role:Role"):
        (statement,) = json_input(role, "assumeRolePolicy")["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_task_role_has_no_permissions_without_attachments(recorded):
    names = [r.name for r in recorded.of_type("aws:iam/rolePolicy:RolePolicy")]
    assert names == ["jobs-dev-api-exec-secrets"]


def test_service_is_private_and_safe_to_deploy(recorded):
    service = inputs(recorded.one("aws:ecs/service:Service"))
    network = service["networkConfiguration"]
    assert network["assignPublicIp"] is False
    assert network["subnets"] == ["subnet-a", "subnet-b"]
    assert service["platformVersion"] == "LATEST"
    assert service["healthCheckGracePeriodSeconds"] == 120
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["enableExecuteCommand"] is False
    assert service["serviceRegistries"]["registryArn"].endswith("api-discovery")
    assert service["loadBalancers"][0]["containerName"] == "api"
    assert service["capacityProviderStrategies"] == [{"capacityProvider": "FARGATE", "base": 1, "weight": 1}]


def test_spot_weight_adds_fargate_spot():
    recorded = build_service(spot_weight=3, on_demand_base=0)
    strategy = inputs(recorded.one("aws:ecs/service:Service"))["capacityProviderStrategies"]
    assert {s["capacityProvider"]: s["weight"] for s in strategy} == {"FARGATE": 1, "FARGATE_SPOT": 3}


def test_only_the_alb_reaches_the_tasks(recorded):
    (ingress,) = recorded.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert inputs(ingress)["referencedSecurityGroupId"] == "sg-alb"
    assert (inputs(ingress)["fromPort"], inputs(ingress)["toPort"]) == (8080, 8080)
    assert "cidrIpv4" not in inputs(ingress)
    egress = {r.name: inputs(r) for r in recorded.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")}
    assert egress["jobs-dev-api-from-alb-egress"]["securityGroupId"] == "sg-alb"
    assert egress["jobs-dev-api-egress-https"]["fromPort"] == 443


def test_target_group_uses_the_seed_health_check(recorded):
    group = inputs(recorded.one("aws:lb/targetGroup:TargetGroup"))
    assert group["targetType"] == "ip"
    # One drain value: the deregistration delay, the stop timeout, and the API's graceful shutdown 5 s less.
    assert group["deregistrationDelay"] == 30
    assert container(recorded)["stopTimeout"] == 30
    assert env_map(container(recorded)["environment"])["SHUTDOWN_TIMEOUT_SECONDS"] == "25"
    health = group["healthCheck"]
    assert (health["path"], health["matcher"], health["interval"], health["timeout"]) == ("/health", "200", 30, 5)
    assert (health["healthyThreshold"], health["unhealthyThreshold"]) == (2, 5)


def test_autoscaling_follows_the_seed(recorded):
    target = inputs(recorded.one("aws:appautoscaling/target:Target"))
    assert (target["minCapacity"], target["maxCapacity"]) == (1, 5)
    assert target["resourceId"] == "service/jobs-dev/jobs-dev-api"
    policies = {r.name: inputs(r) for r in recorded.of_type("aws:appautoscaling/policy:Policy")}
    assert set(policies) == {"jobs-dev-api-cpu-scaling", "jobs-dev-api-memory-scaling", "jobs-dev-api-requests-scaling"}
    configs = {name: p["targetTrackingScalingPolicyConfiguration"] for name, p in policies.items()}
    cpu, memory = configs["jobs-dev-api-cpu-scaling"], configs["jobs-dev-api-memory-scaling"]
    assert (cpu["targetValue"], memory["targetValue"]) == (70, 80)
    assert (cpu["scaleInCooldown"], cpu["scaleOutCooldown"]) == (300, 60)
    requests = configs["jobs-dev-api-requests-scaling"]
    assert requests["targetValue"] == 1000
    spec = requests["predefinedMetricSpecification"]
    assert spec["predefinedMetricType"] == "ALBRequestCountPerTarget"
    # The label names this service's target group on the ALB: `app/<alb>/<id>/targetgroup/<tg>/<id>`.
    assert spec["resourceLabel"] == "app/jobs-dev-alb/50dc6c495c0c9188/targetgroup/jobs-dev-api-tg/6d0ecf831eec9f09"


def test_health_probe_quotes_the_path():
    recorded = build_service(health_check_path="/health?x='1'")
    command = container(recorded)["healthCheck"]["command"][-1]
    assert "urlopen(\"http://127.0.0.1:8080/health?x='1'\", timeout=4)" in command


def test_attachments_add_env_secrets_volumes_grants_and_sg_rules():
    attachment = ServiceAttachment(
        name="db",
        environment={"DB_HOST": "db.internal"},
        secrets={"DB_PASSWORD": f"{DB_SECRET}:password::"},
        secret_arns=[DB_SECRET],
        task_role_statements=[{"Effect": "Allow", "Action": ["rds-db:connect"], "Resource": ["arn:db"]}],
        peer_security_group_id="sg-db",
        port=5432,
    )
    recorded = build_service(attachments=[attachment], enable_execute_command=True)
    c = container(recorded)
    assert env_map(c["environment"])["DB_HOST"] == "db.internal"
    assert env_map(c["secrets"], "valueFrom") == {"DB_PASSWORD": f"{DB_SECRET}:password::"}
    task_policy = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-task-policy"), "policy")
    assert actions_of(task_policy) == {
        "rds-db:connect",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
        "kms:Decrypt",
        "logs:DescribeLogGroups",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    }
    by_sid = {statement["Sid"]: statement for statement in task_policy["Statement"] if "Sid" in statement}
    assert by_sid["EcsExecSessionKey"]["Resource"] == ["arn:aws:kms:us-east-1:123456789012:key/k"]
    assert by_sid["EcsExecAudit"]["Resource"] == ["arn:aws:logs:us-east-1:123456789012:log-group:/ecs/jobs-dev/exec:*"]
    assert container(recorded)["readonlyRootFilesystem"] is False, "ECS Exec's agent needs a writable root"
    ingress = recorded.find("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "jobs-dev-api-to-db-ingress")
    assert inputs(ingress)["securityGroupId"] == "sg-db"
    assert inputs(ingress)["fromPort"] == 5432


def test_environment_values_may_be_outputs():
    recorded = build_service(environment={"LOG_LEVEL": pulumi.Output.from_input("debug")})
    assert json.dumps(container(recorded)["environment"]).count("debug") == 1


# --- Behind the HTTP API (no ALB) ---


@pytest.fixture(scope="module")
def behind_http_api() -> Recorded:
    def make() -> WebService:
        service = WebService(
            "api",
            web_args(listener_arn=None, alb_security_group_id=None, alb_arn_suffix=None, register_for_http_api=True),
        )
        service.allow_ingress_from("http-api", "sg-vpc-link")
        return service

    return build(make)


def test_behind_the_http_api_there_is_no_target_group_rule_or_alb_ingress(behind_http_api):
    assert behind_http_api.of_type("aws:lb/targetGroup:TargetGroup") == []
    assert behind_http_api.of_type("aws:lb/listenerRule:ListenerRule") == []
    service = inputs(behind_http_api.one("aws:ecs/service:Service"))
    assert not service.get("loadBalancers")
    assert "healthCheckGracePeriodSeconds" not in service
    ingress = [inputs(r) for r in behind_http_api.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    assert [(r["referencedSecurityGroupId"], r["fromPort"], r["toPort"]) for r in ingress] == [
        ("sg-vpc-link", 8080, 8080)
    ]


def test_behind_the_http_api_cloud_map_carries_srv_records_of_the_container_port(behind_http_api):
    discovery = inputs(behind_http_api.one("aws:servicediscovery/service:Service"))
    assert [record["type"] for record in discovery["dnsConfig"]["dnsRecords"]] == ["SRV"]
    registries = inputs(behind_http_api.one("aws:ecs/service:Service"))["serviceRegistries"]
    assert (registries["containerName"], registries["containerPort"]) == ("api", 8080)


def test_behind_the_http_api_scaling_tracks_cpu_and_memory_only(behind_http_api):
    metrics = sorted(
        inputs(p)["targetTrackingScalingPolicyConfiguration"]["predefinedMetricSpecification"]["predefinedMetricType"]
        for p in behind_http_api.of_type("aws:appautoscaling/policy:Policy")
    )
    assert metrics == ["ECSServiceAverageCPUUtilization", "ECSServiceAverageMemoryUtilization"]


def test_behind_the_alb_cloud_map_keeps_a_records():
    recorded = build_service()
    discovery = inputs(recorded.one("aws:servicediscovery/service:Service"))
    assert [record["type"] for record in discovery["dnsConfig"]["dnsRecords"]] == ["A"]
    assert "containerPort" not in inputs(recorded.one("aws:ecs/service:Service"))["serviceRegistries"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"alb_arn_suffix": None}, "all three (behind the ALB) or none"),
        ({"register_for_http_api": True}, "register_for_http_api: true with an ALB"),
    ],
)
def test_half_an_alb_or_both_entries_are_refused(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        web_args(**overrides)


# --- Deployments ---

BLUE_GREEN = Rollout(strategy="BLUE_GREEN", bake_time_minutes=15, rollback_alarms=True)
TEST_URL = "https://jobs-prod-alb-1.us-east-1.elb.amazonaws.com:8443"
TEST_LISTENER = AlbTestListener("arn:aws:elasticloadbalancing:listener/app/test", 8443, TEST_URL)


@pytest.fixture(scope="module")
def blue_green() -> Recorded:
    return build_service(rollout=BLUE_GREEN, test_listener=TEST_LISTENER, smoke_tests=[("/ready", 200)])


def test_rolling_by_default_keeps_one_target_group_and_no_hook(recorded):
    service = inputs(recorded.one("aws:ecs/service:Service"))
    assert "deploymentConfiguration" not in service
    assert "alarms" not in service
    assert len(recorded.of_type("aws:lb/targetGroup:TargetGroup")) == 1
    assert not recorded.of_type("aws:lambda/function:Function")


def test_blue_green_gives_ecs_both_target_groups_the_rules_and_a_role(blue_green):
    service = inputs(blue_green.one("aws:ecs/service:Service"))
    assert service["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
    assert service["deploymentConfiguration"]["bakeTimeInMinutes"] == "15"
    (balancer,) = service["loadBalancers"]
    advanced = balancer["advancedConfiguration"]
    groups = {r.name: inputs(r) for r in blue_green.of_type("aws:lb/targetGroup:TargetGroup")}
    assert set(groups) == {"jobs-dev-api-tg", "jobs-dev-api-tg-alternate"}
    assert {g["deregistrationDelay"] for g in groups.values()} == {30}
    assert advanced["alternateTargetGroupArn"].endswith("jobs-dev-api-tg-alternate")
    assert balancer["targetGroupArn"].endswith("jobs-dev-api-tg")
    assert advanced["productionListenerRule"].endswith("jobs-dev-api-rule")
    assert advanced["testListenerRule"].endswith("jobs-dev-api-test-rule")
    assert advanced["roleArn"].endswith("jobs-dev-api-traffic-shift-role")


def test_the_rules_forward_to_the_weighted_pair_ecs_shifts(blue_green):
    rules = {r.name: inputs(r) for r in blue_green.of_type("aws:lb/listenerRule:ListenerRule")}
    for rule in rules.values():
        (action,) = rule["actions"]
        weights = [(g["arn"].rsplit(":", 1)[-1], g["weight"]) for g in action["forward"]["targetGroups"]]
        assert weights == [("jobs-dev-api-tg", 100), ("jobs-dev-api-tg-alternate", 0)]
    production, test = rules["jobs-dev-api-rule"], rules["jobs-dev-api-test-rule"]
    assert test["priority"] < production["priority"]
    header = next(c["httpHeader"] for c in test["conditions"] if "httpHeader" in c)
    token = inputs(blue_green.one("random:index/randomPassword:RandomPassword"))
    assert header["httpHeaderName"] == "X-Deployment-Test"
    assert len(header["values"]) == 1 and token["length"] == 40
    # The token is a secret in the plan, never a plain value.
    raw = blue_green.find("aws:lb/listenerRule:ListenerRule", "jobs-dev-api-test-rule").inputs
    assert "4dabf18193072939515e22adb298388d" in json.dumps(raw, default=str)


def test_the_traffic_shift_role_touches_only_this_service(blue_green):
    policy = json_input(blue_green.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-traffic-shift-policy"), "policy")
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadLoadBalancers"]["Resource"] == ["*"]
    assert all(a.startswith("elasticloadbalancing:Describe") for a in by_sid["ReadLoadBalancers"]["Action"])
    assert sorted(r.rsplit(":", 1)[-1] for r in by_sid["RegisterOwnTargets"]["Resource"]) == [
        "jobs-dev-api-tg", "jobs-dev-api-tg-alternate"
    ]  # fmt: skip
    assert by_sid["ModifyOwnListeners"]["Resource"] == [
        "arn:aws:elasticloadbalancing:listener/app/x", TEST_LISTENER.arn
    ]  # fmt: skip
    assert sorted(r.rsplit(":", 1)[-1] for r in by_sid["ShiftOwnRules"]["Resource"]) == [
        "jobs-dev-api-rule", "jobs-dev-api-test-rule"
    ]  # fmt: skip
    trust = json_input(blue_green.find("aws:iam/role:Role", "jobs-dev-api-traffic-shift-role"), "assumeRolePolicy")
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "ecs.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}


def test_the_hook_smoke_tests_through_the_test_rule_before_production_traffic(blue_green):
    (hook,) = inputs(blue_green.one("aws:ecs/service:Service"))["deploymentConfiguration"]["lifecycleHooks"]
    assert hook["lifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
    assert hook["hookTargetArn"].endswith("jobs-dev-api-deploy-hook")
    assert hook["roleArn"].endswith("jobs-dev-api-deploy-hook-invoke-role")
    assert json.loads(hook["hookDetails"]) == {
        "baseUrl": TEST_URL,
        "header": "X-Deployment-Test",
        "checks": [{"path": "/health", "status": 200}, {"path": "/ready", "status": 200}],
    }
    function = inputs(blue_green.one("aws:lambda/function:Function"))
    assert function["handler"] == "handler.handler"
    assert ":secret:jobs-dev-api-deploy-test-token-" in function["environment"]["variables"]["TEST_TOKEN_SECRET_ARN"]
    assert function["timeout"] > int(function["environment"]["variables"]["READY_TIMEOUT_SECONDS"])
    invoke = json_input(
        blue_green.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-deploy-hook-invoke-policy"), "policy"
    )
    assert [(s["Action"], s["Resource"]) for s in invoke["Statement"]] == [
        (["lambda:InvokeFunction"], [hook["hookTargetArn"]])
    ]
    own = json_input(blue_green.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-api-deploy-hook-policy"), "policy")
    by_sid = {s["Sid"]: (s["Action"], s["Resource"]) for s in own["Statement"]}
    assert set(by_sid) == {
        "ReadTestToken", "DecryptTestToken", "WriteOwnLogs", "ManageVpcNetworkInterfaces", "DescribeVpcNetworkInterfaces"
    }  # fmt: skip
    assert by_sid["ManageVpcNetworkInterfaces"] == (
        ["ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
         "ec2:UnassignPrivateIpAddresses"],
        ["arn:aws:ec2:us-east-1:123456789012:*/*"],
    )  # fmt: skip
    assert by_sid["DescribeVpcNetworkInterfaces"] == (["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], ["*"])


def test_the_test_rule_sits_on_the_test_listener_and_production_on_the_production_one(blue_green):
    rules = {r.name: inputs(r) for r in blue_green.of_type("aws:lb/listenerRule:ListenerRule")}
    assert rules["jobs-dev-api-test-rule"]["listenerArn"] == TEST_LISTENER.arn
    assert rules["jobs-dev-api-rule"]["listenerArn"] == "arn:aws:elasticloadbalancing:listener/app/x"


def test_the_hook_runs_in_the_private_subnets_with_egress_only_to_the_test_port_and_https(blue_green):
    function = inputs(blue_green.one("aws:lambda/function:Function"))
    group = blue_green.find("aws:ec2/securityGroup:SecurityGroup", "jobs-dev-api-deploy-hook-sg")
    assert function["vpcConfig"] == {"subnetIds": ["subnet-a", "subnet-b"], "securityGroupIds": [f"{group.name}-id"]}

    def own(kind: str) -> list[dict]:
        return [inputs(r) for r in blue_green.of_type(kind) if inputs(r)["securityGroupId"] == f"{group.name}-id"]

    egress = own("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert sorted((r["fromPort"], r["toPort"], r["ipProtocol"], r["cidrIpv4"]) for r in egress) == [
        (443, 443, "tcp", "0.0.0.0/0"), (8443, 8443, "tcp", "0.0.0.0/0")
    ]  # fmt: skip
    assert own("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []


def test_rollback_alarms_watch_both_target_groups_and_roll_back(blue_green):
    service = inputs(blue_green.one("aws:ecs/service:Service"))
    alarms = {r.name: inputs(r) for r in blue_green.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert service["alarms"] == {"alarmNames": sorted(alarms), "enable": True, "rollback": True}
    rate = alarms["jobs-dev-api-rollback-5xx-rate"]
    expression = next(q["expression"] for q in rate["metricQueries"] if q.get("returnData"))
    assert expression == "100 * SUM([e0, e1]) / MAX([1, SUM([r0, r1])])"
    metrics = [q["metric"] for q in rate["metricQueries"] if "metric" in q]
    assert {m["dimensions"]["TargetGroup"].split("/")[1] for m in metrics} == {
        "jobs-dev-api-tg", "jobs-dev-api-tg-alternate"
    }  # fmt: skip
    latency = alarms["jobs-dev-api-rollback-p99-latency"]
    assert {q["metric"]["stat"] for q in latency["metricQueries"] if "metric" in q} == {"p99"}
    assert latency["threshold"] == 2.0
    assert alarms["jobs-dev-api-rollback-unhealthy-hosts"]["threshold"] == 0


def test_canary_and_linear_carry_their_steps():
    canary = build_service(
        rollout=Rollout(strategy="CANARY", canary_percent=5, step_minutes=10), test_listener=TEST_LISTENER
    )
    configuration = inputs(canary.one("aws:ecs/service:Service"))["deploymentConfiguration"]
    assert configuration["canaryConfiguration"] == {"canaryPercent": 5, "canaryBakeTimeInMinutes": "10"}
    assert "linearConfiguration" not in configuration
    linear = build_service(rollout=Rollout(strategy="LINEAR", linear_step_percent=20), test_listener=TEST_LISTENER)
    configuration = inputs(linear.one("aws:ecs/service:Service"))["deploymentConfiguration"]
    assert configuration["linearConfiguration"] == {"stepPercent": 20, "stepBakeTimeInMinutes": "5"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rollout": BLUE_GREEN}, "test_listener: missing with rollout BLUE_GREEN"),
        ({"rollout": BLUE_GREEN, "test_listener": TEST_LISTENER, "test_rule_priority": 100}, "test_rule_priority: 100"),
        ({"drain_seconds": 121}, "drain_seconds: 121; allowed: 1-120"),
    ],
)
def test_deployment_settings_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        web_args(**overrides)
