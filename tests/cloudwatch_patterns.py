"""CloudWatch Logs filter patterns for JSON log events, evaluated as CloudWatch does, for the subset the platform
uses (no maintained Python evaluator exists; moto's treats every JSON pattern as matching everything).

Supported (CloudWatch Logs user guide, "Filter pattern syntax for metric filters ... JSON log events"):
    { $.field = "text" }            string equality; `*` in the text is a wildcard
    { $.field != "text" }
    { $.a.b = 5 }  { $.n >= 2.5 }   numeric comparisons: = != < <= > >=
    { $.flag IS TRUE }  IS FALSE  IS NULL  { $.field NOT EXISTS }
    { ($.a = "x") && ($.b = "y") }  { $.a = "x" || $.a = "y" }   parentheses, && before ||
    $.list[0].name                  array indexes in selectors

A line that is not a JSON object matches no JSON pattern, and a comparison on a field the event lacks is false
(for `!=` too), as CloudWatch evaluates them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<selector>\$(?:\.[A-Za-z_][\w-]*|\[\d+\])+)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w*.]))
      | (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\))
      | (?P<word>[\w*][\w*.:-]*)
    )""",
    re.VERBOSE,
)
_MISSING = object()
Predicate = Callable[[Any], bool]


class PatternError(ValueError):
    """Not a JSON filter pattern of the supported subset."""


def matches(pattern: str, line: str) -> bool:
    """Whether CloudWatch Logs' JSON filter `pattern` matches the log event `line`."""
    predicate = compile_pattern(pattern)
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(event, dict) and predicate(event)


def compile_pattern(pattern: str) -> Predicate:
    text = pattern.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise PatternError(f"a JSON filter pattern is wrapped in {{ }}: {pattern!r}")
    parser = _Parser(_tokens(text[1:-1]))
    predicate = parser.disjunction()
    if parser.peek() is not None:
        raise PatternError(f"unexpected {parser.peek()!r} in {pattern!r}")
    return predicate


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise PatternError(f"cannot read {text[position:]!r}")
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind)))
        position = found.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self._tokens = tokens
        self._index = 0

    def peek(self) -> str | None:
        return self._tokens[self._index][1] if self._index < len(self._tokens) else None

    def _take(self, kind: str | None = None) -> tuple[str, str]:
        if self._index >= len(self._tokens):
            raise PatternError("the pattern ends too early")
        token = self._tokens[self._index]
        if kind is not None and token[0] != kind:
            raise PatternError(f"expected a {kind}, got {token[1]!r}")
        self._index += 1
        return token

    def disjunction(self) -> Predicate:
        terms = [self.conjunction()]
        while self.peek() == "||":
            self._take()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else lambda event: any(term(event) for term in terms)

    def conjunction(self) -> Predicate:
        terms = [self.term()]
        while self.peek() == "&&":
            self._take()
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else lambda event: all(term(event) for term in terms)

    def term(self) -> Predicate:
        if self.peek() == "(":
            self._take()
            inner = self.disjunction()
            if self._take()[1] != ")":
                raise PatternError("a parenthesis is not closed")
            return inner
        _, selector = self._take("selector")
        kind, operator = self._take()
        if kind == "word" and operator in ("IS", "NOT"):
            return self._keyword(selector, operator)
        if kind != "op" or operator not in ("=", "!=", "<", "<=", ">", ">="):
            raise PatternError(f"expected a comparison after {selector}, got {operator!r}")
        value_kind, value = self._take()
        return _comparison(selector, operator, value_kind, value)

    def _keyword(self, selector: str, keyword: str) -> Predicate:
        _, word = self._take("word")
        if keyword == "NOT":
            if word != "EXISTS":
                raise PatternError(f"expected NOT EXISTS after {selector}")
            return lambda event: _select(event, selector) is _MISSING
        expected = {"TRUE": True, "FALSE": False, "NULL": None}
        if word not in expected:
            raise PatternError(f"expected IS TRUE, IS FALSE or IS NULL after {selector}")
        wanted = expected[word]
        return lambda event: (value := _select(event, selector)) is not _MISSING and value is wanted


def _comparison(selector: str, operator: str, kind: str, literal: str) -> Predicate:
    if kind == "number":
        number = float(literal)
        compare = {
            "=": lambda v: v == number, "!=": lambda v: v != number, "<": lambda v: v < number,
            "<=": lambda v: v <= number, ">": lambda v: v > number, ">=": lambda v: v >= number,
        }[operator]  # fmt: skip

        def numeric(event: Any) -> bool:
            value = _select(event, selector)
            return isinstance(value, int | float) and not isinstance(value, bool) and compare(value)

        return numeric
    if operator not in ("=", "!="):
        raise PatternError(f"{operator} compares numbers; got {literal!r}")
    text = json.loads(literal) if kind == "string" else literal

    def textual(event: Any) -> bool:
        value = _select(event, selector)
        if value is _MISSING or isinstance(value, dict | list):
            return False
        shown = value if isinstance(value, str) else json.dumps(value)
        equal = fnmatchcase(shown, text) if "*" in text else shown == text
        return equal if operator == "=" else not equal

    return textual


def _select(event: Any, selector: str) -> Any:
    value = event
    for part in re.findall(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]", selector):
        key, index = part
        if key:
            if not isinstance(value, dict) or key not in value:
                return _MISSING
            value = value[key]
        else:
            if not isinstance(value, list) or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
    return value
