"""ECS task-definition details: root users, secret detection, image references and preview unknowns."""

from __future__ import annotations

import json

import pytest

from policy.rules.images import parse_image
from runner.records import SECRET_SIG_KEY, SECRET_SIG_VALUE, UNKNOWN_VALUE
from tests.policy.baselines import ACCOUNT, TASK_DEFINITION, container, task_definition, with_props
from tests.policy.helpers import run_policy

ROOT = "aws-ecs-taskdefinition-disallow-root-user"
SECRETS = "aws-ecs-taskdefinition-disallow-plaintext-secrets"
REGISTRIES = "aws-ecs-taskdefinition-allowed-image-registries"
LATEST = "aws-ecs-taskdefinition-disallow-latest-tag"


@pytest.mark.parametrize("user", ["root", "0", "0:0", "0:1000", "root:root", " ROOT "])
def test_root_user_forms_fail(user: str) -> None:
    assert run_policy(ROOT, TASK_DEFINITION, task_definition(container(user=user))).messages == [
        f"container 'app' runs as root (user '{user}')"
    ]


@pytest.mark.parametrize("user", ["1000", "1000:0", "app", "nobody:nogroup", "10:10"])
def test_non_root_users_pass(user: str) -> None:
    assert run_policy(ROOT, TASK_DEFINITION, task_definition(container(user=user))).messages == []


def test_empty_user_counts_as_root() -> None:
    assert run_policy(ROOT, TASK_DEFINITION, task_definition(container(user=" "))).messages == [
        "container 'app' sets no user, so it runs as root"
    ]


def test_every_container_is_checked_and_named() -> None:
    props = task_definition(container(name="web"), container(name="sidecar", user="0"), container(name="x", user=None))
    assert run_policy(ROOT, TASK_DEFINITION, props).messages == [
        "container 'sidecar' runs as root (user '0')",
        "container 'x' sets no user, so it runs as root",
    ]


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("DATABASE_PASSWORD", "super-secret-password-123", "its name marks it as a secret"),
        ("API_KEY", "definitely-not-a-secret", "its name marks it as a secret"),
        ("SECRET_KEY", "definitely-not-secret", "its name marks it as a secret"),
        ("GITHUB_TOKEN", "tok-4711", "its name marks it as a secret"),
        ("SSH_PRIVATE_KEY", "key-4711", "its name marks it as a secret"),
        ("AWS_ACCESS_KEY_ID", "id-4711", "its name marks it as a secret"),
        ("ECS_ENGINE_AUTH_DATA", "auth-4711", "its name marks it as a secret"),
        (
            "CONFIG",
            "AKIAIOSFODNN7EXAMPLE",
            "its value matches 'AWS Access Key' (detector: detect-secrets AWSKeyDetector)",
        ),
        (
            "CERT",
            "-----BEGIN RSA PRIVATE KEY-----\nabc",
            "its value matches 'Private Key' (detector: detect-secrets PrivateKeyDetector)",
        ),
        (
            "SESSION",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc",
            "its value matches 'JSON Web Token' (detector: detect-secrets JwtTokenDetector)",
        ),
        (
            "DATABASE_URL",
            "postgres://app:hunter2@db:5432/app",
            "its value matches 'Basic Auth Credentials' (detector: detect-secrets BasicAuthDetector)",
        ),
        (
            "HOOK",
            "xoxb-123456789012-abcdefghij",
            "its value matches 'Slack Token' (detector: detect-secrets SlackDetector)",
        ),
    ],
)
def test_plaintext_secrets_are_detected_by_name_or_value(name: str, value: str, reason: str) -> None:
    props = task_definition(container(environment=[{"name": name, "value": value}]))
    messages = run_policy(SECRETS, TASK_DEFINITION, props).messages
    assert messages == [
        f"container 'app' environment variable '{name}' is a plaintext secret: {reason}; pass it through "
        "secrets[].valueFrom (Secrets Manager or SSM Parameter Store)."
    ]
    assert value not in messages[0]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_SECRET_ARN", f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:db"),
        ("DB_PASSWORD", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/db"),
        ("TOKEN_URL", "https://auth.example.com/token"),
        ("DATABASE_URL", "postgres://app@db:5432/app"),
        ("PASSWORD", ""),
        ("QUEUE_NAME", "jobs"),
    ],
)
def test_references_settings_and_empty_values_are_not_secrets(name: str, value: str) -> None:
    props = task_definition(container(environment=[{"name": name, "value": value}]))
    assert run_policy(SECRETS, TASK_DEFINITION, props).messages == []


def test_secret_config_knobs() -> None:
    environment = [{"name": "SESSION_TOKEN", "value": "x"}, {"name": "LICENSE", "value": "lic-123"}]
    props = task_definition(container(environment=environment))
    # GIVEN SESSION_TOKEN allowed by name and a custom value pattern for license keys
    config = {"allowedNames": ["session_token"], "secretValuePatterns": [r"^lic-\d+$"]}
    assert run_policy(SECRETS, TASK_DEFINITION, props, config).messages == [
        "container 'app' environment variable 'LICENSE' is a plaintext secret: its value matches a configured "
        "secret pattern (detector: secretValuePatterns); pass it through secrets[].valueFrom (Secrets Manager or "
        "SSM Parameter Store)."
    ]
    # AND custom name patterns replace the defaults
    assert (
        run_policy(SECRETS, TASK_DEFINITION, props, {"secretNamePatterns": ["LICENSE"]})
        .messages[0]
        .startswith("container 'app' environment variable 'LICENSE' is a plaintext secret: its name")
    )


