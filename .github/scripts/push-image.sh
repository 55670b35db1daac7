#!/usr/bin/env bash
# Pushes one gated image (by its local image ID) to a repository under an immutable release tag and prints the
# manifest digest the registry stored. Fails unless the pushed manifest names exactly the gated image: its config
# digest (or, with Docker's containerd image store, its manifest digest) equals the local image ID.
set -euo pipefail

image_id="${1:?usage: push-image.sh <image id> <repository url> <tag>}"
repository="${2:?repository url}"
tag="${3:?tag}"

docker image tag "$image_id" "$repository:$tag"
docker image push "$repository:$tag" >&2
digest="$(skopeo inspect --format '{{.Digest}}' "docker://$repository:$tag")"
config_digest="$(skopeo inspect --raw "docker://$repository@$digest" | jq --raw-output '.config.digest // empty')"
if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "::error::$repository:$tag: the registry returned no digest ('$digest')" >&2
  exit 1
fi
if [[ "$config_digest" != "$image_id" && "$digest" != "$image_id" ]]; then
  echo "::error::$repository@$digest is not the gated image $image_id (config $config_digest)" >&2
  exit 1
fi
echo "$digest"
