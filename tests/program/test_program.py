"""The whole program per stack, under mocks: what each environment gets, and that bad config stops it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import check
from runner.plan import Plan, PlanError, run_program
from tests.plans import planned as stack_plan
from tests.support import Recorded, inputs, json_input

ROOT = Path(__file__).resolve().parents[2]
STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {stack: stack_plan(stack) for stack in STACKS}


def recorded(plan: Plan) -> Recorded:
    return Recorded(plan.resources, plan.outputs)


def test_every_export_resolves(plans):
    for plan in plans.values():
        assert {"albDnsName", "url", "clusterName", "apiServiceName", "vpcId", "alertTopicArn"} <= set(plan.outputs)
        assert all(value not in (None, "", []) for value in plan.outputs.values())
    assert plans["prod"].outputs["url"].startswith("https://")
    assert plans["dev"].outputs["url"].startswith("http://")
    assert plans["dev"].outputs["clusterName"] == "jobs-dev"


@pytest.mark.parametrize(
    ("stack", "nat", "cpu", "memory", "desired", "minimum", "maximum"),
    [
        ("dev", "Single", "512", "1024", 1, 1, 3),
        ("staging", "Single", "1024", "2048", 2, 1, 5),
        ("prod", "OnePerAz", "2048", "4096", 3, 2, 10),
    ],
)
def test_sizing_follows_the_table(plans, stack, nat, cpu, memory, desired, minimum, maximum):
    plan = recorded(plans[stack])
    assert inputs(plan.one("awsx:ec2:Vpc"))["natGateways"] == {"strategy": nat}
    task = next(
        inputs(r) for r in plan.of_type("aws:ecs/taskDefinition:TaskDefinition") if r.name == f"jobs-{stack}-api-task"
    )
    assert (task["cpu"], task["memory"]) == (cpu, memory)
    api = plan.find("aws:ecs/service:Service", f"jobs-{stack}-api-service")
    assert inputs(api)["desiredCount"] == desired
    target = plan.find("aws:appautoscaling/target:Target", f"jobs-{stack}-api-scaling-target")
    assert (inputs(target)["minCapacity"], inputs(target)["maxCapacity"]) == (minimum, maximum)


@pytest.mark.parametrize(("stack", "processes"), [("dev", "1"), ("staging", "1"), ("prod", "2")])
def test_the_api_runs_one_process_per_vcpu(plans, stack, processes):
    task = next(
        r
        for r in recorded(plans[stack]).of_type("aws:ecs/taskDefinition:TaskDefinition")
        if r.name == f"jobs-{stack}-api-task"
    )
    (container,) = json_input(task, "containerDefinitions")
    assert {"name": "API_WORKERS", "value": processes} in container["environment"]


def test_alert_email_only_where_configured(plans):
    counts = {s: len(recorded(p).of_type("aws:sns/topicSubscription:TopicSubscription")) for s, p in plans.items()}
    assert counts == {"dev": 0, "staging": 1, "prod": 1}


def test_only_prod_serves_tls_and_protects_the_alb(plans):
    for stack, plan in plans.items():
        listeners = recorded(plan).of_type("aws:lb/listener:Listener")
        # The blue/green test listener (8443 or 8080, NAT addresses only) is checked in its own test.
        production = {inputs(r)["port"] for r in listeners if not r.name.endswith("-test")}
        alb = inputs(recorded(plan).one("aws:lb/loadBalancer:LoadBalancer"))
        assert production == ({80, 443} if stack == "prod" else {80})
        tls = {inputs(r)["port"]: inputs(r)["protocol"] for r in listeners}
        served = {protocol for port, protocol in tls.items() if port != 80}
        assert served <= ({"HTTPS"} if stack == "prod" else {"HTTP"})
        assert alb["enableDeletionProtection"] is (stack == "prod")


def test_log_retention_per_environment(plans):
    for stack, plan in plans.items():
        retention = {inputs(r)["retentionInDays"] for r in recorded(plan).of_type("aws:cloudwatch/logGroup:LogGroup")}
        assert retention == ({90} if stack == "prod" else {30})


def test_every_resource_belongs_to_a_component(plans):
    for plan in plans.values():
        top_level = [r for r in plan.resources if r.parent is None]
        assert top_level and all(r.type.startswith("container-platform:") for r in top_level)


def test_containers_never_get_secrets_in_environment(plans):
    for plan in plans.values():
        for task in recorded(plan).of_type("aws:ecs/taskDefinition:TaskDefinition"):
            for container in json_input(task, "containerDefinitions"):
                names = {e["name"] for e in container["environment"]}
                assert not {n for n in names if any(w in n for w in ("PASSWORD", "SECRET", "TOKEN", "API_KEY"))}


def copy_program(tmp_path: Path, stack_yaml: str) -> Path:
    for name in ("__main__.py", "Pulumi.yaml", "components", "services", "lambdas"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "Pulumi.bad.yaml").write_text(stack_yaml)
    return tmp_path


def test_invalid_config_stops_the_program_naming_each_key(tmp_path):
    program = copy_program(
        tmp_path,
        "config:\n"
        "  container-platform:environment: dev\n"
        "  container-platform:service:\n"
        "    cpu: 512\n"
        "    memory: 9999\n"
        "  container-platform:colour: blue\n",
    )
    with pytest.raises(PlanError) as caught:
        run_program(program, "bad")
    message = str(caught.value)
    assert "service.memory: 9999 is not a Fargate size" in message
    assert "colour: unknown key" in message


def test_plan_cli_prints_tree_counts_and_outputs(capsys):
    assert check.main(["--program", str(ROOT), "--stack", "dev"]) == 0
    text = capsys.readouterr().out
    assert "container-platform:web-service:WebService  api" in text
    assert "    aws:ecs/service:Service  jobs-dev-api-service" in text
    assert "Counts by type:" in text
    assert "albDnsName:" in text


def test_plan_cli_json_has_the_documented_shape(capsys):
    assert check.main(["--program", str(ROOT), "--stack", "dev", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stack"] == "dev"
    assert {"urn", "type", "name", "parent", "inputs"} <= set(report["resources"][0])
    assert report["outputs"]["clusterName"] == "jobs-dev"
    assert (report["mandatory"], report["checked"]) == (0, len(report["resources"]))
    cost = report["cost"]
    assert {"currency", "per_day", "per_month", "resources", "unpriced"} <= set(cost)
    assert cost["currency"] == "USD"
    assert cost["per_month"] > cost["per_day"] > 0


def test_plan_cli_rejects_a_missing_stack_file(capsys):
    assert check.main(["--program", str(ROOT), "--stack", "nope"]) == 2
    assert (
        "Pulumi.nope.yaml does not exist; stacks with a config file here: dev, dev-lean, prod, shop, staging"
        in capsys.readouterr().err
    )


def test_plan_never_prints_secret_values(tmp_path, capsys):
    (tmp_path / "Pulumi.yaml").write_text("name: secretive\nruntime: python\n")
    (tmp_path / "Pulumi.s.yaml").write_text("config: {}\n")
    (tmp_path / "__main__.py").write_text(
        "import pulumi, pulumi_aws as aws\n"
        "aws.ssm.Parameter('p', type='SecureString', value=pulumi.Output.secret('hunter2-value'))\n"
        "pulumi.export('token', pulumi.Output.secret('hunter2-export'))\n"
    )
    for extra in ([], ["--json"]):
        assert check.main(["--program", str(tmp_path), "--stack", "s", *extra]) == 0
        out = capsys.readouterr().out
        assert "hunter2" not in out
        assert "[secret]" in out


# The console's CloudFront without a custom domain (*.cloudfront.net, TLS 1.0 accepted) in front of an ALB without a
# certificate (HTTP to the origin).
CONSOLE_WITHOUT_CERTIFICATES = (
    "aws-cloudfront-distribution-use-custom-certificate",
    "aws-cloudfront-distribution-encrypt-origin-traffic",
)
# Advisory findings our own stacks accept; README.md ("Accepted advisory findings") says why for each.
ACCEPTED_ADVISORIES = {
    "dev": {
        "aws-lb-listener-redirect-http-to-https",
        "aws-codebuild-project-restrict-privileged-mode",
        "cost-budget",
        *CONSOLE_WITHOUT_CERTIFICATES,
    },
    "staging": {
        "aws-lb-listener-redirect-http-to-https",
        "aws-codebuild-project-restrict-privileged-mode",
        "cost-budget",
        *CONSOLE_WITHOUT_CERTIFICATES,
    },
    "prod": {"aws-codebuild-project-restrict-privileged-mode", "cost-budget"},
}


def test_our_stacks_pass_the_policy_pack(plans):
    from runner.engine import PolicyPackProcess

    readme = (ROOT / "README.md").read_text()
    with PolicyPackProcess() as pack:
        for stack, plan in plans.items():
            report = pack.evaluate(plan.resources)
            assert report.mandatory_count == 0, [v for v in report.violations if v.level == "mandatory"]
            advisories = {v.policy for v in report.violations if v.level == "advisory"}
            assert advisories == ACCEPTED_ADVISORIES[stack], stack
    for policy in set().union(*ACCEPTED_ADVISORIES.values()):
        assert f"`{policy}`" in readme, f"README must say why {policy} is accepted"


def test_costs_rise_with_the_environment_and_the_lean_profile_keeps_every_feature(plans):
    from policy.rules.costing import estimate

    lean = stack_plan("dev-lean")
    estimates = {stack: estimate(plan.resources) for stack, plan in plans.items()}
    estimates["dev-lean"] = estimate(lean.resources)
    per_day = {stack: e.per_day for stack, e in estimates.items()}
    assert per_day["dev-lean"] < per_day["dev"] < per_day["staging"] < per_day["prod"]
    readme = (ROOT / "README.md").read_text()
    for stack, cost in estimates.items():
        row = next(line for line in readme.splitlines() if line.startswith(f"| {stack} "))
        assert f"${cost.per_day:.2f} | ${cost.per_month:,.2f}" in row, f"README cost table is stale for {stack}"
    components = {r.type for r in plans["dev"].resources if r.type.startswith("container-platform:")}
    lean_components = {r.type for r in lean.resources if r.type.startswith("container-platform:")}
    # Every component of dev, the HTTP API as the web service's public entry instead of the ALB, and office hours.
    assert lean_components == components | {
        "container-platform:http-api:HttpApi",
        "container-platform:office-hours:OfficeHours",
    }
    assert not estimate(lean.resources).unpriced


def test_dev_lean_serves_the_job_platform_api_through_the_http_api_with_one_dashboard():
    lean = recorded(stack_plan("dev-lean"))
    assert lean.of_type("aws:lb/loadBalancer:LoadBalancer") == []
    routes = sorted(inputs(r)["routeKey"] for r in lean.of_type("aws:apigatewayv2/route:Route"))
    assert routes == ["ANY /", "ANY /{proxy+}"]
    (discovery,) = [
        inputs(r) for r in lean.of_type("aws:servicediscovery/service:Service") if inputs(r)["name"] == "api"
    ]
    assert [record["type"] for record in discovery["dnsConfig"]["dnsRecords"]] == ["SRV"]
    (dashboard,) = lean.of_type("aws:cloudwatch/dashboard:Dashboard")
    titles = [w["properties"]["title"] for w in json_input(dashboard, "dashboardBody")["widgets"]]
    for expected in ("HTTP API metrics", "Database performance", "Cache engine CPU %", "EFS I/O bytes"):
        assert expected in titles
    alarms = {inputs(a).get("metricName") for a in lean.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    assert {"5xx", "Latency"} <= alarms
    assert "UnHealthyHostCount" not in alarms


KMS_KEY_INPUTS = ("kmsKeyId", "kmsKey", "kmsMasterKeyId", "performanceInsightsKmsKeyId", "encryptionKey")


def kms_references(value: Any) -> list[str]:
    """Every KMS key input anywhere in a resource's inputs (nested blocks included)."""
    if isinstance(value, dict):
        own = [v for k, v in value.items() if k in KMS_KEY_INPUTS and isinstance(v, str)]
        return own + [ref for v in value.values() for ref in kms_references(v)]
    if isinstance(value, list):
        return [ref for v in value for ref in kms_references(v)]
    return []


