"""Stack-wide guardrails applied to every child of every component, wherever it was written.

`iam_role_guardrails` puts each IAM role (and instance profile) the platform creates under one path and, when the account uses one,
the permissions boundary the CI deploy role requires (see bootstrap/): a role the deploy role may create is one
that can never exceed the boundary.
"""

from __future__ import annotations

import pulumi

ROLE_TYPE = "aws:iam/role:Role"
# Instance profiles too: the CI deploy role may create them only under the environment's path.
INSTANCE_PROFILE_TYPE = "aws:iam/instanceProfile:InstanceProfile"


def iam_role_guardrails(path: str, permissions_boundary_arn: str | None) -> pulumi.ResourceTransformation:
    def transform(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if args.type_ == INSTANCE_PROFILE_TYPE:
            return pulumi.ResourceTransformationResult({**args.props, "path": path}, args.opts)
        if args.type_ != ROLE_TYPE:
            return None
        props = {**args.props, "path": path}
        if permissions_boundary_arn:
            props["permissions_boundary"] = permissions_boundary_arn
        return pulumi.ResourceTransformationResult(props, args.opts)

    return transform
