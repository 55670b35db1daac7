"""Elastic Load Balancing v2: application/network load balancers and listeners."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from .base import (
    ENVIRONMENTS_OPTION,
    LOW,
    MEDIUM,
    Resource,
    applies_to_stack,
    as_list,
    is_true,
    option,
    resource_policy,
    string_list,
)

LOAD_BALANCER_TYPES = ["aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer"]
LISTENER_TYPES = ["aws:lb/listener:Listener", "aws:alb/listener:Listener"]

# ELB names a policy after the lowest TLS version it accepts: `TLS13-1-2-...` (TLS 1.3 with 1.2 as minimum),
# `TLS-1-2-...`, `FS-1-2-...`. Names without a version (`ELBSecurityPolicy-2016-08`, `-FS-2018-06`, `-2015-05`)
# accept TLS 1.0 (ELB User Guide, "Security policies for your Application Load Balancer").
TLS_MINIMUM_IN_NAME = re.compile(r"^ELBSecurityPolicy-(?:TLS13-|TLS-|FS-)1-(\d)(?:-|$)")
SECURE_MINIMUM_MINOR = 2
RECOMMENDED_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"


def minimum_tls_minor(policy: str) -> int | None:
    """The minor version of the lowest TLS 1.x the ELB security policy accepts (None: TLS 1.0 or unknown)."""
    match = TLS_MINIMUM_IN_NAME.match(policy.strip())
    return int(match.group(1)) if match else None


def _is_application(resource: Resource) -> bool:
    return str(resource.props.get("loadBalancerType") or "application").lower() == "application"


def check_drop_invalid_headers(resource: Resource) -> Iterator[str]:
    if _is_application(resource) and not is_true(resource.props.get("dropInvalidHeaderFields")):
        yield "dropInvalidHeaderFields is not true"


def check_access_logs(resource: Resource) -> Iterator[str]:
    logs = resource.props.get("accessLogs")
    if not isinstance(logs, Mapping) or not is_true(logs.get("enabled")) or not logs.get("bucket"):
        yield "accessLogs is not enabled with a bucket"


def check_deletion_protection(resource: Resource) -> Iterator[str]:
    if applies_to_stack(resource) and not is_true(resource.props.get("enableDeletionProtection")):
        yield f"enableDeletionProtection is not true in stack '{resource.stack}'"


def check_desync_mitigation(resource: Resource) -> Iterator[str]:
    mode = str(resource.props.get("desyncMitigationMode") or "defensive").lower()
    if _is_application(resource) and mode not in ("defensive", "strictest"):
        yield f"desyncMitigationMode is '{mode}'"


def _redirects_to_https(action: Mapping[str, object]) -> bool:
    redirect = action.get("redirect")
    return (
        str(action.get("type") or "").lower() == "redirect"
        and isinstance(redirect, Mapping)
        and str(redirect.get("protocol") or "").upper() == "HTTPS"
    )


def check_http_redirect(resource: Resource) -> Iterator[str]:
    if str(resource.props.get("protocol") or "").upper() != "HTTP":
        return
    actions = as_list(resource.props.get("defaultActions"))
    if not actions or not all(_redirects_to_https(a) for a in actions):
        yield f"the HTTP listener on port {_port(resource.props.get('port'))} does not redirect to HTTPS"


def check_tls_policy(resource: Resource) -> Iterator[str]:
    if str(resource.props.get("protocol") or "").upper() not in ("HTTPS", "TLS"):
        return
    policy = str(resource.props.get("sslPolicy") or "")
    if policy in [str(p) for p in resource.config.get("allowedSslPolicies", [])]:
        return
    if not policy:
        yield "sslPolicy is not set, so the listener uses ELBSecurityPolicy-2016-08, which accepts TLS 1.0 and 1.1"
        return
    minor = minimum_tls_minor(policy)
    if minor is None or minor < SECURE_MINIMUM_MINOR:
        accepted = f"TLS 1.{minor}" if minor is not None else "TLS 1.0"
        yield f"sslPolicy is {policy}, which accepts {accepted}; use a TLS 1.2+ policy such as " + RECOMMENDED_POLICY


POLICIES = [
    resource_policy(
        name="aws-lb-listener-redirect-http-to-https",
        description="Load balancer HTTP listeners should only redirect to HTTPS.",
        resource_types=LISTENER_TYPES,
        check=check_http_redirect,
        severity=MEDIUM,
        fsbp="ELB.1",
        remediation="Make the HTTP listener's default action a `redirect` with `protocol: HTTPS` and status "
        "`HTTP_301`.",
    ),
    resource_policy(
        name="aws-lb-listener-use-secure-tls-policy",
        description="Load balancer HTTPS and TLS listeners should use a TLS 1.2+ security policy.",
        resource_types=LISTENER_TYPES,
        check=check_tls_policy,
        severity=MEDIUM,
        fsbp="ELB.17",
        config=option(
            {
                "allowedSslPolicies": string_list(
                    "Security policies accepted besides every TLS 1.2+ ELB policy (e.g. a legacy one you accept).", []
                )
            }
        ),
        remediation="Set `sslPolicy` to a TLS 1.2+ policy such as `ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09` or "
        "`ELBSecurityPolicy-TLS13-1-2-2021-06`.",
    ),
    resource_policy(
        name="aws-lb-loadbalancer-drop-invalid-header-fields",
        description="Application load balancers should drop invalid HTTP header fields.",
        resource_types=LOAD_BALANCER_TYPES,
        check=check_drop_invalid_headers,
        severity=MEDIUM,
        fsbp="ELB.4",
        remediation="Set `dropInvalidHeaderFields: true`.",
    ),
    resource_policy(
        name="aws-lb-loadbalancer-enable-access-logs",
        description="Load balancers should write access logs to S3.",
        resource_types=LOAD_BALANCER_TYPES,
        check=check_access_logs,
        severity=MEDIUM,
        fsbp="ELB.5",
        remediation="Set `accessLogs: {enabled: true, bucket: <bucket>}` with a bucket policy that lets ELB "
        "write to it.",
    ),
    resource_policy(
        name="aws-lb-loadbalancer-enable-deletion-protection",
        description="Load balancers in production stacks should have deletion protection.",
        resource_types=LOAD_BALANCER_TYPES,
        check=check_deletion_protection,
        severity=LOW,
        fsbp="ELB.6",
        config=option(dict(ENVIRONMENTS_OPTION)),
        remediation="Set `enableDeletionProtection: true` in the stacks listed in `requiredInStacks`.",
    ),
    resource_policy(
        name="aws-lb-loadbalancer-configure-desync-mitigation",
        description="Application load balancers should use the defensive or strictest desync mitigation mode.",
        resource_types=LOAD_BALANCER_TYPES,
        check=check_desync_mitigation,
        severity=MEDIUM,
        fsbp="ELB.12",
        remediation="Remove `desyncMitigationMode` (defensive is the default) or set it to `strictest`.",
    ),
]


def _port(value: object) -> object:
    """Ports arrive as JSON numbers (floats); show 80, not 80.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
