"""Plaintext-secret detection (class 3 and the secret part of class 2): detect-secrets' detectors on every value,
names as the second signal, every field that carries a value, and the detector named in each message."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.policy.baselines import CODEBUILD, LAMBDA, TASK_DEFINITION, container, task_definition
from tests.policy.helpers import run_policy

ECS = "aws-ecs-taskdefinition-disallow-plaintext-secrets"
CODEBUILD_SECRETS = "aws-codebuild-project-disallow-plaintext-secrets"
LAMBDA_SECRETS = "aws-lambda-function-disallow-plaintext-secrets"
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"
DOCKER_AUTH = json.dumps({"auths": {"registry.example.com": {"auth": base64.b64encode(b"ci:Xk9#mQ2$vL").decode()}}})

# (neutral variable name, value, detector named in the message): none of these names marks a secret, so each
# value must be recognised on its own.
SECRET_VALUES = [
    ("S3_UPLOADER", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "Base64HighEntropyString"),  # secret key, no key id
    ("TLS_BUNDLE", base64.b64encode(PEM.encode()).decode(), "PrivateKeyDetector"),
    ("CACHE", "redis://:s3cr3t-pw@cache.internal:6379/0", "url-userinfo"),
    ("REPORTS_DB", "postgres://db.internal:5432/app?sslmode=require&password=hunter2", "KeywordDetector"),
    ("CI_HELPER", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "GitHubTokenDetector"),
    ("NPMRC", "//registry.npmjs.org/:_authToken=npm_Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh7j", "NpmDetector"),
    ("REGISTRY", DOCKER_AUTH, "docker-config-auth"),
    ("NOTIFY", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "SlackDetector"),
    ("BILLING", "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "StripeDetector"),
    (
        "SESSION",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "JwtTokenDetector",
    ),
    ("LEGACY_DSN", "Server=db.internal;Database=app;User Id=sa;Password=Hunter2!;", "KeywordDetector"),
    ("MONGO", "mongodb+srv://app:Pa55word@cluster0.example.net/app", "BasicAuthDetector"),
]

# Harmless names and values, including our own stacks' kinds of settings.
NOT_SECRETS = [
    ("DB_SECRET_ID", "prod/db-credentials"),
    ("DB_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"),
    ("TOKEN_ISSUER", "https://auth.example.com/"),
    ("TOKEN_ISSUER", "shop-auth"),
    ("X-Api-Key-Header", "X-Api-Key"),
    ("SECRET_NAME", "prod/app"),
    ("SECRETS_ENABLED", "true"),
    ("PASSWORD_MIN_LENGTH", "12"),
    ("PASSWORD_FILE", "/run/secrets/db"),
    ("API_BASE", "https://api.example.com/v1?region=eu&page=2"),
    ("IMAGE_DIGEST", "sha256:" + "ab12" * 16),
    ("GIT_SHA", "4f2a9c0d1e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c"),
    ("KMS_KEY", "1234abcd-12ab-34cd-56ef-1234567890ab"),
    ("QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"),
    ("DB_AUTH", "iam"),
    ("REDIS_URL", "rediss://cache.internal:6379/0"),
    ("JAVA_OPTS", "-Xmx512m -XX:+UseG1GC"),
    ("APP_NAME", "shop-production-frontend-service"),
    ("API_TOKEN", "${API_TOKEN}"),
]


def ecs_messages(config: dict[str, Any] | None = None, **fields: Any) -> list[str]:
    return run_policy(ECS, TASK_DEFINITION, task_definition(container(**fields)), config).messages


@pytest.mark.parametrize(("name", "value", "detector"), SECRET_VALUES, ids=[s[0] for s in SECRET_VALUES])
def test_credential_values_are_found_whatever_the_name(name: str, value: str, detector: str) -> None:
    [message] = ecs_messages(environment=[{"name": name, "value": value}])
    assert message.startswith(f"container 'app' environment variable '{name}' is a plaintext secret: its ")
    assert f"(detector: {detector}" in message or f"detect-secrets {detector})" in message
    assert value not in message


@pytest.mark.parametrize(("name", "value"), NOT_SECRETS, ids=[f"{n}={v[:20]}" for n, v in NOT_SECRETS])
def test_harmless_names_and_values_are_not_flagged(name: str, value: str) -> None:
    assert ecs_messages(environment=[{"name": name, "value": value}]) == []


def test_names_remain_a_second_signal() -> None:
    assert ecs_messages(environment=[{"name": "dbPassword", "value": "hunter2"}]) == [
        "container 'app' environment variable 'dbPassword' is a plaintext secret: its name marks it as a secret; "
        "pass it through secrets[].valueFrom (Secrets Manager or SSM Parameter Store)."
    ]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"command": ["redis-server", "--requirepass", "s3cr3t!"]}, "command argument 2"),
        ({"command": ["sh", "-c", "PGPASSWORD=hunter2 psql -h db -U app"]}, "command argument 2"),
        (
            {"entryPoint": ["/app/run", "--api-token=ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"]},
            "entryPoint argument 1",
        ),
        (
            {"healthCheck": {"command": ["CMD", "curl", "-f", "http://admin:hunter2@localhost/health"]}},
            "healthCheck.command argument 3",
        ),
        ({"dockerLabels": {"traefik.auth.password": "hunter2"}}, "docker label 'traefik.auth.password'"),
        (
            {"logConfiguration": {"logDriver": "splunk", "options": {"splunk-token": "4a8e7c3d-secret-t0ken"}}},
            "logConfiguration.options 'splunk-token'",
        ),
        (
            {"linuxParameters": {"tmpfs": [{"containerPath": "/tmp", "mountOptions": ["postgres://u:pw@db/app"]}]}},
            "field linuxParameters.tmpfs[0].mountOptions[0]",
        ),
    ],
    ids=["command-flag", "shell-env", "entrypoint", "healthcheck", "label", "log-options", "linux-parameters"],
)
def test_secrets_in_container_fields_besides_environment(fields: dict[str, Any], where: str) -> None:
    [message] = ecs_messages(**fields)
    assert message.startswith(f"container 'app' {where} is a plaintext secret: ")


def test_harmless_commands_pass() -> None:
    fields = {
        "command": ["python", "-m", "app", "--workers", "4", "--password-file", "/run/secrets/db"],
        "healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/health || exit 1"]},
        "dockerLabels": {"com.example.team": "shop", "secret.rotation": "enabled"},
    }
    assert ecs_messages(**fields) == []


def test_keys_are_read_case_insensitively_as_the_provider_does() -> None:
    definition = {
        "Name": "app",
        "Environment": [{"Name": "DB_PASSWORD", "Value": "hunter2"}],
        "Command": ["--token", "t0k3n-value"],
    }
    props = {**task_definition(container()), "containerDefinitions": json.dumps([definition])}
    messages = run_policy(ECS, TASK_DEFINITION, props).messages
    assert [m.split(" is a plaintext secret")[0] for m in messages] == [
        "container 'app' environment variable 'DB_PASSWORD'",
        "container 'app' command argument 1",
    ]


def test_lambda_environment_values_use_the_detectors() -> None:
    props = {"environment": {"variables": {"STRIPE": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "TOKEN_ISSUER": "shop"}}}
    assert run_policy(LAMBDA_SECRETS, LAMBDA, props).messages == [
        "Lambda environment variable 'STRIPE' is a plaintext secret: its value matches 'Stripe Access Key' (detector: "
        "detect-secrets StripeDetector); read it at runtime from Secrets Manager or SSM Parameter Store."
    ]


def test_codebuild_plaintext_variables_and_inline_buildspec() -> None:
    buildspec = "version: 0.2\nenv:\n  variables:\n    NPM_TOKEN: npm-s3cret-value\n    STAGE: prod\nphases:\n  build:\n    commands:\n      - make\n"
    props = {
        "environment": {
            "environmentVariables": [{"name": "DEPLOY_KEY", "value": "/ci/deploy", "type": "PARAMETER_STORE"}]
        },
        "source": {"type": "GITHUB", "buildspec": buildspec},
    }
    assert run_policy(CODEBUILD_SECRETS, CODEBUILD, props).messages == [
        "CodeBuild source.buildspec line 4 is a plaintext secret: its name marks it as a secret; reference it from "
        "the buildspec's env.secrets-manager or env.parameter-store."
    ]


def test_entropy_limit_knob() -> None:
    environment = [{"name": "S3_UPLOADER", "value": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}]
    assert ecs_messages(environment=environment)
    assert ecs_messages({"entropyLimit": 5.5}, environment=environment) == []
