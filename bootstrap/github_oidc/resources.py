"""The GitHub OIDC bootstrap as one component: provider, permissions boundary, preview and deploy roles."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from .policies import (
    DEPLOY_POLICY_GROUPS,
    AwsAccount,
    PolicyDocument,
    deploy_permissions,
    deploy_subjects,
    github_trust_policy,
    permissions_boundary,
    preview_permissions,
    preview_subjects,
)
from .settings import GITHUB_OIDC_HOST, STS_AUDIENCE, BootstrapSettings


class GitHubOidcBootstrap(pulumi.ComponentResource):
    """IAM trust between one GitHub repository's Actions and this AWS account."""

    provider_arn: pulumi.Output[str]
    """ARN of the token.actions.githubusercontent.com OIDC provider (created or existing)."""
    permissions_boundary_arns: dict[str, pulumi.Output[str]]
    """Per environment, the boundary every role its stack creates must carry (its deploy role enforces it): the
    stack's `iam.permissionsBoundaryArn`."""
    preview_role_arn: pulumi.Output[str]
    """Read-only role for `pulumi preview` in pull requests: repository variable AWS_PREVIEW_ROLE_ARN."""
    deploy_role_arns: dict[str, pulumi.Output[str]]
    """Deploy role per GitHub environment: environment variable AWS_DEPLOY_ROLE_ARN of each."""

    def __init__(self, name: str, settings: BootstrapSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:bootstrap:GitHubOidc", name, None, opts)
        self._name = name
        self._settings = settings
        child = pulumi.ResourceOptions(parent=self)
        account = pulumi.Output.all(
            aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition,
            aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id,
        ).apply(lambda values: AwsAccount(partition=values[0], account_id=values[1]))

        # --- OIDC provider ---
        self.provider_arn = self._oidc_provider_arn(child)

        # --- Preview role ---
        preview_role = self._role("preview", preview_subjects(settings), child)
        preview_read = self._policy(
            "preview-read", account.apply(lambda acct: preview_permissions(settings, acct)), child
        )
        self._attach(preview_role, "preview-read", preview_read, child)
        self.preview_role_arn = preview_role.arn

        # --- Per environment: permissions boundary and deploy role ---
        self.permissions_boundary_arns = {}
        self.deploy_role_arns = {}
        for environment in settings.environments:
            boundary = self._policy(
                f"boundary-{environment}",
                account.apply(lambda acct, env=environment: permissions_boundary(settings, acct, env)),
                child,
            )
            self.permissions_boundary_arns[environment] = boundary.arn
            self.deploy_role_arns[environment] = self._deploy_role(environment, account, boundary.arn, child)

        self.register_outputs(
            {
                "providerArn": self.provider_arn,
                "permissionsBoundaryArns": self.permissions_boundary_arns,
                "previewRoleArn": self.preview_role_arn,
                "deployRoleArns": self.deploy_role_arns,
            }
        )

    def _deploy_role(
        self,
        environment: str,
        account: pulumi.Output[AwsAccount],
        boundary_arn: pulumi.Output[str],
        opts: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        documents = pulumi.Output.all(account, boundary_arn).apply(
            lambda values: deploy_permissions(self._settings, values[0], environment, values[1])
        )
        role = self._role(f"deploy-{environment}", deploy_subjects(self._settings, environment), opts)
        for group in DEPLOY_POLICY_GROUPS:
            policy = self._policy(f"deploy-{environment}-{group}", documents.apply(lambda docs, g=group: docs[g]), opts)
            self._attach(role, f"deploy-{environment}-{group}", policy, opts)
        return role.arn

    def _oidc_provider_arn(self, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        if self._settings.existing_oidc_provider_arn:
            return pulumi.Output.from_input(self._settings.existing_oidc_provider_arn)
        # No thumbprint: IAM validates token.actions.githubusercontent.com against its own library of
        # trusted root CAs (AWS, July 2023), so a pinned thumbprint is neither used nor needed.
        provider = aws.iam.OpenIdConnectProvider(
            f"{self._name}-provider",
            url=f"https://{GITHUB_OIDC_HOST}",
            client_id_lists=[STS_AUDIENCE],
            tags=self._settings.tags,
            opts=opts,
        )
        return provider.arn

    def _role(self, suffix: str, subjects: list[str], opts: pulumi.ResourceOptions) -> aws.iam.Role:
        return aws.iam.Role(
            f"{self._name}-{suffix}",
            path=self._settings.ci_iam_path,
            description=f"GitHub Actions ({suffix}) for {self._settings.repository}",
            assume_role_policy=self.provider_arn.apply(
                lambda arn: json.dumps(github_trust_policy(arn, subjects), sort_keys=True)
            ),
            max_session_duration=self._settings.max_session_seconds,
            tags=self._settings.tags,
            opts=opts,
        )

    def _policy(
        self, suffix: str, document: pulumi.Output[PolicyDocument], opts: pulumi.ResourceOptions
    ) -> aws.iam.Policy:
        return aws.iam.Policy(
            f"{self._name}-{suffix}",
            path=self._settings.ci_iam_path,
            description=f"Container platform CI ({suffix}) for {self._settings.repository}",
            policy=document.apply(lambda doc: json.dumps(doc, sort_keys=True)),
            tags=self._settings.tags,
            opts=opts,
        )

    def _attach(self, role: aws.iam.Role, suffix: str, policy: aws.iam.Policy, opts: pulumi.ResourceOptions) -> None:
        aws.iam.RolePolicyAttachment(f"{self._name}-{suffix}", role=role.name, policy_arn=policy.arn, opts=opts)
