"""Parse ToolACE's pythonic call lists into tool calls, and format calls back.

ToolACE-8B answers ``[get_weather(city="Paris"), finance.npv(rate=0.1)]`` or plain text. Names
are read textually (they may hold dots, hyphens and spaces); each argument list is parsed with
:mod:`ast` and converted from literals only, so nothing the model writes is ever evaluated.

Notes:
    Tolerated: surrounding whitespace, a code fence, Llama's ``<|python_tag|>`` or
    ``<|python_start|>...<|python_end|>`` around the calls, a missing final ``]``, a trailing comma,
    bare calls without brackets (only when the whole text is calls), JSON's ``true``/``false``/
    ``null``, and arithmetic on numbers (``p=1/6``). Tuples and sets become lists (sets in
    source order). Text after the closing ``]`` or fence becomes ``content``. Text starting
    with ``[`` or a fence is a call attempt: a failure there is an :class:`InvalidCall`, never
    silent text. Bounds: 1,000,000 characters, 1000 calls, 100 bracket levels, ints of 1024
    bits; beyond them the call is invalid. Schema checks share a time budget
    (:data:`~toolace_integrations.validation.VALIDATION_BUDGET_S`) and patterns run in linear
    time (see :mod:`~toolace_integrations.validation`); a call not checked in time is invalid.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from uuid import uuid4

import jsonschema
from jsonschema.protocols import Validator

from toolace_integrations.errors import CallFormatError, ToolSpecError
from toolace_integrations.schema import is_argument_name, to_json_schema
from toolace_integrations.tools import FunctionSpec, is_expressible_name, normalize_tools
from toolace_integrations.validation import (
    BoundedValidator,
    ValidationTimeout,
    check_patterns,
    first_error,
    validation_budget,
)

MAX_INPUT_CHARS = 1_000_000
"""Longer outputs are not parsed (one :class:`InvalidCall` if they look like calls)."""

_MAX_DEPTH, _MAX_CALLS, _MAX_INT_BITS = 100, 1000, 1024
_FENCE, _AT_END = "```", " at the end of the output"
_JSON_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}
_PYTHON_TAG, _PYTHON_START, _PYTHON_END = "<|python_tag|>", "<|python_start|>", "<|python_end|>"
_SPECIAL = re.compile(r"[\"'()\[\]{},]")
_STRING_END = {q: re.compile(r"\\[\s\S]|" + q) for q in ('"', "'", '"""', "'''")}
_SURROGATE = re.compile("[\ud800-\udfff]")
_PARSE_LOCK = threading.Lock()
_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip


def _mint_id() -> str:
    return f"call_{uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """A well-formed call: tool name, keyword arguments and a minted, unique id."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=_mint_id)


@dataclass(frozen=True)
class InvalidCall:
    """A call the model attempted that cannot be used; ``error`` says why."""

    text: str
    error: str
    name: str | None = None
    id: str = field(default_factory=_mint_id)


@dataclass(frozen=True)
class ParsedOutput:
    """A parsed answer: text ``content``, valid ``calls`` and ``invalid`` attempts."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    invalid: list[InvalidCall] = field(default_factory=list)


class _Reject(Exception):
    """Why one call is unusable; ``late``: well-formed, but it failed the tool's schema."""

    def __init__(self, message: str, name: str | None = None, *, late: bool = False) -> None:
        super().__init__(message)
        self.name, self.late = name, late


@dataclass
class _Split:
    segments: list[str]
    closed: bool = False  # a top-level "]" ended the list; ``rest`` is the text after it
    rest: str = ""
    problem: str | None = None  # why the last segment cannot be complete
    unclosed: bool = False  # the problem is an unclosed string or bracket


def looks_like_call_start(text: str) -> bool:
    """Whether ``text`` (left-stripped) may begin a call list: ``[``, a fence or part of one.

    Streaming code holds such text back instead of emitting it as content. Bare calls without
    brackets cannot be recognised early; only :func:`parse_tool_calls` finds them.
    """
    stripped = text.lstrip()
    openers = (_FENCE, _PYTHON_TAG, _PYTHON_START)
    return stripped.startswith(("[", *openers)) or (
        stripped != "" and any(opener.startswith(stripped) for opener in openers)
    )


