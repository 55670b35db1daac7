#!/usr/bin/env bash
# Copies one image by digest from the previous environment's repository into this stack's repository, keeping
# the digest (skopeo copy --all --preserve-digests), tags it with the release tag, and checks the digest the
# target registry reports for that tag is the one promoted. An image already there is only tagged.
set -euo pipefail

source_repository="${1:?usage: promote-image.sh <source repository url> <target repository url> <digest> <tag>}"
target_repository="${2:?target repository url}"
digest="${3:?digest}"
tag="${4:?tag}"

if [[ ! "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
  echo "::error::promote: '$digest' is not a digest (sha256:<64 hex>)" >&2
  exit 1
fi
if [[ "$source_repository" == "$target_repository" ]]; then
  echo "::error::promote: source and target are the same repository ($target_repository)" >&2
  exit 1
fi
from="docker://$source_repository@$digest"
if skopeo inspect --raw "docker://$target_repository@$digest" > /dev/null 2>&1; then
  # Already there (a re-run, or promoted before): still give it this release's tag, which the lifecycle policy
  # keeps. Copying within the repository moves no layer; it only writes the manifest under the tag.
  echo "$target_repository@$digest is already there: tagging it $tag" >&2
  from="docker://$target_repository@$digest"
fi
skopeo copy --all --preserve-digests "$from" "docker://$target_repository:$tag" >&2
promoted="$(skopeo inspect --format '{{.Digest}}' "docker://$target_repository:$tag")"
if [[ "$promoted" != "$digest" ]]; then
  echo "::error::promote: $target_repository:$tag is $promoted, not $digest" >&2
  exit 1
fi
echo "$digest"
