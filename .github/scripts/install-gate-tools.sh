#!/usr/bin/env bash
# Installs hadolint and Trivy at the versions CodeBuild's gate uses (components/buildspec.py), each checked against
# its release's published SHA-256 before it runs. tests/ci/test_image_gate.py keeps versions and sums in step.
set -euo pipefail

HADOLINT_VERSION=2.15.1
HADOLINT_SHA256=c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507 # hadolint-linux-x86_64
TRIVY_VERSION=0.74.0
TRIVY_SHA256=2ae6fe3ee734b7fdf11335663e18c75ea12dccc76062f09f164a3b0f8be4371a # trivy_0.74.0_Linux-64bit.tar.gz

bin_dir="${1:?usage: install-gate-tools.sh <bin dir>}"
download_dir="$(mktemp -d)"
mkdir -p "$bin_dir"

curl --fail --silent --show-error --location --proto '=https' --output "$download_dir/hadolint" \
  "https://github.com/hadolint/hadolint/releases/download/v${HADOLINT_VERSION}/hadolint-linux-x86_64"
echo "$HADOLINT_SHA256  $download_dir/hadolint" | sha256sum --check --strict -
install -m 0755 "$download_dir/hadolint" "$bin_dir/hadolint"

curl --fail --silent --show-error --location --proto '=https' --output "$download_dir/trivy.tar.gz" \
  "https://github.com/aquasecurity/trivy/releases/download/v${TRIVY_VERSION}/trivy_${TRIVY_VERSION}_Linux-64bit.tar.gz"
echo "$TRIVY_SHA256  $download_dir/trivy.tar.gz" | sha256sum --check --strict -
tar --extract --gzip --file "$download_dir/trivy.tar.gz" --directory "$bin_dir" trivy

"$bin_dir/hadolint" --version
"$bin_dir/trivy" --version
