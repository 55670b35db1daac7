#!/usr/bin/env bash
# Builds one image once and gates it, with configuration owned by this pipeline, never by the scanned source:
#   1. hadolint on the Dockerfile: our config file, inline `# hadolint ignore=` pragmas disabled, errors fail;
#   2. docker buildx build for one platform, loaded into the runner's engine (its image ID is what gets pushed);
#   3. the image's final USER: missing, root, uid 0 (any spelling) fails;
#   4. Trivy on the saved image: vulnerabilities and secrets, HIGH and CRITICAL, exit code 1.
# Both tools run from an empty directory with explicit config, ignore and secret-rule files, so a `.hadolint.yaml`,
# `trivy.yaml`, `.trivyignore` or `trivy-secret.yaml` in the repository or build context changes nothing.
# Prints nothing but logs; writes the image ID to "$GATE_DIR/<name>.id".
set -euo pipefail

name="${1:?usage: gate-image.sh <name> <dockerfile> <context>}"
dockerfile="$(realpath "${2:?dockerfile}")"
context="$(realpath "${3:?context}")"
platform="${IMAGE_PLATFORM:?IMAGE_PLATFORM is not set (e.g. linux/amd64)}"
gate_dir="${GATE_DIR:?GATE_DIR is not set}"

config_dir="$gate_dir/config"
work_dir="$gate_dir/work"
mkdir -p "$config_dir" "$work_dir"
# DL3002: the last USER is root. An error here, not the default warning.
cat > "$config_dir/hadolint.yaml" <<'YAML'
failure-threshold: error
override:
  error:
    - DL3002
YAML
cat > "$config_dir/trivy.yaml" <<'YAML'
scan:
  scanners: [vuln, secret]
severity: [HIGH, CRITICAL]
exit-code: 1
vulnerability:
  ignore-unfixed: true
YAML
: > "$config_dir/trivyignore"
cd "$work_dir"

echo "::group::hadolint $name"
hadolint --config "$config_dir/hadolint.yaml" --disable-ignore-pragma --failure-threshold error "$dockerfile"
echo "::endgroup::"

echo "::group::build $name ($platform)"
docker buildx build --platform "$platform" --file "$dockerfile" --provenance=false --sbom=false \
  --iidfile "$gate_dir/$name.id" --load "$context"
echo "::endgroup::"
image_id="$(cat "$gate_dir/$name.id")"

user="$(docker image inspect --format '{{.Config.User}}' "$image_id")"
# Empty (root by default), `root` or uid 0 in any spelling, before any `:group`. The same pattern as CodeBuild's
# gate (components/buildspec.py ROOT_USER_PATTERN; tests/ci/test_image_gate.py keeps them equal).
root_user='^[[:space:]]*(root|[+]?0+)?[[:space:]]*$'
if [[ "${user%%:*}" =~ $root_user ]]; then
  echo "::error::$name: the image runs as root (USER '${user}'); end the Dockerfile with a non-root USER"
  exit 1
fi

echo "::group::trivy $name"
docker image save --output "$gate_dir/$name.tar" "$image_id"
trivy image --config "$config_dir/trivy.yaml" --ignorefile "$config_dir/trivyignore" \
  --secret-config "$config_dir/trivy-secret.yaml" --scanners vuln,secret --severity HIGH,CRITICAL \
  --ignore-unfixed --exit-code 1 --input "$gate_dir/$name.tar"
echo "::endgroup::"
rm -f "$gate_dir/$name.tar"
