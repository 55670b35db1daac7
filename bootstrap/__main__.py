"""Bootstrap GitHub Actions OIDC for the container platform: run once per AWS account, before CI."""

import pulumi
from github_oidc import GitHubOidcBootstrap, load_settings


def main() -> None:
    settings = load_settings(pulumi.Config(), pulumi.Config("aws"))
    bootstrap = GitHubOidcBootstrap("github-oidc", settings)
    pulumi.export("oidcProviderArn", bootstrap.provider_arn)
    pulumi.export("permissionsBoundaryArn", bootstrap.permissions_boundary_arn)
    pulumi.export("previewRoleArn", bootstrap.preview_role_arn)
    pulumi.export("deployRoleArns", bootstrap.deploy_role_arns)


main()