@validation_budget()
def parse_tool_calls(
    text: str,
    tools: Sequence[Mapping[str, Any] | FunctionSpec] | None = None,
    *,
    truncated: bool = False,
) -> ParsedOutput:
    """Split a ToolACE answer into content, valid calls and invalid call attempts.

    Args:
        text: The model's decoded answer. Model text never makes this raise.
        tools: Bound tools (OpenAI dicts or :class:`FunctionSpec`). When given, calls must name
            one of them, positional arguments map to parameters in schema order, and arguments
            are validated against the JSON schema. ``None`` skips those checks.
        truncated: Generation stopped at ``max_new_tokens``; an incomplete call says so.

    Raises:
        ToolSpecError: a tool definition (not model text) is unusable.

    Example:
        >>> out = parse_tool_calls('[get_weather(city="Paris"), finance.npv(rate=0.1)]')
        >>> [(call.name, call.arguments) for call in out.calls]
        [('get_weather', {'city': 'Paris'}), ('finance.npv', {'rate': 0.1})]
    """
    stripped = text.strip()
    if len(text) > MAX_INPUT_CHARS:
        if not looks_like_call_start(stripped):
            return ParsedOutput(stripped)
        error = f"output too long to parse ({len(text)} characters, limit {MAX_INPUT_CHARS})"
        return ParsedOutput("", [], [InvalidCall(text, error)])
    specs = None if tools is None else _index(tools)
    unwrapped, wrapped_after, wrapped = _unwrap(stripped)
    body, after, fenced = _unfence(unwrapped)
    after = "\n".join(part for part in (after, wrapped_after) if part)
    listed = body.startswith("[")
    bare = not (listed or fenced or wrapped)  # bare text is calls only if all of it is calls
    if bare and not body.endswith(")"):
        return ParsedOutput(stripped)
    split = _split(body, 1 if listed else 0)
    if bare and (split.closed or split.problem):
        return ParsedOutput(stripped)
    calls, failures = _collect(split, body, specs, truncated, bare=bare)
    if bare and not all(late for _, late in failures):
        return ParsedOutput(stripped)
    content = "\n".join(part for part in (split.rest.strip(), after) if part)
    return ParsedOutput(content, calls, [failure for failure, _ in failures])


