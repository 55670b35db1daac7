"""Run one policy the way the analyzer does: props behind the SDK's unknown-checking proxy, config as given."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policy.rules import ALL_POLICIES

POLICIES: dict[str, Policy] = {p.name: p for p in ALL_POLICIES}


@dataclass
class Outcome:
    messages: list[str] = field(default_factory=list)
    urns: list[str | None] = field(default_factory=list)
    unknown: str | None = None
    """The message of the UnknownValueError that stopped the policy (the analyzer reports it as not checked)."""


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def urn(type_: str, name: str, stack: str = "dev") -> str:
    return f"urn:pulumi:{stack}::proj::{type_}::{name}"


def _wire(props: Mapping[str, Any]) -> Any:
    return unknown_checking_proxy(json.loads(json.dumps(props)))


def run_policy(
    name: str, type_: str, props: Mapping[str, Any], config: Mapping[str, Any] | None = None, *, stack: str = "dev"
) -> Outcome:
    policy = POLICIES[name]
    assert isinstance(policy, ResourceValidationPolicy)
    outcome = Outcome()
    args = ResourceValidationArgs(type_, _wire(props), urn(type_, "res", stack), "res", _options(), None, config)

    def report(message: str, urn_: str | None = None) -> None:
        outcome.messages.append(message)

    try:
        policy.validate(args, report)
    except UnknownValueError as error:
        outcome.unknown = error.message
    return outcome


def stack_resources(resources: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[PolicyResource]:
    return [
        PolicyResource(type_, _wire(props), urn(type_, name), name, _options(), None, None, [], {})
        for type_, name, props in resources
    ]


def run_stack_policy(
    name: str, resources: Sequence[tuple[str, str, Mapping[str, Any]]], config: Mapping[str, Any] | None = None
) -> Outcome:
    policy = POLICIES[name]
    assert isinstance(policy, StackValidationPolicy)
    outcome = Outcome()

    def report(message: str, urn_: str | None = None) -> None:
        outcome.messages.append(message)
        outcome.urns.append(urn_)

    try:
        policy.validate(StackValidationArgs(stack_resources(resources), config), report)
    except UnknownValueError as error:
        outcome.unknown = error.message
    return outcome
