"""`network.egress: natInstance`: one fck-nat instance replaces the NAT gateways, with its own security group,
least-privilege role, hardened launch template, an auto scaling group of 1 and the private subnets' routes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from components.config import ConfigError, parse_stack_config
from components.network import FCK_NAT_AMI_NAME, FCK_NAT_AMI_OWNER, Network, NetworkArgs
from runner import plan as plan_module
from runner.engine import PolicyPackProcess
from tests.plans import planned as stack_plan
from tests.support import Recorded, build, inputs, json_input

ROOT = Path(__file__).resolve().parents[2]
KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"
IMAGE_ID = "ami-0fc4a7f5e5b7c1d2e"
NAT_TYPES = (
    "aws:autoscaling/group:Group",
    "aws:ec2/launchTemplate:LaunchTemplate",
    "aws:ec2/networkInterface:NetworkInterface",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:ec2/route:Route",
)


@pytest.fixture
def invokes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Record the program's data-source lookups and answer the two the NAT instance makes as AWS would."""
    calls: list[tuple[str, dict[str, Any]]] = []
    answer_others = plan_module.mock_call

    def answer(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
        calls.append((token, args))
        if token == "aws:ec2/getAmi:getAmi":
            return {"id": IMAGE_ID, "imageId": IMAGE_ID, "architecture": "arm64", "ownerId": FCK_NAT_AMI_OWNER}
        if token == "aws:ec2/getRouteTable:getRouteTable":
            return {"id": f"rtb-of-{args['subnetId']}", "routeTableId": f"rtb-of-{args['subnetId']}"}
        return answer_others(token, args, region)

    monkeypatch.setattr(plan_module, "mock_call", answer)
    return calls


def build_nat_network(max_azs: int = 2, ssm: bool = False) -> Recorded:
    args = NetworkArgs(
        name_prefix="jobs-dev",
        account_id="123456789012",
        log_kms_key_arn=KEY,
        max_azs=max_azs,
        egress="natInstance",
        nat_instance_ssm=ssm,
    )
    return build(lambda: Network("network", args))


def test_the_vpc_gets_no_nat_gateway_and_the_instance_is_in_the_first_public_subnet(invokes):
    recorded = build_nat_network()
    assert inputs(recorded.one("awsx:ec2:Vpc"))["natGateways"] == {"strategy": "None"}
    assert recorded.of_type("aws:ec2/natGateway:NatGateway") == []
    assert recorded.of_type("aws:ec2/eip:Eip") == []
    group = inputs(recorded.one("aws:autoscaling/group:Group"))
    assert (group["minSize"], group["maxSize"], group["desiredCapacity"]) == (1, 1, 1)
    assert group["vpcZoneIdentifiers"] == ["subnet-network-vpc-public-0"]
    assert group["healthCheckType"] == "EC2"
    assert group["launchTemplate"]["id"] == "network-nat-template-id"
    # The group follows the template's versions, so a new image rolls the instance.
    assert group["launchTemplate"]["version"] not in ("$Latest", "$Default")
    assert group["instanceRefresh"]["strategy"] == "Rolling"


def test_every_private_route_table_sends_internet_traffic_to_the_fixed_interface(invokes):
    recorded = build_nat_network(max_azs=3)
    routes = sorted((inputs(r) for r in recorded.of_type("aws:ec2/route:Route")), key=lambda r: r["routeTableId"])
    assert [r["routeTableId"] for r in routes] == [f"rtb-of-subnet-network-vpc-private-{i}" for i in range(3)]
    assert {(r["destinationCidrBlock"], r["networkInterfaceId"]) for r in routes} == {
        ("0.0.0.0/0", "network-nat-eni-id")
    }
    lookups = [args for token, args in invokes if token == "aws:ec2/getRouteTable:getRouteTable"]
    assert all(args["vpcId"] == "vpc-network-vpc" for args in lookups)


def test_the_fixed_interface_forwards_and_only_the_vpc_may_reach_the_instance(invokes):
    recorded = build_nat_network()
    interface = inputs(recorded.one("aws:ec2/networkInterface:NetworkInterface"))
    assert interface["sourceDestCheck"] is False
    assert interface["subnetId"] == "subnet-network-vpc-public-0"
    assert interface["securityGroups"] == ["network-nat-sg-id"]
    (ingress,) = [inputs(r) for r in recorded.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    assert (ingress["securityGroupId"], ingress["cidrIpv4"], ingress["ipProtocol"]) == (
        "network-nat-sg-id",
        "10.0.0.0/16",
        "-1",
    )
    (egress,) = [inputs(r) for r in recorded.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")]
    assert (egress["securityGroupId"], egress["cidrIpv4"]) == ("network-nat-sg-id", "0.0.0.0/0")


def test_the_launch_template_runs_the_newest_fck_nat_image_hardened(invokes):
    recorded = build_nat_network()
    (lookup,) = [args for token, args in invokes if token == "aws:ec2/getAmi:getAmi"]
    assert lookup["owners"] == ["568608671756"] == [FCK_NAT_AMI_OWNER]
    assert lookup["mostRecent"] is True
    filters = {f["name"]: f["values"] for f in lookup["filters"]}
    assert filters == {"name": ["fck-nat-al2023-*-arm64-ebs"], "architecture": ["arm64"]}
    assert FCK_NAT_AMI_NAME == "fck-nat-al2023-*-arm64-ebs"
    template = inputs(recorded.one("aws:ec2/launchTemplate:LaunchTemplate"))
    assert template["imageId"] == IMAGE_ID
    assert template["instanceType"] == "t4g.nano"
    assert "keyName" not in template
    assert template["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
    }
    (root,) = template["blockDeviceMappings"]
    assert root["deviceName"] == "/dev/xvda"
    assert (root["ebs"]["encrypted"], root["ebs"]["volumeType"]) == ("true", "gp3")
    (primary,) = template["networkInterfaces"]
    assert (primary["deviceIndex"], primary["associatePublicIpAddress"]) == (0, "true")
    assert primary["securityGroups"] == ["network-nat-sg-id"]
    assert template["iamInstanceProfile"]["arn"].endswith("network-nat-profile")


def test_the_instance_attaches_the_fixed_interface_at_boot(invokes):
    template = inputs(build_nat_network().one("aws:ec2/launchTemplate:LaunchTemplate"))
    script = base64.b64decode(template["userData"]).decode()
    assert script.startswith("#!/bin/sh\n")
    assert "echo 'eni_id=network-nat-eni-id' >> /etc/fck-nat.conf" in script
    assert script.rstrip().endswith("service fck-nat restart")


def test_the_role_may_only_touch_interfaces_and_instances_tagged_as_this_nat(invokes):
    recorded = build_nat_network()
    trust = json_input(recorded.find("aws:iam/role:Role", "network-nat-role"), "assumeRolePolicy")
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]
    policy = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", "network-nat-policy"), "policy")
    actions = {action for s in policy["Statement"] for action in s["Action"]}
    assert actions == {"ec2:AttachNetworkInterface", "ec2:ModifyNetworkInterfaceAttribute"}
    conditions = [s["Condition"] for s in policy["Statement"]]
    assert conditions == [{"StringEquals": {"aws:ResourceTag/Name": "jobs-dev-nat"}}] * 2
    resources = [r for s in policy["Statement"] for r in s["Resource"]]
    assert all(r.startswith("arn:aws:ec2:us-east-1:123456789012:") for r in resources), resources
    # The condition only works if everything the boot script touches carries that tag.
    template = inputs(recorded.one("aws:ec2/launchTemplate:LaunchTemplate"))
    tagged = {spec["resourceType"]: spec["tags"] for spec in template["tagSpecifications"]}
    assert tagged["instance"]["Name"] == tagged["network-interface"]["Name"] == "jobs-dev-nat"
    assert inputs(recorded.one("aws:ec2/networkInterface:NetworkInterface"))["tags"]["Name"] == "jobs-dev-nat"
    assert recorded.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []


def test_ssm_access_is_opt_in(invokes):
    (attachment,) = build_nat_network(ssm=True).of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert inputs(attachment)["policyArn"] == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    assert inputs(attachment)["role"] == "network-nat-role"


def test_nat_gateway_egress_registers_no_nat_instance():
    args = NetworkArgs(name_prefix="jobs-dev", account_id="123456789012", log_kms_key_arn=KEY, nat_gateways="single")
    recorded = build(lambda: Network("network", args))
    assert inputs(recorded.one("awsx:ec2:Vpc"))["natGateways"] == {"strategy": "Single"}
    assert not [r for r in recorded.resources if r.type in NAT_TYPES]


# --- Config ---------------------------------------------------------------------------------------------------


def config_problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    return caught.value.problems


def test_prod_refuses_a_nat_instance():
    (problem,) = config_problems({"environment": "prod", "certificateArn": CERT, "network": {"egress": "natInstance"}})
    assert problem.startswith("network.egress: 'natInstance' in prod; allowed in prod: natGateway")
    assert "onePerAz" in problem


@pytest.mark.parametrize(
    ("environment", "entry"),
    [("dev", {}), ("staging", {"entry": "httpApi"}), ("staging", {"deployment": {"strategy": "rolling"}})],
)
def test_dev_and_staging_may_use_a_nat_instance(environment, entry):
    config = parse_stack_config({"environment": environment, "network": {"egress": "natInstance"}, **entry})
    assert (config.network.egress, config.network.natInstanceType, config.network.natInstanceSsm) == (
        "natInstance",
        "t4g.nano",
        False,
    )


@pytest.mark.parametrize("strategy", ["blueGreen", "canary", "linear"])
def test_a_nat_instance_cannot_carry_the_apis_test_traffic_behind_the_alb(strategy):
    # GIVEN a NAT instance, whose public address changes with the instance, and a traffic-shifting API on the ALB
    (problem,) = config_problems(
        {"environment": "staging", "network": {"egress": "natInstance"}, "deployment": {"strategy": strategy}}
    )
    # THEN the test listener (open to fixed NAT addresses only) cannot work: refused, naming both keys
    assert problem.startswith(
        f"network.egress: 'natInstance' with entry alb and the API's deployment strategy {strategy!r}; allowed: "
        "natGateway, or strategy rolling, or entry httpApi"
    )


def test_egress_defaults_to_nat_gateways_everywhere():
    for environment in ("dev", "staging", "prod"):
        assert parse_stack_config({"environment": environment, "certificateArn": CERT}).network.egress == "natGateway"


@pytest.mark.parametrize(
    ("network", "key"),
    [
        ({"egress": "natInstances"}, "network.egress"),
        ({"egress": "natInstance", "natInstanceType": "t3.micro"}, "network.natInstanceType"),
        ({"egress": "natInstance", "natInstanceType": "t4g"}, "network.natInstanceType"),
    ],
)
def test_bad_egress_settings_name_the_key_and_what_is_allowed(network, key):
    (problem,) = config_problems({"environment": "dev", "network": network})
    assert problem.startswith(f"{key}: ")
    assert "allowed" in problem


@pytest.mark.parametrize("instance_type", ["t4g.nano", "t4g.micro", "c6gn.medium", "c7gn.large", "m7g.2xlarge"])
def test_graviton_types_are_accepted(instance_type):
    config = parse_stack_config({"environment": "dev", "network": {"natInstanceType": instance_type}})
    assert config.network.natInstanceType == instance_type


# --- The dev-lean stack ---------------------------------------------------------------------------------------


def test_the_dev_lean_plan_uses_the_nat_instance_and_passes_the_pack():
    plan = stack_plan("dev-lean")
    recorded = Recorded(plan.resources, plan.outputs)
    assert inputs(recorded.one("awsx:ec2:Vpc"))["natGateways"] == {"strategy": "None"}
    assert inputs(recorded.one("aws:ec2/launchTemplate:LaunchTemplate"))["instanceType"] == "t4g.nano"
    assert len(recorded.of_type("aws:autoscaling/group:Group")) == 1
    routes = [inputs(r) for r in recorded.of_type("aws:ec2/route:Route")]
    assert len(routes) == 2  # maxAzs 2: one private route table per AZ
    assert {r["networkInterfaceId"] for r in routes} == {"network-nat-eni-id"}
    with PolicyPackProcess() as pack:
        report = pack.evaluate(plan.resources)
    assert report.mandatory_count == 0, [v for v in report.violations if v.level == "mandatory"]
    nat_resources = {r.urn for r in plan.resources if r.name.startswith("network-nat")}
    assert not [v for v in report.violations if v.urn in nat_resources], json.dumps(
        [v.message for v in report.violations]
    )


def test_the_nat_group_and_what_it_launches_carry_the_stacks_default_tags():
    """Provider default tags never reach an auto scaling group (nor, through it, the instance): set explicitly."""
    plan = stack_plan("dev-lean")
    (group,) = [r for r in plan.resources if r.type == "aws:autoscaling/group:Group"]
    tags = {t["key"]: (t["value"], t["propagateAtLaunch"]) for t in group.inputs["tags"]}
    assert tags["environment"] == ("dev", True)
    (template,) = [r for r in plan.resources if r.type == "aws:ec2/launchTemplate:LaunchTemplate"]
    for specification in template.inputs["tagSpecifications"]:
        assert specification["tags"]["environment"] == "dev", specification["resourceType"]
