"""The CloudWatch JSON filter pattern evaluator (tests/cloudwatch_patterns.py) on the examples of the CloudWatch
Logs user guide ("Using metric filters to match terms in JSON log events") and the edge cases CloudWatch defines."""

from __future__ import annotations

import json

import pytest

from tests.cloudwatch_patterns import PatternError, matches

# The user guide's example event (abridged to the fields its examples select).
EVENT = json.dumps(
    {
        "eventType": "UpdateTrail",
        "sourceIPAddress": "123.123.123.123",
        "arrayKey": ["value", "another value"],
        "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
        "SomeObject": None,
        "cluster.name": "c",
        "ThisFlag": True,
        "bandwidth": 75,
        "latency": 50,
        "responseElements": {"GetAccountPasswordPolicyResponse": {"ResponseMetadata": {"RequestId": "x"}}},
    }
)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ('{ $.eventType = "UpdateTrail" }', True),
        ('{ $.eventType = "Update*" }', True),
        ('{ $.eventType != "UpdateTrail" }', False),
        ("{ $.sourceIPAddress != 123.123.* }", False),
        ('{ $.arrayKey[0] = "value" }', True),
        ("{ $.objectList[1].id = 2 }", True),
        ("{ $.objectList[1].id > 2 }", False),
        ("{ $.SomeObject IS NULL }", True),
        ("{ $.ThisFlag IS TRUE }", True),
        ("{ $.ThisFlag IS FALSE }", False),
        ("{ $.SomeOtherObject NOT EXISTS }", True),
        ("{ $.bandwidth > 75 }", False),
        ("{ $.latency < 50 }", False),
        ("{ $.latency <= 50 }", True),
        ('{ ($.eventType = "UpdateTrail") && ($.bandwidth >= 75) }', True),
        ('{ $.eventType = "Nope" || $.latency = 50 }', True),
        ('{ ($.eventType = "Nope" || $.latency = 51) && $.bandwidth = 75 }', False),
        ('{ $.responseElements.GetAccountPasswordPolicyResponse.ResponseMetadata.RequestId = "x" }', True),
    ],
)
def test_the_user_guide_examples(pattern: str, expected: bool) -> None:
    assert matches(pattern, EVENT) is expected


def test_a_missing_field_fails_every_comparison_including_not_equal() -> None:
    assert not matches('{ $.missing = "x" }', EVENT)
    assert not matches('{ $.missing != "x" }', EVENT)
    assert not matches("{ $.missing > 1 }", EVENT)


def test_lines_that_are_not_json_objects_match_nothing() -> None:
    for line in ("plain text security_event=auth_failure", "[1, 2]", '"auth_failure"', ""):
        assert not matches('{ $.security_event = "auth_failure" }', line)


def test_a_number_is_not_equal_to_its_string_and_a_string_is_not_a_number() -> None:
    assert not matches("{ $.id > 1 }", json.dumps({"id": "5"}))
    assert not matches("{ $.flag IS TRUE }", json.dumps({"flag": "true"}))


@pytest.mark.parametrize("pattern", ['$.a = "x"', "{ $.a = }", '{ $.a ~ "x" }', '{ ($.a = "x" }', '{ $.a > "x" }'])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        matches(pattern, "{}")
