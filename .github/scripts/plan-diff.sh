#!/usr/bin/env bash
# Offline plan diff of every stack against a base commit (no credentials: fork pull requests get it too).
# Writes <out>/<stack>.md for each stack the change touches (resources, policy results or cost) and
# <out>/stacks.txt listing them; every diff also goes to the job summary.
set -euo pipefail

base="${1:?usage: plan-diff.sh <base commit> <out dir>}"
out="${2:?usage: plan-diff.sh <base commit> <out dir>}"
mkdir -p "$out"
: > "$out/stacks.txt"
for file in Pulumi.*.yaml; do
  stack="${file#Pulumi.}"
  stack="${stack%.yaml}"
  uv run --frozen python -m runner.diff --program . --stack "$stack" --base "$base" --format markdown \
    --json-out "$out/$stack.json" > "$out/$stack.md"
  cat "$out/$stack.md" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
  if [[ "$(jq -r '.empty' "$out/$stack.json")" == "false" ]]; then
    echo "$stack" >> "$out/stacks.txt"
  fi
done
