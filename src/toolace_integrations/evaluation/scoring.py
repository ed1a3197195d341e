"""BFCL's verdicts, reimplemented: the AST checker for Python calls and the relevance rules.

The rules are those of ``bfcl_eval.eval_checker.ast_eval.ast_checker`` (v2026.3.23), rewritten
so that scoring needs neither BFCL's code (which imports every API vendor's SDK) nor ``eval``:
calls arrive already parsed, as ``(name, arguments)`` pairs. The test suite checks this module
against BFCL's own checker, verdict for verdict.

Notes:
    BFCL's rules have quirks we keep on purpose, since the point is BFCL's number: strings are
    compared after dropping spaces and ``,./-_*^`` and lowering case; an ``int`` passes for a
    ``float``; a value of the ground truth's own type passes the type check (BFCL calls it a
    variable); parallel answers are matched greedily, in ground-truth order; names compare
    exactly (ToolACE keeps dotted names, so BFCL's dot-to-underscore rewrite does not apply).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from toolace_integrations.evaluation.languages import (
    JAVA_TYPES,
    JS_TYPES,
    NESTED_TYPES,
    java_value,
    js_value,
)

__all__ = ["Call", "Verdict", "check_ast", "check_relevance"]

Call = tuple[str, Mapping[str, Any]]
"""One parsed call: the function name and its keyword arguments."""

_PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
_NESTED = ("array", "tuple")
_SIMPLE = "simple_function_checker"
_IGNORED_IN_STRINGS = re.compile(r"[ \,\.\/\-\_\*\^]")


@dataclass(frozen=True)
class Verdict:
    """BFCL's judgement of one answer.

    Attributes:
        valid: whether BFCL counts the answer correct.
        error_type: BFCL's error class (e.g. ``"value_error:string"``); ``""`` when valid.
        error: what was wrong, for a reader; ``""`` when valid.
    """

    valid: bool
    error_type: str = ""
    error: str = ""


_VALID = Verdict(True)


def check_relevance(calls: Sequence[Call], category: str) -> Verdict:
    """BFCL's relevance rule: ``irrelevance`` wants no call, ``relevance`` wants at least one."""
    if "irrelevance" in category:
        if calls:
            return Verdict(False, "irrelevance_error:decoder_success", "called a function")
        return _VALID
    if not calls:
        return Verdict(False, "relevance_error:decoder_failed", "no function call")
    return _VALID


def check_ast(
    functions: Sequence[Mapping[str, Any]],
    calls: Sequence[Call],
    ground_truth: Sequence[Mapping[str, Mapping[str, list[Any]]]],
    category: str,
) -> Verdict:
    """Judge parsed ``calls`` against an entry's ``ground_truth`` as BFCL's ``ast_checker`` does.

    Args:
        functions: the entry's BFCL function documents (as in its data file).
        calls: the answer's calls, in the order the model wrote them.
        ground_truth: the entry's possible answers, ``[{name: {param: [acceptable values]}}]``.
        category: the BFCL category; ``parallel`` in it means order-free matching of several
            calls, ``multiple`` one call among several functions, otherwise a single call.
    """
    if len(calls) != len(ground_truth):
        return Verdict(False, f"{_checker(category)}:wrong_count", "wrong number of functions")
    language = "javascript" if "javascript" in category else "java" if "java" in category else ""
    if "parallel" in category:
        return _parallel(functions, calls, ground_truth, language)
    if "multiple" in category:
        expected = next(iter(ground_truth[0]))
        return _single(_description(functions, expected), calls[0], ground_truth[0], language)
    return _single(functions[0], calls[0], ground_truth[0], language)


def _checker(category: str) -> str:
    """The name of BFCL's checker for ``category`` (the prefix of its error types)."""
    if "parallel" in category:
        return "parallel_function_checker_no_order"
    return "multiple_function_checker" if "multiple" in category else "simple_function_checker"


