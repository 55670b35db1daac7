#!/usr/bin/env bash
# Points a stack at the digests CI built and gated: images.build false, images.digests.<image> = the digest.
# Writes the runner's copy of Pulumi.<stack>.yaml only (`pulumi config set --path`); nothing is committed.
# Usage: set-image-config.sh <org/stack> <image>=<digest>...
set -euo pipefail

stack="${1:?usage: set-image-config.sh <org/stack> <image>=sha256:<hex>...}"
shift
if (( $# == 0 )); then
  echo "::error::set-image-config: no <image>=<digest> given for $stack" >&2
  exit 1
fi
pulumi config set --stack "$stack" --path images.build false
for pair in "$@"; do
  image="${pair%%=*}"
  digest="${pair#*=}"
  if [[ ! "$image" =~ ^[a-z][a-z0-9-]*$ || ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "::error::set-image-config: '$pair' is not <image>=sha256:<64 hex>" >&2
    exit 1
  fi
  pulumi config set --stack "$stack" --path "images.digests.$image" "$digest"
done
