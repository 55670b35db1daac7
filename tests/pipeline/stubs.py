"""Stub `docker`, `trivy`, `hadolint` and `aws` for running the pipeline's buildspec on this machine.

Each stub logs `<tool> <args>` to `$STUB_BUILD/calls.log` and behaves like the real tool where the buildspec relies
on it: `docker build` refuses an invalid reference, `docker login` an empty password, `docker push` an image it did
not build and (ECR IMMUTABLE) a tag the registry already has; `trivy` writes its report and fails the gate on a
finding; `hadolint` lints a file that must exist. Knobs (environment, matched as substrings of the arguments):
FAIL_LINT (a Dockerfile), FAIL_SCAN (an image), FAIL_PUSH (an image), FAIL_LOGIN (any value).
`$STUB_REGISTRY` is a file of pushed references that outlives one build, like the registry does.
"""

from __future__ import annotations

from pathlib import Path

TOOLS = ("docker", "trivy", "hadolint", "aws")

_LOG = 'echo "$(basename "$0") $*" >> "$STUB_BUILD/calls.log"\n'
# Docker's reference grammar, host and repository lowercased as ECR requires.
_REFERENCE = r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"

_DOCKER = f"""#!/usr/bin/env bash
set -u
{_LOG}
case "$1" in
  login)
    password="$(cat)"
    if [[ -z "$password" ]]; then echo "Error: Cannot perform an interactive login from a non TTY device" >&2; exit 1; fi
    echo "Login Succeeded" ;;
  build)
    tag=""; previous=""
    for argument in "$@"; do [[ "$previous" == --tag ]] && tag="$argument"; previous="$argument"; done
    if [[ ! "$tag" =~ {_REFERENCE} ]]; then echo "ERROR: invalid tag \\"$tag\\": invalid reference format" >&2; exit 1; fi
    echo "$tag" >> "$STUB_BUILD/images" ;;
  push)
    reference="$2"
    if ! grep -qxF -- "$reference" "$STUB_BUILD/images" 2>/dev/null; then
      echo "An image does not exist locally with the tag: $reference" >&2; exit 1
    fi
    if [[ -n "${{FAIL_PUSH:-}}" && "$reference" == *"$FAIL_PUSH"* ]]; then
      echo "denied: requested access to the resource is denied" >&2; exit 1
    fi
    if grep -qxF -- "$reference" "$STUB_REGISTRY" 2>/dev/null; then
      echo "tag invalid: The image tag '${{reference##*:}}' already exists and cannot be overwritten because the repository is immutable." >&2
      exit 1
    fi
    echo "$reference" >> "$STUB_REGISTRY" ;;
  image)
    reference="${{@: -1}}"
    echo "${{reference%:*}}@sha256:$(printf '%s' "$reference" | sha256sum | cut -c1-64)" ;;
  *) echo "docker stub: not modelled: $*" >&2; exit 2 ;;
esac
"""

_TRIVY = f"""#!/usr/bin/env bash
set -u
{_LOG}
[[ "$1" == --version ]] && {{ echo "Version: stub"; exit 0; }}
reference="${{@: -1}}"; output=""; previous=""
for argument in "$@"; do [[ "$previous" == --output ]] && output="$argument"; previous="$argument"; done
if ! grep -qxF -- "$reference" "$STUB_BUILD/images" 2>/dev/null; then
  echo "FATAL unable to find the specified image \\"$reference\\"" >&2; exit 1
fi
[[ -n "$output" ]] && echo '{{"Results": []}}' > "$output"
if [[ "$*" == *"--exit-code 1"* && -n "${{FAIL_SCAN:-}}" && "$reference" == *"$FAIL_SCAN"* ]]; then
  echo "Total: 1 (HIGH: 1, CRITICAL: 0) CVE-2024-6345 setuptools 65.5.0 fixed in 70.0.0"; exit 1
fi
exit 0
"""

_HADOLINT = f"""#!/usr/bin/env bash
set -u
{_LOG}
[[ "$1" == --version ]] && {{ echo "Haskell Dockerfile Linter stub"; exit 0; }}
file="${{@: -1}}"
[[ -f "$file" ]] || {{ echo "$file: openBinaryFile: does not exist" >&2; exit 1; }}
if [[ -n "${{FAIL_LINT:-}}" && "$file" == *"$FAIL_LINT"* ]]; then echo "$file:1 DL3006 error: Always tag the version"; exit 1; fi
exit 0
"""

_AWS = f"""#!/usr/bin/env bash
set -u
{_LOG}
case "$1 $2" in
  "ecr get-login-password")
    if [[ -n "${{FAIL_LOGIN:-}}" ]]; then echo "An error occurred (AccessDeniedException) when calling GetAuthorizationToken" >&2; exit 255; fi
    echo "stub-password" ;;
  "s3 cp")
    source=""
    for argument in "${{@:3}}"; do [[ "$argument" != --* ]] && {{ source="$argument"; break; }}; done
    [[ -d "$source" ]] || {{ echo "The user-provided path $source does not exist." >&2; exit 255; }} ;;
  *) echo "aws stub: not modelled: $*" >&2; exit 2 ;;
esac
"""

_SCRIPTS = {"docker": _DOCKER, "trivy": _TRIVY, "hadolint": _HADOLINT, "aws": _AWS}


def install_stubs(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        path = bin_dir / tool
        path.write_text(_SCRIPTS[tool])
        path.chmod(0o755)
