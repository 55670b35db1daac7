"""A small evaluator of ECR lifecycle policies, following the ECR user guide's "Lifecycle policy evaluation rules"
(awsdocs/amazon-ecr-user-guide, doc_source/LifecyclePolicies.md):

- All rules are evaluated at the same time; then they are applied by priority (lowest number first).
- An image is expired by exactly one or zero rules.
- "An image that matches the tagging requirements of a rule cannot be expired by a rule with a lower priority."
- "Rules can never mark images that are marked by higher priority rules, but can still identify them as if they
  haven't been expired": a lower-priority rule's count includes them.
- Expiration is ordered by `pushed_at`: with `imageCountMoreThan`, images are sorted youngest first and every
  image past the count is expired; with `sinceImagePushed`, images older than `countNumber` days are.
- `tagPrefixList` matches when *all* of its prefixes match some tag of the image; `tagPatternList` the same with
  `*` wildcards. `untagged` selects images with no tag, `any` every image.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Image:
    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime


def matches_tags(selection: Mapping[str, Any], image: Image) -> bool:
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return not image.tags
    prefixes = selection.get("tagPrefixList")
    if prefixes is not None:
        return bool(image.tags) and all(any(t.startswith(p) for t in image.tags) for p in prefixes)
    patterns = selection["tagPatternList"]
    # ECR patterns: `*` matches any characters; nothing else is special.
    return bool(image.tags) and all(
        any(fnmatch.fnmatchcase(t, p.replace("[", "[[]").replace("?", "[?]")) for t in image.tags) for p in patterns
    )


def _identified(selection: Mapping[str, Any], images: Sequence[Image], now: datetime) -> set[str]:
    """Digests a rule would expire on its own, ignoring every other rule."""
    selected = sorted((i for i in images if matches_tags(selection, i)), key=lambda i: i.pushed_at, reverse=True)
    if selection["countType"] == "imageCountMoreThan":
        return {i.digest for i in selected[selection["countNumber"] :]}
    assert selection["countUnit"] == "days"
    limit = now - timedelta(days=selection["countNumber"])
    return {i.digest for i in selected if i.pushed_at < limit}


def expired(policy: Mapping[str, Any], images: Sequence[Image], now: datetime) -> set[str]:
    """Digests the policy expires at `now`."""
    rules = sorted(policy["rules"], key=lambda r: r["rulePriority"])
    result: set[str] = set()
    shielded: set[str] = set()  # matched by the tagging requirements of a higher-priority rule
    for rule in rules:
        selection = rule["selection"]
        result |= _identified(selection, images, now) - shielded - result
        shielded |= {i.digest for i in images if matches_tags(selection, i)}
    return result
