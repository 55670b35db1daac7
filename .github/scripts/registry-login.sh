#!/usr/bin/env bash
# Logs docker (with --docker) and skopeo in to the registry of each repositoryUrls JSON given ({"api": "<url>"}),
# with the job's AWS credentials.
# Usage: registry-login.sh [--docker] <repositoryUrls JSON>...
set -euo pipefail

docker_too=false
if [[ "${1:-}" == --docker ]]; then
  docker_too=true
  shift
fi
(( $# > 0 )) || { echo "usage: registry-login.sh [--docker] <repositoryUrls JSON>..." >&2; exit 1; }
for urls in "$@"; do
  registry="$(jq --raw-output --exit-status '.api // first(.[]) | split("/")[0]' <<< "$urls")"
  if [[ ! "$registry" =~ ^[0-9]{12}\.dkr\.ecr(-fips)?\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$ ]]; then
    echo "::error::registry-login: '$registry' is not an ECR registry" >&2
    exit 1
  fi
  if [[ "$docker_too" == true ]]; then
    aws ecr get-login-password | docker login --username AWS --password-stdin "$registry"
  fi
  aws ecr get-login-password | skopeo login --username AWS --password-stdin "$registry"
done
