#!/usr/bin/env bash
# Prints a stack's `repositoryUrls` output as compact JSON ({"api": "<url>", ...}). A stack that has none yet
# (never deployed) fails with the first-deploy steps of docs/ci.md.
set -euo pipefail

stack="${1:?usage: repository-urls.sh <org/stack>}"
if ! urls="$(pulumi stack output repositoryUrls --json --stack "$stack")" || [[ -z "$urls" || "$urls" == null ]]; then
  echo "::error::$stack has no repositoryUrls output yet: deploy it once as docs/ci.md (First deploy of a stack) says" >&2
  exit 1
fi
jq --compact-output --exit-status 'if type == "object" and length > 0 then . else error("not an object") end' <<< "$urls"