def test_secret_wrapped_container_definitions_are_still_checked() -> None:
    # The analyzer unwraps secrets before policies see them: a secret-marked JSON string is plain text here.
    definitions = json.dumps([container(environment=[{"name": "API_KEY", "value": "k"}])])
    props = with_props(TASK_DEFINITION, containerDefinitions={SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": definitions})
    from pulumi_policy.deserialize import deserialize_properties

    assert len(run_policy(SECRETS, TASK_DEFINITION, deserialize_properties(props)).messages) == 1


@pytest.mark.parametrize(
    ("reference", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("random-user/sketchy-app:latest", "docker.io", "random-user/sketchy-app", "latest", None),
        (
            f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.2",
            f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
            "team/app",
            "1.2",
            None,
        ),
        ("localhost:5000/app@sha256:abc", "localhost:5000", "app", None, "sha256:abc"),
        ("public.ecr.aws/nginx/nginx:1.27", "public.ecr.aws", "nginx/nginx", "1.27", None),
    ],
)
def test_parse_image(reference: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_image(reference)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_image_registry_knobs() -> None:
    other_account = "210987654321.dkr.ecr.us-east-1.amazonaws.com/app:1"
    props = task_definition(
        container(image=other_account),
        container(name="otel", image="public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"),
    )
    # GIVEN no config: any account's private ECR is fine, public ECR is not
    assert run_policy(REGISTRIES, TASK_DEFINITION, props).messages == [
        "container 'otel' image 'public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0' comes from "
        "public.ecr.aws, not from a private ECR repository of an allowed account"
    ]
    # WHEN accounts and registries are configured
    config = {"allowedAccountIds": [ACCOUNT], "allowedRegistries": ["public.ecr.aws/aws-observability/"]}
    # THEN the other account is refused and the allowed public prefix accepted
    assert run_policy(REGISTRIES, TASK_DEFINITION, props, config).messages == [
        f"container 'app' image '{other_account}' comes from ECR account 210987654321, which is not one of the "
        f"allowed accounts ['{ACCOUNT}']"
    ]


@pytest.mark.parametrize("image", ["nginx", "app:latest", f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/app"])
def test_latest_or_missing_tag_fails(image: str) -> None:
    assert len(run_policy(LATEST, TASK_DEFINITION, task_definition(container(image=image))).messages) == 1


@pytest.mark.parametrize("image", ["app:1.0", "app@sha256:abc", "app:latest@sha256:abc"])
def test_version_tag_or_digest_passes(image: str) -> None:
    assert run_policy(LATEST, TASK_DEFINITION, task_definition(container(image=image))).messages == []


def test_unknown_container_definitions_are_not_checked_not_violations() -> None:
    outcome = run_policy(ROOT, TASK_DEFINITION, with_props(TASK_DEFINITION, containerDefinitions=UNKNOWN_VALUE))
    assert outcome.messages == []
    assert outcome.unknown == "string value at .containerDefinitions can't be known during preview"


def test_an_unknown_in_one_container_does_not_hide_the_others() -> None:
    props = task_definition(container(name="a", user=UNKNOWN_VALUE), container(name="b", user="root"))
    outcome = run_policy(ROOT, TASK_DEFINITION, props)
    assert outcome.messages == ["container 'b' runs as root (user 'root')"]
    assert outcome.unknown == "string value at .containerDefinitions.0.user can't be known during preview"


def test_unknown_privileged_flag_is_not_a_violation() -> None:
    props = task_definition(container(privileged="1c4a061d-8072-4f0a-a4cb-0ff528b18fe7"))
    outcome = run_policy("aws-ecs-taskdefinition-disallow-privileged-containers", TASK_DEFINITION, props)
    assert (outcome.messages, outcome.unknown is not None) == ([], True)


def test_invalid_container_definitions_json_is_reported() -> None:
    outcome = run_policy(ROOT, TASK_DEFINITION, with_props(TASK_DEFINITION, containerDefinitions="[{"))
    assert outcome.messages == [
        "containerDefinitions is not valid JSON (Expecting property name enclosed in double quotes at position 2); "
        "the containers cannot be checked"
    ]


SAFE_DEPLOYMENTS = "aws-ecs-service-configure-safe-deployments"


@pytest.mark.parametrize(
    "props",
    [
        {"deploymentConfiguration": {"strategy": "CANARY"}},
        {"deploymentConfiguration": {"strategy": "linear"}},
        {"alarms": {"alarmNames": ["api-5xx"], "enable": "true", "rollback": True}},
        {"deploymentController": {"type": "CODE_DEPLOY"}},
    ],
)
def test_traffic_shifting_alarm_rollback_or_another_controller_pass_in_prod(props: dict) -> None:
    assert run_policy(SAFE_DEPLOYMENTS, "aws:ecs/service:Service", props, stack="prod").messages == []


def test_rolling_without_alarms_passes_outside_production_and_fails_with_empty_alarms_in_prod() -> None:
    rolling = {"alarms": {"alarmNames": [], "enable": True, "rollback": True}}
    assert run_policy(SAFE_DEPLOYMENTS, "aws:ecs/service:Service", rolling, stack="dev").messages == []
    assert run_policy(SAFE_DEPLOYMENTS, "aws:ecs/service:Service", rolling, stack="prod").messages != []
    config = {"requiredInStacks": ["live"]}
    assert run_policy(SAFE_DEPLOYMENTS, "aws:ecs/service:Service", rolling, config, stack="live").messages != []
