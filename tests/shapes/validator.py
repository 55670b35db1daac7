"""botocore's request validation, completed: enums, maximums and patterns as well as required members, types and
minimums, with values that are not known offline skipped on purpose.

botocore's own `ParamValidator` checks only what the SDK must refuse before sending (required members, types,
`min`); the service refuses the rest (`max`, `enum`, `pattern`) with a ValidationException at `pulumi up`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import botocore.session
import regex
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator, ValidationErrors


@dataclass(frozen=True)
class Unknown:
    """A value that is not known before the real deployment (a mocked output of another resource, an encrypted
    config value): present, so it satisfies `required`, but never validated against its fake stand-in."""

    source: str
    """What the value stands for, e.g. `output of aws:kms/key:Key database-key`."""


@dataclass(frozen=True)
class Problem:
    """One way a request would be refused."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Skipped:
    """Values validation left out knowingly, and why (kept so a run can show what it did not check)."""

    unknown: list[tuple[str, str]]
    uncheckable_patterns: list[tuple[str, str]]


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def operation_model(service: str, operation: str) -> OperationModel:
    return _session().get_service_model(service).operation_model(operation)


# Java regex syntax that Python's engines spell differently: a surrogate pair range means "any supplementary
# code point" in Java.
_JAVA_SUPPLEMENTARY = re.compile(r"\\uD800\\uDC00-\\uDBFF\\uDFFF", re.IGNORECASE)


@functools.cache
def compiled_pattern(pattern: str) -> regex.Pattern[str] | None:
    """The shape's pattern compiled, or None where no Python engine can read it (reported as skipped)."""
    translated = _JAVA_SUPPLEMENTARY.sub(r"\\U00010000-\\U0010FFFF", pattern)
    try:
        return regex.compile(translated)
    except regex.error:
        return None


class StrictParamValidator(ParamValidator):
    """ParamValidator plus `enum`, `max` and `pattern`, and `Unknown` values skipped (and counted)."""

    def _shape_has_constraints(self, shape: Shape) -> bool:
        # botocore type-checks list items in place when their shape has no `min`; send every item through
        # `_validate` instead, so that enums, patterns and unknown items are handled there.
        return True

    def __init__(self) -> None:
        super().__init__()
        self.skipped = Skipped(unknown=[], uncheckable_patterns=[])

    def _validate(self, params: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        if isinstance(params, Unknown):
            self.skipped.unknown.append((name, params.source))
            return
        super()._validate(params, shape, errors, name)
        if shape.type_name == "string" and isinstance(params, str):
            self._check_string(params, shape, errors, name)
        elif shape.type_name in ("integer", "long", "double", "float") and _is_number(params):
            self._check_maximum(params, params, shape, errors, name, "value")
        elif shape.type_name in ("list", "map") and isinstance(params, list | tuple | dict):
            self._check_maximum(len(params), params, shape, errors, name, "length")

    def _check_string(self, value: str, shape: Shape, errors: ValidationErrors, name: str) -> None:
        self._check_maximum(len(value), value, shape, errors, name, "length")
        enum = metadata(shape).get("enum")
        if enum and value not in enum:
            errors.report(name, "not in enum", param=value, allowed=enum)
        pattern = metadata(shape).get("pattern")
        if pattern is None:
            return
        compiled = compiled_pattern(pattern)
        if compiled is None:
            self.skipped.uncheckable_patterns.append((name, pattern))
        # The whole value must match: services check with a full match (IAM's RoleName pattern `[\w+=,.@-]+` is
        # documented as "a string of characters consisting of ... with no spaces", not "containing one").
        elif compiled.fullmatch(value) is None:
            errors.report(name, "pattern mismatch", param=value, pattern=pattern)

    @staticmethod
    def _check_maximum(
        measured: float, value: Any, shape: Shape, errors: ValidationErrors, name: str, what: str
    ) -> None:
        maximum = metadata(shape).get("max")
        if maximum is not None and measured > maximum:
            errors.report(name, f"{what} above max", param=value, measured=measured, max_allowed=maximum)


def metadata(shape: Shape) -> Mapping[str, Any]:
    """`shape.metadata` (botocore's cached property confuses type checkers)."""
    return cast(Mapping[str, Any], shape.metadata)


def members(shape: Shape) -> Mapping[str, Shape]:
    """`shape.members` of a structure, or nothing."""
    return cast(Mapping[str, Shape], getattr(shape, "members", {}))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_MESSAGES = {
    "not in enum": lambda a: f"{_short(a['param'])!r} is not one of {a['allowed']}",
    "pattern mismatch": lambda a: f"{_short(a['param'])!r} does not match the pattern {a['pattern']!r}",
    "value above max": lambda a: f"value {a['param']} is above the maximum {a['max_allowed']}",
    "length above max": lambda a: (
        f"length {a['measured']} is above the maximum {a['max_allowed']} ({_short(a['param'])!r})"
    ),
}


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def problems_of(errors: ValidationErrors, operation: str) -> list[Problem]:
    """Each error as `<Operation>.<member path>: <what is wrong and what is allowed>`."""
    found: list[Problem] = []
    for reason, name, details in errors._errors:
        path = f"{operation}{name}" if name.startswith(".") or not name else f"{operation}.{name}"
        if reason in _MESSAGES:
            message = _MESSAGES[reason](details)
        else:  # botocore's own checks keep botocore's wording
            single = ValidationErrors()
            single.report(name, reason, **details)
            message = single.generate_report()
        found.append(Problem(path, message))
    return found


def validate_request(service: str, operation: str, params: Mapping[str, Any]) -> tuple[list[Problem], Skipped]:
    """Problems AWS would refuse `params` for, as the `operation` request of `service`."""
    model = operation_model(service, operation)
    validator = StrictParamValidator()
    assert model.input_shape is not None, f"{service} {operation} takes no input"
    errors = validator.validate(dict(params), model.input_shape)
    return problems_of(errors, operation), validator.skipped