def format_tool_calls(calls: Sequence[ToolCall] | Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Write calls in ToolACE's syntax, ``[f(a=1, b="x"), g()]``; the inverse of parsing.

    Values are bounded as the parser bounds them: 100 levels deep, ints of 1024 bits.

    Raises:
        CallFormatError: a name or argument name the syntax cannot spell, or a value that is
            not JSON-like (str, finite number, bool, None, list, dict with string keys) or is
            beyond those bounds. It is a ``ValueError`` and a ``TypeError``.
    """
    parts = []
    for call in calls:
        name, arguments = (call.name, call.arguments) if isinstance(call, ToolCall) else call
        if not is_expressible_name(name):
            raise CallFormatError(f"Tool name {name!r} cannot be written in ToolACE's call syntax.")
        for key in arguments:
            if not is_argument_name(key):
                raise CallFormatError(
                    f"Argument name {key!r} of {name!r} is not a Python identifier."
                )
        try:
            rendered = ", ".join(
                f"{key}={_format_value(value)}" for key, value in arguments.items()
            )
        except CallFormatError as error:
            raise CallFormatError(
                f"The call {name!r} cannot be written in ToolACE's call syntax: {error}. Pass "
                "JSON-like arguments (str, finite numbers, bool, None, lists, dicts with string "
                f"keys), at most {_MAX_DEPTH} levels deep, ints of at most {_MAX_INT_BITS} bits."
            ) from None
        parts.append(f"{name}({rendered})")
    return f"[{', '.join(parts)}]"


def _format_value(value: Any, depth: int = 0) -> str:
    if depth > _MAX_DEPTH:
        raise CallFormatError(f"a value is nested over {_MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise CallFormatError(f"an integer of {value.bit_length()} bits is too large")
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CallFormatError(f"{value!r} is not a finite number")
        return float.__repr__(value)
    if isinstance(value, str):  # JSON escapes are Python escapes; lone surrogates need \u
        quoted = json.dumps(value, ensure_ascii=False)
        return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", quoted)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_format_value(item, depth + 1) for item in value) + "]"
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise CallFormatError(f"dict keys must be strings, got {list(value)!r}"[:200])
        items = (
            f"{_format_value(key)}: {_format_value(item, depth + 1)}" for key, item in value.items()
        )
        return "{" + ", ".join(items) + "}"
    raise CallFormatError(f"a {type(value).__name__} value is not JSON-like")


def _index(tools: Sequence[Mapping[str, Any] | FunctionSpec]) -> dict[str, FunctionSpec]:
    specs = [t if isinstance(t, FunctionSpec) else normalize_tools([t])[0] for t in tools]
    return {spec.name: spec for spec in specs}


def _unwrap(text: str) -> tuple[str, str, bool]:
    """Strip Llama's call tokens: ``<|python_tag|>...``, ``<|python_start|>...<|python_end|>``.

    Returns the body, the text after ``<|python_end|>``, and whether there was a wrapper.
    """
    if text.startswith(_PYTHON_TAG):
        return text[len(_PYTHON_TAG) :].strip(), "", True
    if text.startswith(_PYTHON_START):
        body, _, after = text[len(_PYTHON_START) :].partition(_PYTHON_END)
        return body.strip(), after.strip(), True
    return text, "", False


def _unfence(text: str) -> tuple[str, str, bool]:
    """Return the fenced body, the text after the closing fence, and whether there was one."""
    if not text.startswith(_FENCE):
        return text, "", False
    inner = text[len(_FENCE) :]
    first_line, newline, remainder = inner.partition("\n")
    if newline and re.fullmatch(r"[\w+.-]*\s*", first_line):  # a language tag
        inner = remainder
    body, fence, after = inner.rpartition(_FENCE)
    return (body.strip(), after.strip(), True) if fence else (inner.strip(), "", True)


def _string_end(text: str, start: int) -> int:
    """Index just past the string literal opening at ``start``, or -1 if it never closes."""
    delimiter = text[start] * 3 if text.startswith(text[start] * 3, start) else text[start]
    position = start + len(delimiter)
    while (match := _STRING_END[delimiter].search(text, position)) is not None:
        if match.group() == delimiter:
            return match.end()
        position = match.end()
    return -1


def _split(text: str, start: int) -> _Split:
    """Split a call list at top-level commas in one pass, skipping strings and brackets."""
    segments: list[str] = []
    stack: list[str] = []
    segment_start = position = start
    while (match := _SPECIAL.search(text, position)) is not None:
        char, position = match.group(), match.end()
        if char in "\"'":
            position = _string_end(text, match.start())
            if position < 0:
                segments.append(text[segment_start:])
                return _Split(segments, problem=f"an unclosed string{_AT_END}", unclosed=True)
        elif char in "([{":
            stack.append(char)
            if len(stack) > _MAX_DEPTH:
                segments.append(text[segment_start:])
                return _Split(segments, problem=f"brackets nested over {_MAX_DEPTH} levels deep")
        elif char in ")]}" and stack:
            stack.pop()  # a mismatched pair is left for ast to report
        elif char == "]":
            segments.append(text[segment_start : match.start()])
            return _Split(segments, closed=True, rest=text[position:])
        elif char == "," and not stack:
            segments.append(text[segment_start : match.start()])
            segment_start = position
            if len(segments) >= _MAX_CALLS:
                return _Split([text[start:]], problem=f"more than {_MAX_CALLS} calls")
    segments.append(text[segment_start:])
    if stack:
        return _Split(segments, problem=f"an unclosed {stack[-1]!r}{_AT_END}", unclosed=True)
    return _Split(segments)


def _collect(
    split: _Split,
    whole: str,
    specs: dict[str, FunctionSpec] | None,
    truncated: bool,
    *,
    bare: bool,
) -> tuple[list[ToolCall], list[tuple[InvalidCall, bool]]]:
    """Parse each segment on its own; ``bare`` stops at the first malformed one."""
    calls: list[ToolCall] = []
    failures: list[tuple[InvalidCall, bool]] = []
    last = len(split.segments) - 1
    for index, raw in enumerate(split.segments):
        segment, at_end = raw.strip(), index == last and not split.closed
        try:
            if index == last and split.problem:
                raise _Reject(split.problem)
            if not segment:
                if index == last and not (truncated and at_end):
                    continue
                raise _Reject("call list not closed" if at_end else "empty entry between commas")
            calls.append(_parse_call(segment, specs))
        except _Reject as reject:
            message, name = str(reject), reject.name
            if truncated and at_end and not reject.late:
                message = f"output was truncated by max_new_tokens mid-call: {message}"
            elif index == last and split.unclosed:
                message = f"incomplete call: {message}"
            if name is None and is_expressible_name(guess := segment.partition("(")[0].strip()):
                name = guess
            failures.append((InvalidCall(segment or whole, message, name), reject.late))
            if bare and not reject.late:
                break
    return calls, failures


def _parse_call(segment: str, specs: dict[str, FunctionSpec] | None) -> ToolCall:
    name, paren, arguments_text = segment.partition("(")
    name = name.strip()
    if not paren or not is_expressible_name(name):
        raise _Reject(f"expected `tool_name(arg=value, ...)`, got {segment[:80]!r}")
    try:
        with _PARSE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences such as "\d"
            node = ast.parse("_(" + arguments_text, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise _Reject("expected a single call `tool_name(arg=value, ...)`")
        positional = [_literal(argument) for argument in node.args]
        arguments: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise _Reject("`**` unpacking is not allowed")
            if keyword.arg in arguments:
                raise _Reject(f"argument {keyword.arg!r} is given twice")
            arguments[keyword.arg] = _literal(keyword.value)
    except (SyntaxError, ValueError) as error:
        raise _Reject(f"invalid call syntax: {getattr(error, 'msg', error)}", name) from None
    except (RecursionError, MemoryError):
        raise _Reject("call is too deeply nested or complex to parse", name) from None
    except _Reject as reject:
        raise _Reject(str(reject), name) from None
    spec = None if specs is None else specs.get(name)
    if specs is not None and spec is None:
        raise _Reject(f"unknown tool {name!r}; bound tools are {sorted(specs)}", name)
    if positional:
        if spec is None:
            raise _Reject("positional arguments need bound tools; write name=value", name)
        parameters = list(spec.properties)
        if len(positional) > len(parameters):
            raise _Reject(f"{len(positional)} positional arguments for {parameters}", name)
        if clash := set(parameters[: len(positional)]) & set(arguments):
            raise _Reject(f"arguments {sorted(clash)} given by position and keyword", name)
        arguments = dict(zip(parameters, positional, strict=False)) | arguments
    if spec is not None:
        schema_key = json.dumps(spec.parameters, sort_keys=True, default=str)
        try:
            violation = first_error(_validator(schema_key), arguments)
        except ValidationTimeout as timeout:
            message = f"arguments not checked against the schema of {name!r}: {timeout}"
            raise _Reject(message, name, late=True) from None
        if violation is not None:
            message = f"arguments do not match the schema of {name!r}: at {violation.json_path}: "
            raise _Reject(message + violation.message, name, late=True)
    return ToolCall(name, arguments)


def _literal(node: ast.expr) -> Any:
    """Convert a literal expression; anything that would need evaluation is rejected."""
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, str | bool):
            return node.value
        return _checked_number(node.value)
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.Name):
        raise _Reject(f"bare name {node.id!r} is not a value (quote strings)")
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_literal(element) for element in node.elts]
    if isinstance(node, ast.Dict):
        result: dict[str, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                raise _Reject("`**` unpacking is not allowed")
            key = _literal(key_node)
            if not isinstance(key, str) or key in result:
                raise _Reject(f"dict keys must be distinct strings, got {key!r}")
            result[key] = _literal(value_node)
        return result
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _number(node.operand)
        return _checked_number(-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _number(node.left), _number(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0 and (abs(left).bit_length() - 1) * right > _MAX_INT_BITS:
                raise _Reject(f"{left}**{right} is too large")
        try:
            return _checked_number(_OPERATORS[type(node.op)](left, right))
        except ArithmeticError as error:
            raise _Reject(f"arithmetic failed: {error}") from None
    kind = type(node).__name__  # e.g. Call, Attribute, Lambda, JoinedStr (f-string), NamedExpr
    raise _Reject(f"{ast.unparse(node)[:80]!r} is not a literal value ({kind})")


def _number(node: ast.expr) -> int | float:
    value = _literal(node)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Reject(f"arithmetic needs numbers, got {value!r}"[:120])
    return value


def _checked_number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Reject(f"{type(value).__name__} values are not supported")
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        raise _Reject(f"integer with more than {_MAX_INT_BITS} bits is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Reject(f"{value!r} is not a finite number")
    return value


@lru_cache(maxsize=512)
def _validator(schema_key: str) -> Validator:
    schema = to_json_schema(json.loads(schema_key))
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        message = f"A tool's parameters are not a valid JSON schema: {error.message}"
        raise ToolSpecError(message) from error
    check_patterns(schema)
    return BoundedValidator(schema)
