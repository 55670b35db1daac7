#!/usr/bin/env bash
# Offline plan diff of every stack against a base commit (no credentials: fork pull requests get it too).
# Writes <out>/<stack>.md for each stack the change touches (resources, policy results or cost), for a stack the
# base does not have ("new stack") and for a stack whose diff failed, and <out>/stacks.txt listing them; every
# note also goes to the job summary. One stack's failure does not stop the others; the script then exits 1.
# PLAN_DIFF_PYTHON: the command that runs Python with the locked dependencies (default `uv run --frozen python`).
set -euo pipefail

base="${1:?usage: plan-diff.sh <base commit> <out dir>}"
out="${2:?usage: plan-diff.sh <base commit> <out dir>}"
read -r -a python <<< "${PLAN_DIFF_PYTHON:-uv run --frozen python}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
mkdir -p "$out"
: > "$out/stacks.txt"
failed=()

note() { # <stack> <markdown>: a stack's note, listed for a comment and added to the summary
  printf '%s\n' "$2" > "$out/$1.md"
  cat "$out/$1.md" >> "$summary"
  echo "$1" >> "$out/stacks.txt"
}

for file in Pulumi.*.yaml; do
  stack="${file#Pulumi.}"
  stack="${stack%.yaml}"
  if ! git cat-file -e "$base:$file" 2> /dev/null; then
    note "$stack" "### \`$stack\`: new stack, no base to compare"
    continue
  fi
  if ! "${python[@]}" -m runner.diff --program . --stack "$stack" --base "$base" --format markdown \
    --json-out "$out/$stack.json" > "$out/$stack.md" 2> "$out/$stack.err"; then
    echo "::error::plan diff of $stack failed: $(tail -n 5 "$out/$stack.err" | tr '\n' ' ')" >&2
    note "$stack" "$(printf '### `%s`: the plan diff failed\n\n```\n%s\n```' "$stack" "$(tail -n 20 "$out/$stack.err")")"
    failed+=("$stack")
    continue
  fi
  cat "$out/$stack.md" >> "$summary"
  if [[ "$(jq -r '.empty' "$out/$stack.json")" == "false" ]]; then
    echo "$stack" >> "$out/stacks.txt"
  fi
done

if (( ${#failed[@]} > 0 )); then
  echo "::error::plan diff failed for: ${failed[*]}" >&2
  exit 1
fi