def key_uses(plan: Recorded) -> list[dict[str, Any]]:
    """The key policy statements that let someone other than the account use a key (service principals)."""
    return [
        statement
        for key in plan.of_type("aws:kms/key:Key")
        for statement in json_input(key, "policy")["Statement"]
        if statement["Sid"] != "AccountAdministers"
    ]


def test_dev_lean_encrypts_everything_with_one_stack_key_that_allows_what_every_per_component_key_did(plans):
    lean, dev = recorded(stack_plan("dev-lean")), recorded(plans["dev"])
    (key,) = lean.of_type("aws:kms/key:Key")  # kms.sharedKey: the platform key only
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/alerts-key-key-id"
    references = {(r.type, r.name): kms_references(inputs(r)) for r in lean.resources}
    used = {where for where, refs in references.items() if refs}
    assert all(ref == key_arn for refs in references.values() for ref in refs)
    for expected in (
        ("aws:rds/instance:Instance", "database-instance"),
        ("aws:elasticache/replicationGroup:ReplicationGroup", "cache-group"),
        ("aws:efs/fileSystem:FileSystem", "storage-fs"),
        ("aws:ecr/repository:Repository", "images-api-repo"),
        (
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "images-reports-encryption",
        ),
        (
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "runtime-security-audit-encryption",
        ),
        ("aws:sns/topic:Topic", "alerts-topic"),
    ):
        assert expected in used, expected
    assert len(dev.of_type("aws:kms/key:Key")) == 7, "dev keeps a key per component"
    shared_uses = key_uses(lean)
    for statement in key_uses(dev):  # same principals, actions and conditions (encryption context included)
        assert statement in shared_uses, statement
    assert inputs(key)["enableKeyRotation"] is True