def _description(functions: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    return next(function for function in functions if function["name"] == name)


def _parallel(
    functions: Sequence[Mapping[str, Any]],
    calls: Sequence[Call],
    ground_truth: Sequence[Mapping[str, Mapping[str, list[Any]]]],
    language: str,
) -> Verdict:
    matched: set[int] = set()
    for index, answer in enumerate(ground_truth):
        description = _description(functions, next(iter(answer)))
        errors = []
        for position, call in enumerate(calls):
            if position in matched:
                continue
            verdict = _single(description, call, answer, language)
            if verdict.valid:
                matched.add(position)
                break
            errors.append(f"call {position}: {verdict.error}")
        else:
            return Verdict(
                False,
                "parallel_function_checker_no_order:cannot_find_match",
                f"no call matches answer {index}: " + "; ".join(errors),
            )
    return _VALID


def _single(
    description: Mapping[str, Any],
    call: Call,
    answer: Mapping[str, Mapping[str, list[Any]]],
    language: str,
) -> Verdict:
    possible = next(iter(answer.values()))
    name, arguments = call
    if name != description["name"]:
        return Verdict(
            False, f"{_SIMPLE}:wrong_func_name", f"expected {description['name']!r}, got {name!r}"
        )
    details = description["parameters"]["properties"]
    for param in description["parameters"].get("required", []):
        if param not in arguments:
            return Verdict(
                False, f"{_SIMPLE}:missing_required", f"missing required parameter {param!r}"
            )
    for param, value in arguments.items():
        if param not in details or param not in possible:
            return Verdict(False, f"{_SIMPLE}:unexpected_param", f"unexpected parameter {param!r}")
        verdict = _check_value(param, value, details[param], possible[param], language)
        if not verdict.valid:
            return verdict
    for param, options in possible.items():
        if param not in arguments and "" not in options:
            return Verdict(
                False, f"{_SIMPLE}:missing_optional", f"parameter {param!r} not provided"
            )
    return _VALID


def _check_value(
    param: str, value: Any, detail: Mapping[str, Any], options: list[Any], language: str
) -> Verdict:
    declared = detail["type"]
    if language:  # Java/JavaScript source text, read by the declared type first
        types = JAVA_TYPES if language == "java" else JS_TYPES
        expected = types[declared]
        if type(value) is not str:
            error_type = "type_error:java" if language == "java" else "type_error:js"
            return Verdict(False, error_type, f"{param!r}: {value!r} is not source text")
        nested_name = detail["items"]["type"] if declared in NESTED_TYPES else None
        nested = types[nested_name] if nested_name else None
        read = java_value if language == "java" else js_value
        value = read(value, declared, nested_name) if nested_name else read(value, declared)
    else:
        expected = _PYTHON_TYPES[declared]
        nested = _PYTHON_TYPES[detail["items"]["type"]] if declared in _NESTED else None
    if declared == "tuple" and type(value) is tuple:
        value = list(value)
    if not language and declared == "float" and type(value) is int:
        value = float(value)
    type_error, is_variable = _type_check(value, options, expected, nested)
    if type_error:
        return Verdict(False, type_error, f"{param!r}: {value!r} is not of type {declared}")
    if not is_variable:
        if expected is dict:
            return _dict_check(param, value, options)
        if expected is list and nested is dict:
            return _list_of_dicts_check(param, value, options)
        if expected is str:
            strings = [_standard(option) for option in options if type(option) is str]
            return _membership(param, _standard(value), strings, "value_error:string")
        if expected is list:
            accepted = [_standard_list(option) for option in options]
            return _membership(param, _standard_list(value), accepted, "value_error:list/tuple")
    return _membership(param, value, options, "value_error:others")


def _answer_type(options: Sequence[Any]) -> type | None:
    return next((type(option) for option in options if option != ""), None)


def _type_check(
    value: Any, options: Sequence[Any], expected: type, nested: type | None
) -> tuple[str, bool]:
    """BFCL's ``type_checker``: (its error type, ``""`` if accepted; value is a "variable").

    A value of the ground truth's own type passes as a "variable" (then compared as is); a
    list's items are checked one level deep against some acceptable list.
    """
    answer_type = _answer_type(options)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return "", is_variable
        for option in options:
            if type(option) is not list or all(
                not _type_check(item, option, nested, None)[0] for item in cast(list[Any], value)
            ):
                return "", is_variable
        return ("type_error:nested" if type(value) is answer_type else "type_error:simple"), True
    if answer_type is not None and type(value) is answer_type:
        return "", True
    return "type_error:simple", True


def _standard(text: str) -> str:
    return _IGNORED_IN_STRINGS.sub("", text).lower().replace("'", '"')


def _standard_list(items: Any) -> list[Any]:
    return [_standard(item) if type(item) is str else item for item in items]


def _membership(param: str, value: Any, accepted: Sequence[Any], error_type: str) -> Verdict:
    if value in accepted:
        return _VALID
    return Verdict(False, error_type, f"{param!r}: {value!r} is not among the accepted values")


def _dict_check(param: str, value: Mapping[str, Any], options: Sequence[Any]) -> Verdict:
    verdict = Verdict(False, "dict_checker:unclear", f"{param!r}: no acceptable dictionary")
    for option in options:
        if option == "":
            continue
        verdict = _one_dict(param, value, option)
        if verdict.valid:
            return verdict
    return verdict


def _one_dict(param: str, value: Mapping[str, Any], option: Mapping[str, list[Any]]) -> Verdict:
    for key, item in value.items():
        if key not in option:
            return Verdict(False, "value_error:dict_key", f"{param!r}: unexpected key {key!r}")
        standard = _standard(item) if type(item) is str else item
        accepted = _standard_list(option[key])
        if standard not in accepted:
            return Verdict(False, "value_error:dict_value", f"{param!r}[{key!r}]: {item!r}")
    for key, accepted in option.items():
        if key not in value and "" not in accepted:
            return Verdict(False, "value_error:dict_key", f"{param!r}: missing key {key!r}")
    return _VALID


def _list_of_dicts_check(param: str, value: Sequence[Any], options: Sequence[Any]) -> Verdict:
    verdict = Verdict(False, "list_dict_checker:unclear", f"{param!r}: no acceptable list")
    for option in options:
        if len(value) != len(option):
            verdict = Verdict(False, "value_error:list_dict_count", f"{param!r}: wrong length")
            continue
        for item, expected in zip(value, option, strict=True):
            verdict = _dict_check(param, item, [expected])
            if not verdict.valid:
                break
        else:
            return _VALID
    return verdict
