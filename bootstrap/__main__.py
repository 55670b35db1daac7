"""Bootstrap GitHub Actions OIDC for the container platform: run once per AWS account, before CI."""

import pulumi
from github_oidc import GitHubOidcBootstrap, load_settings


def main() -> None:
    settings = load_settings(pulumi.Config(), pulumi.Config("aws"))
    bootstrap = GitHubOidcBootstrap("github-oidc", settings)
    pulumi.export("oidcProviderArn", bootstrap.provider_arn)
    # Each platform stack sets its environment's boundary: `pulumi config set --path iam.permissionsBoundaryArn ...`
    pulumi.export("permissionsBoundaryArns", bootstrap.permissions_boundary_arns)
    pulumi.export("previewRoleArn", bootstrap.preview_role_arn)
    pulumi.export("deployRoleArns", bootstrap.deploy_role_arns)


main()
