"""Plaintext-secret detection shared by the ECS, CodeBuild and Lambda policies.

Values are judged by detect-secrets' plugins (Yelp's maintained ruleset: AWS keys, private keys, JWTs, basic-auth
URLs, GitHub/GitLab/npm/PyPI/Slack/Stripe/Twilio/SendGrid/... tokens, and base64 strings over an entropy limit),
run on the value, on each of its words and on the text a base64 word decodes to (a base64-encoded PEM key, a
Docker `auth`). Where a credential hides inside a value the value's own structure is read the way its consumer
reads it: URL userinfo (also password-only, `redis://:pw@host`), URL query parameters, `key=value;` connection
strings, `--flag=value` arguments and JSON objects (Docker auth config), each key/value pair judged by
detect-secrets' keyword detector and by the name patterns.

Names are the second signal: a variable whose name looks like a secret (PASSWORD, SECRET, TOKEN, API_KEY, ...)
holds one unless its value is plainly not a credential (empty, a boolean, a number, a path, an ARN, a URL
without credentials, a `${...}` reference) or its name ends like a reference or setting (`_ARN`, `_ID`,
`_ISSUER`, `_HEADER`, ...). Messages name the field and the detector that fired, never the value.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from detect_secrets.filters.heuristic import (
    is_likely_id_string,
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP, KeywordDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from .base import as_list, option, string_list

# detect-secrets' token and key detectors, used as they are (only `analyze_string`: no network verification).
# Left out on purpose: HexHighEntropyString (image digests and commit SHAs are hex configuration),
# IPPublicDetector (an address is not a credential) and KeywordDetector (run on key/value pairs below).
VALUE_DETECTORS: tuple[RegexBasedDetector, ...] = (
    AWSKeyDetector(),
    PrivateKeyDetector(),
    JwtTokenDetector(),
    BasicAuthDetector(),
    GitHubTokenDetector(),
    GitLabTokenDetector(),
    NpmDetector(),
    PypiTokenDetector(),
    SlackDetector(),
    StripeDetector(),
    SendGridDetector(),
    TwilioKeyDetector(),
    MailchimpDetector(),
    OpenAIDetector(),
    ArtifactoryDetector(),
    AzureStorageKeyDetector(),
    DiscordBotTokenDetector(),
    TelegramBotTokenDetector(),
    SquareOAuthDetector(),
    CloudantDetector(),
    IbmCloudIamDetector(),
    IbmCosHmacDetector(),
    SoftlayerDetector(),
)
KEYWORD_DETECTOR = KeywordDetector()
DEFAULT_ENTROPY_LIMIT = 4.5
"""detect-secrets' own default for base64 strings; random 20+ character keys score about 4.6-5.2, words ~3.7."""
MIN_ENTROPY_LENGTH = 20
MIN_BASE64_LENGTH = 16

# Matched case-insensitively anywhere in the name, after it is normalised to UPPER_SNAKE (`dbPassword`,
# `db-password` and `DB_PASSWORD` are the same name). They cover FSBP ECS.8's names too.
DEFAULT_NAME_PATTERNS = [
    r"PASSW(OR)?D",
    r"PASS(PHRASE)?$",
    r"SECRET",
    r"TOKEN",
    r"API_?KEY",
    r"PRIVATE_?KEY",
    r"ACCESS_?KEY",
    r"CREDENTIAL",
    r"AUTH_DATA",
    r"CONNECTION_?STRING",
]

# Names ending like this hold a reference or a setting, not a secret (DATABASE_SECRET_ARN, TOKEN_ISSUER,
# X-Api-Key-Header, SECRET_NAME, SECRET_ID).
DEFAULT_IGNORED_SUFFIXES = [
    "_ARN",
    "_ID",
    "_IDS",
    "_NAME",
    "_PATH",
    "_FILE",
    "_DIR",
    "_URL",
    "_URI",
    "_ENDPOINT",
    "_HOST",
    "_PORT",
    "_REGION",
    "_TTL",
    "_LENGTH",
    "_ISSUER",
    "_AUDIENCE",
    "_HEADER",
    "_TYPE",
    "_ALGORITHM",
    "_ENABLED",
    "_EXPIRY",
    "_EXPIRES",
    "_TIMEOUT",
    "_VERSION",
]