def test_the_longest_allowed_names_fit_aws_limits(tmp_path):
    program = copy_program(
        tmp_path,
        "config:\n  container-platform:environment: staging\n  container-platform:applicationName: fifteen-chars-x\n",
    )
    plan = recorded(run_program(program, "bad"))
    assert len(inputs(plan.one("aws:lb/loadBalancer:LoadBalancer"))["name"]) <= 32
    for bucket in plan.of_type("aws:s3/bucket:Bucket"):
        assert len(inputs(bucket)["bucketPrefix"]) <= 37, inputs(bucket)["bucketPrefix"]
    for group in plan.of_type("aws:elasticache/replicationGroup:ReplicationGroup"):
        assert len(inputs(group)["replicationGroupId"]) <= 40
    for queue in plan.of_type("aws:sqs/queue:Queue"):
        assert len(inputs(queue)["name"]) <= 80


def test_the_job_platform_can_be_switched_off(tmp_path):
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobs-dev-api@sha256:" + "c" * 64  # promoted digest
    program = copy_program(
        tmp_path,
        "config:\n"
        "  container-platform:environment: dev\n"
        "  container-platform:jobPlatform:\n"
        "    enabled: false\n"
        "  container-platform:service:\n"
        f"    image: {image}\n",
    )
    plan = recorded(run_program(program, "bad"))
    assert plan.of_type("container-platform:worker:QueueWorker") == []
    assert plan.of_type("aws:sqs/queue:Queue") == []
    assert plan.of_type("docker:index/image:Image") == [], "the promoted image is deployed, nothing is built"
    (task,) = plan.of_type("aws:ecs/taskDefinition:TaskDefinition")
    (container,) = json_input(task, "containerDefinitions")
    assert container["image"] == image
    assert "queueUrls" not in plan.outputs


