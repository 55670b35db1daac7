"""Guardrails: every IAM role of every component, under one path and the account's permissions boundary."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.guardrails import iam_role_guardrails
from tests.support import build, inputs

BOUNDARY = "arn:aws:iam::123456789012:policy/container-platform-boundary"


class Holder(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions) -> None:
        super().__init__("test:index:Holder", name, None, opts)
        aws.iam.Role(f"{name}-role", assume_role_policy="{}", opts=pulumi.ResourceOptions(parent=self))
        aws.sqs.Queue(f"{name}-queue", opts=pulumi.ResourceOptions(parent=self))


def test_children_of_guarded_components_get_path_and_boundary():
    opts = pulumi.ResourceOptions(transformations=[iam_role_guardrails("/container-platform/", BOUNDARY)])
    recorded = build(lambda: Holder("holder", opts))
    role = inputs(recorded.one("aws:iam/role:Role"))
    assert role["path"] == "/container-platform/"
    assert role["permissionsBoundary"] == BOUNDARY
    assert "path" not in inputs(recorded.one("aws:sqs/queue:Queue"))


def test_no_boundary_configured_sets_only_the_path():
    opts = pulumi.ResourceOptions(transformations=[iam_role_guardrails("/platform/", None)])
    role = inputs(build(lambda: Holder("holder", opts)).one("aws:iam/role:Role"))
    assert role["path"] == "/platform/"
    assert "permissionsBoundary" not in role


def test_instance_profiles_go_under_the_path_too():
    def program() -> None:
        opts = pulumi.ResourceOptions(transformations=[iam_role_guardrails("/container-platform/dev/", BOUNDARY)])
        aws.iam.InstanceProfile("profile", role="some-role", opts=opts)

    (profile,) = build(program).of_type("aws:iam/instanceProfile:InstanceProfile")
    assert inputs(profile)["path"] == "/container-platform/dev/"