# FSBP ECS.8 names these variables explicitly: they are secrets whatever suffix rule would say.
FSBP_SECRET_NAMES = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ECS_ENGINE_AUTH_DATA"})

# Members of a Docker config / ECS_ENGINE_AUTH_DATA document that hold credentials (`auth` is base64 user:password).
DOCKER_CREDENTIAL_KEYS = frozenset({"auth", "password", "identitytoken", "registrytoken"})
DOCKER_CONFIG_PREFIX = "json:"

NOT_A_CREDENTIAL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "enabled", "disabled", "none", "null"})
ARN = re.compile(r"^arn:aws[a-z-]*:", re.IGNORECASE)
PATH_PREFIXES = ("/", "./", "../", "~/", "file:")
NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
WORD_SEPARATORS = re.compile(r"[\s,;\"'`|()]+|&&")
PAIR_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
BASE64_WORD = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")

SECRET_CONFIG = option(
    {
        "secretNamePatterns": string_list(
            "Regular expressions (case-insensitive) for variable names that hold secrets; replaces the defaults.",
            DEFAULT_NAME_PATTERNS,
        ),
        "secretValuePatterns": string_list(
            "Extra regular expressions for values that are credentials whatever the name, checked besides "
            "detect-secrets' detectors.",
            [],
        ),
        "allowedNames": string_list(
            "Variable names (case-insensitive) never flagged by name; their values are still checked.", []
        ),
        "ignoredNameSuffixes": string_list(
            "Name suffixes (case-insensitive) that mark a reference or setting rather than a secret.",
            DEFAULT_IGNORED_SUFFIXES,
        ),
        "entropyLimit": {
            "type": "number",
            "minimum": 3,
            "maximum": 6,
            "description": "Shannon entropy (bits per character) above which a base64-like word of 20+ characters "
            "counts as a key (detect-secrets Base64HighEntropyString).",
            "default": DEFAULT_ENTROPY_LIMIT,
        },
    }
)


