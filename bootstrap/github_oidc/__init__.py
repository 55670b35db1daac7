"""GitHub Actions OIDC trust for the container platform: provider, preview role, deploy roles."""

from .resources import GitHubOidcBootstrap
from .settings import BootstrapSettings, load_settings

__all__ = ["BootstrapSettings", "GitHubOidcBootstrap", "load_settings"]
