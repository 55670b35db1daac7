"""VPC security groups: ingress open to the internet (inline rules and standalone rule resources)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .base import HIGH, MANDATORY, Resource, as_list, as_number, option, resource_policy

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
INGRESS_TYPES = [SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE]

PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")
ALL_PROTOCOLS = ("-1", "all")
DEFAULT_PUBLIC_PORTS = [80, 443]


@dataclass(frozen=True)
class Ingress:
    """One ingress rule open to the internet."""

    security_group_id: str | None
    """The group a standalone rule attaches to; None for a group's inline rule (the group itself)."""
    protocol: str
    from_port: int
    to_port: int
    cidr: str

    @property
    def ports(self) -> str:
        if self.protocol in ALL_PROTOCOLS:
            return "all ports"
        return f"port {self.from_port}" if self.from_port == self.to_port else f"ports {self.from_port}-{self.to_port}"

    def only_on(self, allowed_ports: Sequence[int]) -> bool:
        if self.protocol in ALL_PROTOCOLS or self.to_port - self.from_port > len(allowed_ports):
            return False
        return all(port in allowed_ports for port in range(self.from_port, self.to_port + 1))


def _port(value: Any) -> int:
    number = as_number(value)
    return int(number) if number is not None else 0


def _public_cidrs(rule: Mapping[str, Any], *keys: str) -> list[str]:
    return [str(c) for key in keys for c in as_list(rule.get(key)) if str(c) in PUBLIC_CIDRS]


def public_ingress(resource_type: str, props: Mapping[str, Any]) -> list[Ingress]:
    """The internet-facing ingress rules a security group or rule resource declares."""
    if resource_type == SECURITY_GROUP:
        return [
            Ingress(
                None,
                str(rule.get("protocol") or "").lower(),
                _port(rule.get("fromPort")),
                _port(rule.get("toPort")),
                cidr,
            )
            for rule in as_list(props.get("ingress"))
            for cidr in _public_cidrs(rule, "cidrBlocks", "ipv6CidrBlocks")
        ]
    if resource_type == SECURITY_GROUP_RULE and str(props.get("type") or "").lower() == "ingress":
        cidrs = _public_cidrs(props, "cidrBlocks", "ipv6CidrBlocks")
        protocol = str(props.get("protocol") or "").lower()
    elif resource_type == INGRESS_RULE:
        cidrs = _public_cidrs(props, "cidrIpv4", "cidrIpv6")
        protocol = str(props.get("ipProtocol") or "").lower()
    else:
        return []
    group = str(props.get("securityGroupId") or "") or None
    return [Ingress(group, protocol, _port(props.get("fromPort")), _port(props.get("toPort")), c) for c in cidrs]


def allowed_public_ports(config: Mapping[str, Any]) -> list[int]:
    return [int(p) for p in config.get("allowedPublicPorts", DEFAULT_PUBLIC_PORTS)]


def check_public_ingress(resource: Resource) -> Iterator[str]:
    allowed = allowed_public_ports(resource.config)
    for rule in public_ingress(resource.type, resource.props):
        if not rule.only_on(allowed):
            yield f"ingress from {rule.cidr} is open on {rule.ports}; only {allowed} may be public"


PUBLIC_PORTS_OPTION = {
    "allowedPublicPorts": {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 65535},
        "description": "Ports that may be open to 0.0.0.0/0 or ::/0 (on load balancers only).",
        "default": DEFAULT_PUBLIC_PORTS,
    }
}

POLICIES = [
    resource_policy(
        name="aws-ec2-securitygroup-disallow-public-ingress",
        description="Security groups must not allow ingress from the internet except on the allowed web ports.",
        resource_types=INGRESS_TYPES,
        check=check_public_ingress,
        severity=HIGH,
        level=MANDATORY,
        fsbp="EC2.18",
        config=option(dict(PUBLIC_PORTS_OPTION)),
        remediation="Restrict the rule's source to a security group or a known CIDR; expose services only "
        "through a load balancer on 80/443.",
    ),
]