def normalise_name(name: Any) -> str:
    """UPPER_SNAKE form of a variable, label, flag or parameter name: `--dbPassword` -> `DB_PASSWORD`."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name or ""))
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()


def is_not_a_credential(value: str) -> bool:
    """Values a secret-sounding name may hold without holding a secret."""
    text = value.strip()
    if not text or text.lower() in NOT_A_CREDENTIAL_WORDS or NUMBER.match(text):
        return True
    if text.startswith(PATH_PREFIXES) or ARN.match(text):
        return True
    if is_templated_secret(text) or is_prefixed_with_dollar_sign(text):
        return True
    if "://" in text:
        parts = urlsplit(text)
        return bool(parts.netloc) and parts.password is None
    return False


def _ds(detector: object) -> str:
    return f"detect-secrets {type(detector).__name__}"


@dataclass(frozen=True)
class SecretDetector:
    name_patterns: tuple[re.Pattern[str], ...]
    value_patterns: tuple[re.Pattern[str], ...]
    allowed_names: frozenset[str]
    ignored_suffixes: tuple[str, ...]
    entropy: Base64HighEntropyString

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SecretDetector:
        return cls(
            name_patterns=_compile(config, "secretNamePatterns", re.IGNORECASE),
            value_patterns=_compile(config, "secretValuePatterns", 0),
            allowed_names=frozenset(normalise_name(n) for n in config.get("allowedNames", [])),
            ignored_suffixes=tuple(s.upper().replace("-", "_") for s in config.get("ignoredNameSuffixes", [])),
            entropy=Base64HighEntropyString(limit=float(config.get("entropyLimit", DEFAULT_ENTROPY_LIMIT))),
        )

    # --- One name and its value ---------------------------------------------------------------------------

    def reason(self, name: Any, value: Any) -> str | None:
        """Why `name=value` is a plaintext secret, or None when it is not one."""
        text = "" if value is None else str(value)
        if not text.strip() or ARN.match(text.strip()):
            return None
        return self.value_reason(text, name) or self.name_reason(name, text)

    def name_reason(self, name: Any, value: str) -> str | None:
        """The second signal: the name says secret and the value could be one."""
        normalised = normalise_name(name)
        if not normalised or normalised in self.allowed_names or is_not_a_credential(value):
            return None
        if normalised not in FSBP_SECRET_NAMES:
            if normalised.endswith(self.ignored_suffixes):
                return None
            if not any(p.search(normalised) for p in self.name_patterns):
                return None
        return "its name marks it as a secret"

    # --- A value on its own ------------------------------------------------------------------------------

    def value_reason(self, text: str, name: Any = "") -> str | None:
        """Why `text` is a credential whatever it is called (`name` gives detectors their context), or None."""
        return (
            self._library_reason(text, name, "its value")
            or self._decoded_reason(text)
            or self._structure_reason(text)
            or self._pattern_reason(text)
            or self._entropy_reason(text, name)
        )

    def _library_reason(self, text: str, name: Any, subject: str) -> str | None:
        line = f'{normalise_name(name) or "value"}: "{text}"'
        for detector in VALUE_DETECTORS:
            if any(True for _ in detector.analyze_string(line)):
                return f"{subject} matches '{detector.secret_type}' (detector: {_ds(detector)})"
        return None

    def _decoded_reason(self, text: str) -> str | None:
        for word in words(text):
            decoded = decode_base64_text(word)
            if decoded is None:
                continue
            found = self._library_reason(decoded, "", "its base64-decoded value") or self._structure_reason(decoded)
            if found:
                return found.replace("its value", "its base64-decoded value", 1)
        return None

    def _structure_reason(self, text: str) -> str | None:
        for word in words(text):
            if "://" in word:
                parts = urlsplit(word)
                if parts.password and not is_not_a_credential(parts.password):
                    return "its value is a URL with a password in its userinfo (detector: url-userinfo)"
                for key, value in parse_qsl(parts.query):
                    found = self._pair_reason(key, value, "URL query parameter")
                    if found:
                        return found
        for key, value in key_value_pairs(text):
            found = self._pair_reason(key, value, "key")
            if found:
                return found
        return None

    def _pair_reason(self, key: str, value: str, what: str) -> str | None:
        if is_not_a_credential(value):
            return None
        if key.startswith(DOCKER_CONFIG_PREFIX):
            key = key.removeprefix(DOCKER_CONFIG_PREFIX)
            what = "JSON member"
            if key.lower() in DOCKER_CREDENTIAL_KEYS:
                return f"its value has a registry credential in JSON member '{key}' (detector: docker-config-auth)"
        if any(True for _ in KEYWORD_DETECTOR.analyze_string(f"{key}={value}", CONFIG_DENYLIST_REGEX_TO_GROUP)):
            return f"its value has a credential in {what} '{key}' (detector: {_ds(KEYWORD_DETECTOR)})"
        if self.name_reason(key, value):
            return f"its value has a credential in {what} '{key}' (detector: secretNamePatterns)"
        return None

    def _pattern_reason(self, text: str) -> str | None:
        if any(p.search(text) for p in self.value_patterns):
            return "its value matches a configured secret pattern (detector: secretValuePatterns)"
        return None

    def _entropy_reason(self, text: str, name: Any) -> str | None:
        line = f'{normalise_name(name) or "value"}="{text}"'
        for word in words(text):
            if len(word) < MIN_ENTROPY_LENGTH or not BASE64_WORD.match(word) or is_not_a_credential(word):
                continue
            if is_sequential_string(word) or is_potential_uuid(word) or is_likely_id_string(word, line.lower()):
                continue
            score = self.entropy.calculate_shannon_entropy(word)
            if score > self.entropy.entropy_limit:
                return (
                    f"its value is a high-entropy string ({score:.2f} bits per character, over the limit "
                    f"{self.entropy.entropy_limit:g}) (detector: {_ds(self.entropy)})"
                )
        return None

    # --- Fields of a resource ----------------------------------------------------------------------------

    def arguments(self, argv: Any) -> Iterator[tuple[int, str]]:
        """(index, reason) for each argument of a command list that carries a secret.

        `--password hunter2` (a flag followed by its value), `--password=hunter2`, `PGPASSWORD=x psql` and
        secrets anywhere in a shell string are all found.
        """
        items = ["" if a is None else str(a) for a in as_list(argv)]
        for index, argument in enumerate(items):
            found = self.value_reason(argument)
            if found:
                yield index, found
            elif index + 1 < len(items) and self._flag_with_secret_value(argument, items[index + 1]):
                yield (
                    index + 1,
                    (
                        f"it is the value of flag '{argument}', whose name marks it as a secret "
                        "(detector: secretNamePatterns)"
                    ),
                )

    def _flag_with_secret_value(self, flag: str, following: str) -> bool:
        """`--password hunter2`: a flag without `=` whose name marks a secret, followed by a plain value."""
        if not flag.startswith("-") or "=" in flag or not following or following.startswith("-"):
            return False
        return self.name_reason(flag, following) is not None

    def mapping(self, values: Any) -> Iterator[tuple[str, str]]:
        """(key, reason) for each entry of a name-to-value map (labels, log driver options) that is a secret."""
        if not isinstance(values, Mapping):
            return
        for key, value in values.items():
            found = self.reason(key, value)
            if found:
                yield str(key), found

    def text_lines(self, text: Any) -> Iterator[tuple[int, str]]:
        """(line number, reason) for each `name: value` / `name=value` line of a text (an inline buildspec)."""
        if not isinstance(text, str):
            return
        for number, line in enumerate(text.splitlines(), start=1):
            key, value = split_assignment(line)
            found = self.value_reason(line) or (self.name_reason(key, value) if key else None)
            if found:
                yield number, found


def split_assignment(line: str) -> tuple[str, str]:
    """(name, value) of a `name: value`, `name = value` or `- name=value` line; ("", "") for other lines."""
    match = re.match(r"^\s*-?\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(?::\s|=)\s*(.*)$", line)
    if match is None:
        return "", ""
    return match.group(1), match.group(2).strip().strip("\"'")


def words(text: str) -> list[str]:
    """The value split where shells and config formats split it; `k=v` words also give `v`."""
    found: list[str] = []
    for word in WORD_SEPARATORS.split(text):
        if not word:
            continue
        found.append(word)
        if "=" in word.rstrip("="):
            found.append(word.split("=", 1)[1])
    return found


def key_value_pairs(text: str) -> Iterator[tuple[str, str]]:
    """`key=value` pairs of a connection string, a shell word or an argument, and string members of a JSON
    object (a Docker auth config)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):
            yield from ((f"{DOCKER_CONFIG_PREFIX}{key}", value) for key, value in _json_pairs(json.loads(stripped)))
    for part in re.split(r"[;\s]+", stripped):
        key, separator, value = part.partition("=")
        key = key.lstrip("-")
        if separator and PAIR_KEY.match(key) and value:
            yield key, value


