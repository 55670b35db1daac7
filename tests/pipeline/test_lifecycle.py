"""The repositories' lifecycle policy on a realistic image history: release images (what stacks run and roll
back to) never expire, however old or many; CI images beyond the newest N and untagged images after a day do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from components.scanning import RELEASE_IMAGES_KEPT, RELEASE_TAG_PREFIX, lifecycle_policy
from tests.pipeline.ecr_lifecycle import Image, expired

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def history() -> list[Image]:
    """A year of daily CI builds; every tenth promoted (tagged `release-...` on top of its `ci-` tag); a release
    promoted by digest only (tagged `release-` alone); and untagged leftovers of a failed multi-step push."""
    images = []
    for day in range(365):
        tags = [f"ci-{day:040x}-{day}"]
        if day % 10 == 0:
            tags.append(f"{RELEASE_TAG_PREFIX}{day:040x}")
        images.append(Image(f"sha256:{day:064x}", tuple(tags), NOW - timedelta(days=365 - day)))
    images.append(Image("sha256:" + "e" * 64, (f"{RELEASE_TAG_PREFIX}copied",), NOW - timedelta(days=400)))
    images += [Image(f"sha256:{'f' * 62}{n:02x}", (), NOW - timedelta(days=n)) for n in (0, 2, 30)]
    return images


def test_release_images_never_expire_and_the_rest_is_cleaned_up() -> None:
    policy = json.loads(lifecycle_policy(untagged_expiry_days=1, keep_tagged_images=10))
    images = history()
    gone = expired(policy, images, NOW)
    releases = {i.digest for i in images if any(t.startswith(RELEASE_TAG_PREFIX) for t in i.tags)}
    assert len(releases) == 38
    assert not gone & releases, "a release image a stack may run would expire"
    untagged = {i.digest for i in images if not i.tags}
    assert untagged - gone == {f"sha256:{'f' * 62}00"}, "untagged images older than a day expire"
    kept_ci = {i.digest for i in images if i.tags and i.digest not in releases} - gone
    # The newest 10 tagged images count the releases among them (ECR still "identifies" shielded images).
    newest_ten = sorted((i for i in images if i.tags), key=lambda i: i.pushed_at)[-10:]
    assert kept_ci == {i.digest for i in newest_ten if i.digest not in releases}


def test_without_the_release_rule_a_running_release_would_expire() -> None:
    """The evaluator is not trivially keeping everything: drop the release rule and old releases go."""
    policy = json.loads(lifecycle_policy(untagged_expiry_days=1, keep_tagged_images=10))
    policy["rules"] = [r for r in policy["rules"] if "tagPrefixList" not in r["selection"]]
    images = history()
    releases = {i.digest for i in images if any(t.startswith(RELEASE_TAG_PREFIX) for t in i.tags)}
    assert len(expired(policy, images, NOW) & releases) == 37


def test_the_release_rule_comes_first_and_can_never_pick_an_image() -> None:
    rules = json.loads(lifecycle_policy(untagged_expiry_days=1, keep_tagged_images=10))["rules"]
    first = min(rules, key=lambda r: r["rulePriority"])
    assert first["selection"] == {"tagStatus": "tagged", "tagPrefixList": [RELEASE_TAG_PREFIX],
                                  "countType": "imageCountMoreThan", "countNumber": RELEASE_IMAGES_KEPT}  # fmt: skip
    many = [Image(f"sha256:{n:064x}", (f"{RELEASE_TAG_PREFIX}{n}",), NOW - timedelta(days=n)) for n in range(3000)]
    assert expired({"rules": [first]}, many, NOW) == set()
