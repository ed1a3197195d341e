r"""JSON schema validation of model-written arguments, bounded in time whatever the schema.

jsonschema checks ``pattern`` and ``patternProperties`` with Python's backtracking :mod:`re`:
a schema's ``^(a+)+$`` and 30 characters written by the model take minutes, holding the GIL.
Here every pattern runs on RE2, which matches in linear time; a pattern RE2 cannot compile
(look-around, back-references) runs on :mod:`regex` under a timeout; and every keyword checks
one deadline, so schemas whose combinators multiply the work stop too; ``uniqueItems`` hashes
instead of comparing every pair. Past the deadline
:class:`ValidationTimeout` says so, and the parser marks the call invalid.

Notes:
    RE2 is closer than Python's :mod:`re` to ECMA-262, the dialect JSON Schema names: ``\d``
    and ``\w`` are ASCII and ``$`` matches only at the very end. Lone surrogates in strings
    match as U+FFFD. ``unevaluatedProperties`` together with ``patternProperties`` is refused
    (jsonschema would match those patterns with :mod:`re`, out of reach of the deadline).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import re2
import regex
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from toolace_integrations.errors import ToolSpecError

VALIDATION_BUDGET_S = 1.0
"""Seconds one :func:`~toolace_integrations.format.parsing.parse_tool_calls` may spend on
schemas."""

_deadline: ContextVar[float | None] = ContextVar("toolace_validation_deadline", default=None)
_SURROGATE = re.compile("[\ud800-\udfff]")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_SUBSCHEMA = ("items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems",
              "propertyNames", "contains", "not", "if", "then", "else")  # fmt: skip
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")


class ValidationTimeout(Exception):
    """The validation budget ran out before the arguments were fully checked."""


@contextmanager
def validation_budget(seconds: float | None = None) -> Iterator[None]:
    """Give the validations inside one deadline (``VALIDATION_BUDGET_S`` by default).

    Nested uses keep the outer deadline. Usable as a decorator.
    """
    if _deadline.get() is not None:
        yield
        return
    budget = VALIDATION_BUDGET_S if seconds is None else seconds
    token = _deadline.set(time.monotonic() + budget)
    try:
        yield
    finally:
        _deadline.reset(token)


def first_error(validator: Validator, instance: Any) -> ValidationError | None:
    """The most relevant schema violation of ``instance``, or None.

    Raises:
        ValidationTimeout: the budget (see :func:`validation_budget`) ran out.
    """
    with validation_budget():
        error: ValidationError | None = best_match(validator.iter_errors(instance))
        return error


def check_patterns(schema: Mapping[str, Any]) -> None:
    """Compile every pattern of ``schema`` and refuse what validation could not bound.

    Raises:
        ToolSpecError: a pattern no engine compiles, or ``unevaluatedProperties`` used with
            ``patternProperties``.
    """
    stack: list[Any] = [schema]
    keywords: set[str] = set()
    while stack:
        node = stack.pop()
        if not isinstance(node, Mapping):
            continue
        keywords.update(
            key for key in ("patternProperties", "unevaluatedProperties") if key in node
        )
        if isinstance(node.get("pattern"), str):
            _matcher(node["pattern"])
        for pattern in node.get("patternProperties") or ():
            _matcher(pattern)
        stack += [node[key] for key in _SUBSCHEMA if key in node]
        stack += [sub for key in _SUBSCHEMA_MAPS if isinstance(node.get(key), Mapping)
                  for sub in node[key].values()]  # fmt: skip
        stack += [sub for key in _SUBSCHEMA_LISTS if isinstance(node.get(key), list)
                  for sub in node[key]]  # fmt: skip
    if len(keywords) == 2:
        raise ToolSpecError(
            "A tool's schema uses unevaluatedProperties together with patternProperties, which "
            "cannot be checked in bounded time. Use additionalProperties instead."
        )


def _remaining() -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise ValidationTimeout("the time budget for schema checks (VALIDATION_BUDGET_S) ran out")
    return left


@lru_cache(maxsize=1024)
def _matcher(pattern: str) -> Callable[[str], bool]:
    """A search function for ``pattern``: RE2 when it compiles there, else ``regex`` timed."""
    try:
        linear = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error:
        pass
    else:
        return lambda text: linear.search(_SURROGATE.sub("\ufffd", text)) is not None
    try:
        backtracking = regex.compile(pattern)
    except regex.error as error:
        message = f"The pattern {pattern!r} in a tool's schema is not a regular expression: {error}"
        raise ToolSpecError(message) from error

    def search(text: str) -> bool:
        try:
            return backtracking.search(text, concurrent=True, timeout=_remaining()) is not None
        except TimeoutError:
            message = f"matching the pattern {pattern!r} ran past the time budget for schema checks"
            raise ValidationTimeout(message) from None

    return search


_Keyword = Callable[[Any, Any, Any, Mapping[str, Any]], Any]


def _pattern(validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Any:
    if validator.is_type(instance, "string") and not _matcher(pattern)(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _matcher(pattern)(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, extra: Any, instance: Any, schema: Mapping[str, Any]
) -> Any:
    patterns = schema.get("patternProperties") or {}
    if not patterns or not validator.is_type(instance, "object"):
        yield from _BASE_KEYWORDS["additionalProperties"](validator, extra, instance, schema)
        return
    known = schema.get("properties") or {}
    extras = [key for key in instance if key not in known
              and not any(_matcher(pattern)(key) for pattern in patterns)]  # fmt: skip
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif extra is False and extras:
        listed = ", ".join(map(repr, sorted(extras)))
        yield ValidationError(f"{listed} match none of the regexes {sorted(patterns)!r}")


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
    if unique and validator.is_type(instance, "array"):
        keys = [_canonical(item) for item in instance]
        if len(set(keys)) < len(keys):
            yield ValidationError(f"{instance!r} has non-unique elements")


def _canonical(value: Any) -> Any:
    """A hashable key, equal for JSON-equal values (``1`` and ``1.0``; not ``1`` and ``True``)."""
    if isinstance(value, list):
        return ("array", tuple(map(_canonical, value)))
    if isinstance(value, Mapping):
        return ("object", frozenset((key, _canonical(item)) for key, item in value.items()))
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    return ("number" if isinstance(value, int | float) else "string", value)


def _budgeted(keyword: _Keyword) -> _Keyword:
    def check(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
        _remaining()
        return keyword(validator, value, instance, schema)

    return check


_BASE_KEYWORDS: dict[str, _Keyword] = dict(Draft202012Validator.VALIDATORS)
_KEYWORDS = _BASE_KEYWORDS | {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
}
BoundedValidator: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {name: _budgeted(keyword) for name, keyword in _KEYWORDS.items()}
)
"""Draft 2020-12 with linear-time patterns and a deadline check in every keyword."""