def _json_pairs(document: Any) -> Iterator[tuple[str, str]]:
    if isinstance(document, Mapping):
        for key, value in document.items():
            if isinstance(value, str):
                yield str(key), value
            else:
                yield from _json_pairs(value)
    elif isinstance(document, list):
        for item in document:
            yield from _json_pairs(item)


def decode_base64_text(word: str) -> str | None:
    """The text a base64 word decodes to, when it decodes to printable UTF-8; else None."""
    if len(word) < MIN_BASE64_LENGTH or not BASE64_WORD.match(word):
        return None
    padded = word + "=" * (-len(word) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in word or "_" in word) else None, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
    return decoded if decoded and printable == len(decoded) else None


def _compile(config: Mapping[str, Any], key: str, flags: int) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in config.get(key, []):
        try:
            compiled.append(re.compile(pattern, flags))
        except re.error as error:
            raise ValueError(f"policy config {key}: {pattern!r} is not a valid regular expression ({error})") from error
    return tuple(compiled)


def secret_message(where: str, name: Any, reason: str, fix: str) -> str:
    return f"{where} environment variable '{name}' is a plaintext secret: {reason}; {fix}."


# --- Where resources keep values ----------------------------------------------------------------------------


def get_key(mapping: Any, key: str) -> Any:
    """`mapping[key]` with the key matched case-insensitively, as the AWS provider decodes container JSON."""
    if not isinstance(mapping, Mapping):
        return None
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    return next((v for k, v in mapping.items() if str(k).lower() == lowered), None)


ARGUMENT_FIELDS = ("command", "entryPoint")
NAMED_VALUE_FIELDS = ("dockerLabels",)


