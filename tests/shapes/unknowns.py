"""Which planned input values are stand-ins for values only a real deployment knows.

Under mocks, another resource's outputs (ids, ARNs, URLs, DNS names, auto-generated names, random passwords) are
fake, and encrypted stack config is a placeholder. Validating them would test the mocks, not the program, so
they are told apart here: a value equal to such an output, or a string with one embedded in it (an ARN with a
`/*` suffix, a URL), is unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import regex

from policy.rules.costing import nested_strings
from runner.plan import MOCK_ACCOUNT_ID
from runner.records import UNKNOWN_VALUE, ResourceRecord, unwrap_secrets

# runner/plan.py gives encrypted (`secure:`) stack values this text offline.
SECURE_CONFIG_PLACEHOLDER = "offline-placeholder-for-secure-value"
# Outputs that default to the logical name (auto-named resources): too generic to look for inside other strings.
_NAME_LIKE_OUTPUTS = frozenset({"name", "bucket"})
# Packages whose components run in another process (the plan sees only their mocked outputs).
REMOTE_COMPONENT_PACKAGES = ("awsx:",)


@dataclass(frozen=True)
class MockValues:
    """The fake values of one plan, each with the resource output it stands for."""

    exact: Mapping[str, str]
    embedded: Mapping[str, str]
    _search: regex.Pattern[str] | None

    @classmethod
    def of(cls, resources: Iterable[ResourceRecord]) -> MockValues:
        exact: dict[str, str] = {SECURE_CONFIG_PLACEHOLDER: "an encrypted stack config value"}
        embedded: dict[str, str] = {}
        for resource in resources:
            for key, value in _generated_outputs(resource):
                source = f"output `{key}` of {resource.type} {resource.name}"
                exact.setdefault(value, source)
                if key not in _NAME_LIKE_OUTPUTS and len(value) >= 6:
                    embedded.setdefault(value, source)
        alternatives = sorted(embedded, key=len, reverse=True)
        search = regex.compile("|".join(regex.escape(v) for v in alternatives)) if alternatives else None
        return cls(exact=exact, embedded=embedded, _search=search)

    def source_of(self, value: str) -> str | None:
        """What `value` stands for when it is (or contains) a fake value; None when the program itself chose it."""
        if value == UNKNOWN_VALUE:
            return "a value unknown until apply"
        if value in self.exact:
            return self.exact[value]
        found = self._search.search(value) if self._search else None
        return f"built from {self.embedded[found.group(0)]}" if found else None


def _generated_outputs(resource: ResourceRecord) -> Iterator[tuple[str, str]]:
    """Outputs the mocks made up: not an input echoed back, and not the account id (a stand-in of the real
    account's form, like every ARN the program builds from the caller identity)."""
    if not _outputs_come_from_mocks(resource):
        return
    inputs = unwrap_secrets(resource.inputs)
    for key, value in unwrap_secrets(resource.outputs).items():
        if key in inputs and inputs[key] == value:
            continue
        for text in nested_strings(value):
            if text != MOCK_ACCOUNT_ID:
                yield key, text


def _outputs_come_from_mocks(resource: ResourceRecord) -> bool:
    """Cloud resources and remote (multi-language) components get their outputs from the mocks; a local
    component's outputs are the program's own values."""
    return resource.custom or resource.type.startswith(REMOTE_COMPONENT_PACKAGES)
