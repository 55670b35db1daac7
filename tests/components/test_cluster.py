"""ContainerCluster: ECS cluster settings, Cloud Map, and a hardened ALB."""

from __future__ import annotations

import pytest

from components.cluster import TLS_POLICY, ContainerCluster, ContainerClusterArgs
from tests.support import Recorded, build, inputs, json_input

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"


def build_cluster(**overrides) -> Recorded:
    values = {
        "name_prefix": "jobs-dev",
        "vpc_id": "vpc-1",
        "public_subnet_ids": ["subnet-p1", "subnet-p2"],
        "log_kms_key_arn": "arn:aws:kms:us-east-1:123456789012:key/k",
    }
    values.update(overrides)
    return build(lambda: ContainerCluster("cluster", ContainerClusterArgs(**values)))


@pytest.fixture(scope="module")
def http_only() -> Recorded:
    return build_cluster()


@pytest.fixture(scope="module")
def with_tls() -> Recorded:
    return build_cluster(certificate_arn=CERT, deletion_protection=True)


def test_cluster_has_insights_exec_logging_and_both_capacity_providers(http_only):
    cluster = inputs(http_only.one("aws:ecs/cluster:Cluster"))
    assert cluster["settings"] == [{"name": "containerInsights", "value": "enhanced"}]
    exec_config = cluster["configuration"]["executeCommandConfiguration"]
    assert exec_config["logging"] == "OVERRIDE"
    assert exec_config["logConfiguration"]["cloudWatchEncryptionEnabled"] is True
    assert exec_config["kmsKeyId"].endswith("key/k")
    providers = inputs(http_only.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders"))
    assert providers["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]


def test_namespace_is_private_dns(http_only):
    namespace = inputs(http_only.one("aws:servicediscovery/privateDnsNamespace:PrivateDnsNamespace"))
    assert namespace["name"] == "jobs-dev.local"
    assert namespace["vpc"] == "vpc-1"


def test_alb_is_hardened(with_tls):
    alb = inputs(with_tls.one("aws:lb/loadBalancer:LoadBalancer"))
    assert alb["internal"] is False
    assert alb["dropInvalidHeaderFields"] is True
    assert alb["desyncMitigationMode"] == "strictest"
    assert alb["enableDeletionProtection"] is True
    assert alb["accessLogs"]["enabled"] is True


def test_http_only_opens_80_and_forwards_nothing_by_default(http_only):
    rules = [inputs(r) for r in http_only.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    assert [(r["fromPort"], r["cidrIpv4"]) for r in rules] == [(80, "0.0.0.0/0")]
    (listener,) = [inputs(r) for r in http_only.of_type("aws:lb/listener:Listener")]
    assert listener["protocol"] == "HTTP"
    assert listener["defaultActions"][0]["type"] == "fixed-response"


def test_certificate_adds_tls_and_redirects_http(with_tls):
    ports = sorted(
        inputs(r)["fromPort"] for r in with_tls.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    )
    assert ports == [80, 443]
    listeners = {inputs(r)["port"]: inputs(r) for r in with_tls.of_type("aws:lb/listener:Listener")}
    assert listeners[443]["sslPolicy"] == TLS_POLICY
    assert listeners[443]["certificateArn"] == CERT
    redirect = listeners[80]["defaultActions"][0]
    assert redirect["type"] == "redirect"
    assert redirect["redirect"] == {"protocol": "HTTPS", "port": "443", "statusCode": "HTTP_301"}


def test_access_log_bucket_is_private_encrypted_tls_only_and_expiring(http_only):
    block = inputs(http_only.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    encryption = inputs(
        http_only.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    )
    assert encryption["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = json_input(http_only.one("aws:s3/bucketPolicy:BucketPolicy"), "policy")
    deny = next(s for s in policy["Statement"] if s["Effect"] == "Deny")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    lifecycle = inputs(http_only.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"))
    assert lifecycle["rules"][0]["expiration"]["days"] == 90


def test_exec_log_group_is_encrypted_with_retention(http_only):
    group = inputs(http_only.one("aws:cloudwatch/logGroup:LogGroup"))
    assert group["retentionInDays"] == 90
    assert group["kmsKeyId"].endswith("key/k")


NAT_IPS = ["198.51.100.7", "198.51.100.8", "198.51.100.9"]


@pytest.fixture(scope="module")
def tls_test_listener() -> Recorded:
    return build_cluster(certificate_arn=CERT, test_listener=True, test_listener_source_ips=NAT_IPS)


def test_no_test_listener_unless_asked(http_only, with_tls):
    # GIVEN a cluster no blue/green service needs THEN only the production listeners exist.
    assert sorted(inputs(r)["port"] for r in with_tls.of_type("aws:lb/listener:Listener")) == [80, 443]
    assert [inputs(r)["port"] for r in http_only.of_type("aws:lb/listener:Listener")] == [80]


def test_the_test_listener_is_tls_like_production_and_answers_404_by_default(tls_test_listener):
    listeners = {inputs(r)["port"]: inputs(r) for r in tls_test_listener.of_type("aws:lb/listener:Listener")}
    assert sorted(listeners) == [80, 443, 8443]
    test = listeners[8443]
    assert (test["protocol"], test["sslPolicy"], test["certificateArn"]) == ("HTTPS", TLS_POLICY, CERT)
    (action,) = test["defaultActions"]
    assert action["type"] == "fixed-response" and action["fixedResponse"]["statusCode"] == "404"


def test_only_the_nat_addresses_reach_the_test_port(tls_test_listener):
    rules = [inputs(r) for r in tls_test_listener.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    on_test_port = [r for r in rules if r["fromPort"] <= 8443 <= r["toPort"]]
    assert sorted(r["cidrIpv4"] for r in on_test_port) == [f"{ip}/32" for ip in NAT_IPS]
    assert all((r["ipProtocol"], r["toPort"]) == ("tcp", 8443) for r in on_test_port)
    assert sorted(r["fromPort"] for r in rules if r["cidrIpv4"] == "0.0.0.0/0") == [80, 443]


def test_without_a_certificate_the_test_listener_is_http_on_8080():
    recorded = build_cluster(test_listener=True, test_listener_source_ips=NAT_IPS[:1])
    test = next(inputs(r) for r in recorded.of_type("aws:lb/listener:Listener") if inputs(r)["port"] == 8080)
    assert test["protocol"] == "HTTP" and "sslPolicy" not in test
    rules = [inputs(r) for r in recorded.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    assert sorted((r["fromPort"], r["cidrIpv4"]) for r in rules) == [(80, "0.0.0.0/0"), (8080, f"{NAT_IPS[0]}/32")]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"test_listener": True}, "test_listener_source_ips: empty with test_listener"),
        ({"test_listener": True, "test_listener_source_ips": NAT_IPS, "entry": "httpApi"}, "test_listener: true with"),
        ({"entry": "nlb"}, "entry: 'nlb'; allowed: alb, httpApi"),
    ],
)
def test_a_test_listener_that_cannot_work_is_refused(overrides, message):
    values = {"name_prefix": "jobs-dev", "vpc_id": "vpc-1", "public_subnet_ids": [], "log_kms_key_arn": "k"}
    with pytest.raises(ValueError, match=message):
        ContainerClusterArgs(**(values | overrides))  # type: ignore[arg-type]