def container_findings(container: Mapping[str, Any], detector: SecretDetector) -> Iterator[tuple[str, str]]:
    """(field, reason) for every plaintext secret in one ECS container definition.

    Beyond `environment`: `command`, `entryPoint` and `healthCheck.command` arguments, `dockerLabels`, log
    driver and FireLens `options`, and any other string field (linuxParameters, extraHosts, ...).
    """
    for variable in as_list(get_key(container, "environment")):
        name = get_key(variable, "name")
        found = detector.reason(name, get_key(variable, "value"))
        if found:
            yield f"environment variable '{name}'", found
    for field in ARGUMENT_FIELDS:
        for index, found in detector.arguments(get_key(container, field)):
            yield f"{field} argument {index}", found
    for index, found in detector.arguments(get_key(get_key(container, "healthCheck"), "command")):
        yield f"healthCheck.command argument {index}", found
    for label, found in detector.mapping(get_key(container, "dockerLabels")):
        yield f"docker label '{label}'", found
    for field in ("logConfiguration", "firelensConfiguration"):
        for option_name, found in detector.mapping(get_key(get_key(container, field), "options")):
            yield f"{field}.options '{option_name}'", found
    handled = {"environment", "healthcheck", "dockerlabels", "logconfiguration", "firelensconfiguration"}
    handled |= {f.lower() for f in ARGUMENT_FIELDS} | {"secrets", "image", "name"}
    for key, value in container.items():
        if str(key).lower() not in handled:
            yield from _other_strings(str(key), value, detector)


def _other_strings(path: str, value: Any, detector: SecretDetector) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        found = detector.value_reason(value, path.rsplit(".", 1)[-1])
        if found:
            yield f"field {path}", found
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _other_strings(f"{path}.{key}", item, detector)
    elif isinstance(value, Sequence) and not isinstance(value, bytes):
        for index, item in enumerate(value):
            yield from _other_strings(f"{path}[{index}]", item, detector)


def codebuild_findings(props: Mapping[str, Any], detector: SecretDetector) -> Iterator[tuple[str, str]]:
    """(field, reason) for plaintext secrets of a CodeBuild project: PLAINTEXT environment variables and the
    `env` section (or any line) of inline buildspecs, whose values CodeBuild also passes in plain text."""
    environment = props.get("environment")
    variables = as_list(environment.get("environmentVariables")) if isinstance(environment, Mapping) else []
    for variable in variables:
        if str(variable.get("type") or "PLAINTEXT").upper() != "PLAINTEXT":
            continue
        found = detector.reason(variable.get("name"), variable.get("value"))
        if found:
            yield f"environment variable '{variable.get('name')}'", found
    sources = [
        ("source", props.get("source")),
        *(("secondarySources", s) for s in as_list(props.get("secondarySources"))),
    ]
    for where, source in sources:
        for number, found in detector.text_lines(get_key(source, "buildspec")):
            yield f"{where}.buildspec line {number}", found


def lambda_findings(props: Mapping[str, Any], detector: SecretDetector) -> Iterator[tuple[str, str]]:
    """(field, reason) for plaintext secrets in a Lambda function's environment variables."""
    environment = props.get("environment")
    variables = environment.get("variables") if isinstance(environment, Mapping) else None
    for name, found in detector.mapping(variables):
        yield f"environment variable '{name}'", found


def describe(where: str, findings: Iterable[tuple[str, str]], fix: str) -> Iterator[str]:
    """One violation message per finding."""
    for field, reason in findings:
        yield f"{where} {field} is a plaintext secret: {reason}; {fix}."


CODEBUILD_VARIABLE_FIX = "use type SECRETS_MANAGER or PARAMETER_STORE"
CODEBUILD_BUILDSPEC_FIX = "reference it from the buildspec's env.secrets-manager or env.parameter-store"
LAMBDA_FIX = "read it at runtime from Secrets Manager or SSM Parameter Store"


def codebuild_messages(props: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    """Violation messages for a CodeBuild project's plaintext secrets (variables and inline buildspecs)."""
    for field, reason in codebuild_findings(props, SecretDetector.from_config(config)):
        fix = CODEBUILD_VARIABLE_FIX if field.startswith("environment variable") else CODEBUILD_BUILDSPEC_FIX
        yield f"CodeBuild {field} is a plaintext secret: {reason}; {fix}."


def lambda_messages(props: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    """Violation messages for a Lambda function's plaintext secrets."""
    yield from describe("Lambda", lambda_findings(props, SecretDetector.from_config(config)), LAMBDA_FIX)