def test_behind_the_http_api_the_job_api_refuses_uploads_api_gateway_would_cut_off(plans):
    """HTTP APIs cap request payloads at 10 MB (not adjustable): the API's own limit must not promise more."""
    limits = {}
    for stack, plan in {**plans, "dev-lean": stack_plan("dev-lean")}.items():
        tasks = recorded(plan).of_type("aws:ecs/taskDefinition:TaskDefinition")
        for task in tasks:
            for container in json_input(task, "containerDefinitions"):
                if container["name"] == "api":
                    env = {e["name"]: e["value"] for e in container["environment"]}
                    limits[stack] = env.get("MAX_UPLOAD_BYTES")
    assert limits["dev-lean"] == "10000000"
    assert limits["dev"] is None and limits["prod"] is None, "behind the ALB the service default (50 MiB) holds"


# --- The web console (issue 19) ---------------------------------------------------------------------------

DISTRIBUTION = "aws:cloudfront/distribution:Distribution"


def _api_origin(plan: Plan) -> dict:
    distribution = inputs(recorded(plan).one(DISTRIBUTION))
    return next(o for o in distribution["origins"] if o["originId"] == "api")


def test_every_job_platform_stack_serves_the_console_with_the_api_on_the_same_origin(plans):
    for stack, plan in plans.items():
        site = recorded(plan)
        assert site.one("container-platform:static-site:StaticSite")
        distribution = inputs(site.one(DISTRIBUTION))
        assert distribution["httpVersion"] == "http2and3", stack
        assert [b["pathPattern"] for b in distribution["orderedCacheBehaviors"]] == ["/api/*"], stack
        assert plan.outputs["consoleUrl"].startswith("https://"), stack
    # prod: its own domain with TLSv1.2_2021, and the ALB by the name its certificate covers, over TLS.
    prod = inputs(recorded(plans["prod"]).one(DISTRIBUTION))
    assert prod["aliases"] == ["console.jobs.example.com"]
    assert prod["viewerCertificate"]["minimumProtocolVersion"] == "TLSv1.2_2021"
    assert _api_origin(plans["prod"])["domainName"] == "api.jobs.example.com"
    assert _api_origin(plans["prod"])["customOriginConfig"]["originProtocolPolicy"] == "https-only"
    # dev: the ALB has no certificate, so CloudFront reaches it by its DNS name over HTTP (an accepted advisory).
    dev_origin = _api_origin(plans["dev"])
    assert dev_origin["domainName"] == plans["dev"].outputs["albDnsName"]
    assert dev_origin["customOriginConfig"]["originProtocolPolicy"] == "http-only"


def test_dev_lean_reaches_the_http_api_over_tls():
    plan = stack_plan("dev-lean")
    origin = _api_origin(plan)
    assert plan.outputs["url"] == f"https://{origin['domainName']}"
    assert origin["customOriginConfig"]["originProtocolPolicy"] == "https-only"


def test_an_unbuilt_console_plans_offline_as_a_placeholder(tmp_path):
    program = copy_program(
        tmp_path,
        "config:\n"
        "  container-platform:environment: dev\n"
        "  container-platform:console:\n"
        "    buildDirectory: web/never-built\n",
    )
    plan = run_program(program, "bad")
    assert not recorded(plan).of_type("aws:s3/bucketObjectv2:BucketObjectv2")
    assert any(
        p.startswith("console.buildDirectory: web/never-built has no index.html")
        for p in plan.outputs["offlineOnlyPlaceholders"]
    )


@pytest.mark.parametrize(("stack", "port", "nat_gateways"), [("prod", 8443, 3), ("staging", 8080, 1), ("dev", None, 1)])
def test_the_test_route_is_reachable_only_from_the_nat_gateways_where_the_api_shifts_traffic(
    plans, stack, port, nat_gateways
):
    plan = recorded(plans[stack])
    listeners = {r.name: inputs(r) for r in plan.of_type("aws:lb/listener:Listener")}
    ingress = [inputs(r) for r in plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    alb_group = "cluster-alb-sg-id"
    if port is None:  # rolling: no test listener, no test rule
        assert "cluster-test" not in listeners
        assert not [r for r in ingress if r["securityGroupId"] == alb_group and r["fromPort"] not in (80, 443)]
        return
    assert listeners["cluster-test"]["port"] == port
    on_test_port = [r for r in ingress if r["securityGroupId"] == alb_group and r["fromPort"] <= port <= r["toPort"]]
    # The mocks' NAT gateway lookup answers with a documentation address per public subnet (runner/plan.py).
    assert sorted(r["cidrIpv4"] for r in on_test_port) == [f"203.0.113.{10 + i}/32" for i in range(nat_gateways)]
    rule = inputs(plan.find("aws:lb/listenerRule:ListenerRule", f"jobs-{stack}-api-test-rule"))
    assert rule["listenerArn"].endswith(":cluster-test")
    (service,) = [inputs(r) for r in plan.of_type("aws:ecs/service:Service") if r.name == f"jobs-{stack}-api-service"]
    (hook,) = service["deploymentConfiguration"]["lifecycleHooks"]
    assert json.loads(hook["hookDetails"])["baseUrl"].endswith(f".elb.amazonaws.com:{port}")
    function = inputs(plan.find("aws:lambda/function:Function", f"jobs-{stack}-api-deploy-hook"))
    assert function["vpcConfig"]["subnetIds"] == plans[stack].outputs["privateSubnetIds"]
    assert function["vpcConfig"]["securityGroupIds"] == [f"jobs-{stack}-api-deploy-hook-sg-id"]


def test_prod_deploys_the_api_blue_green_with_its_hook_and_alarms_and_dev_rolls(plans):
    def services(stack: str) -> dict[str, dict[str, Any]]:
        return {r.name: inputs(r) for r in plans[stack].resources if r.type == "aws:ecs/service:Service"}

    prod = services("prod")
    api, worker = prod["jobs-prod-api-service"], prod["jobs-prod-worker-service"]
    assert api["deploymentConfiguration"]["strategy"] == "BLUE_GREEN"
    assert api["deploymentConfiguration"]["bakeTimeInMinutes"] == "15"
    (hook,) = api["deploymentConfiguration"]["lifecycleHooks"]
    assert json.loads(hook["hookDetails"])["checks"] == [
        {"path": "/health", "status": 200},
        {"path": "/ready", "status": 200},
    ]
    assert hook["lifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
    assert json.loads(hook["hookDetails"])["baseUrl"].startswith("https://")  # prod's listener is HTTPS
    assert api["alarms"]["rollback"] is True and len(api["alarms"]["alarmNames"]) == 3
    assert api["loadBalancers"][0]["advancedConfiguration"]["testListenerRule"].endswith("jobs-prod-api-test-rule")
    assert worker["deploymentConfiguration"] == {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": "15"}
    assert worker["alarms"]["alarmNames"] == ["jobs-prod-worker-errors-alarm"]
    for service in services("dev").values():
        assert "deploymentConfiguration" not in service and "alarms" not in service
