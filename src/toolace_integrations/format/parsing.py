"""Parse ToolACE's pythonic call lists into tool calls (and re-export the call formatter).

ToolACE-8B answers ``[get_weather(city="Paris"), finance.npv(rate=0.1)]`` or plain text. Names
are read textually (they may hold dots, hyphens and spaces); each argument list is parsed with
:mod:`ast` and converted from literals only, so nothing the model writes is ever evaluated.
Argument names may be reserved words (``from="NYC"``, see
:func:`~toolace_integrations.format.names.mask_reserved_names`).

Notes:
    Tolerated: surrounding whitespace, a code fence, Llama's ``<|python_tag|>`` or
    ``<|python_start|>...<|python_end|>`` around the calls, a missing final ``]``, a trailing comma,
    bare calls without brackets (only when the whole text is calls), JSON's ``true``/``false``/
    ``null``, and arithmetic on numbers (``p=1/6``). Tuples and sets become lists (sets in
    source order). Text after the closing ``]`` or fence becomes ``content``. Text starting
    with ``[`` or a fence is a call attempt: a failure there is an :class:`InvalidCall`, never
    silent text. Bounds: 1,000,000 characters, 1000 calls, 100 bracket levels, ints of 1024
    bits; beyond them the call is invalid. Schema checks share a time budget
    (:data:`~toolace_integrations.format.validation.VALIDATION_BUDGET_S`) and patterns run in linear
    time (see :mod:`~toolace_integrations.format.validation`); a call not checked in time is
    invalid.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

from toolace_integrations.errors import ToolSpecError
from toolace_integrations.format.calls import InvalidCall, ParsedOutput, ToolCall
from toolace_integrations.format.formatting import format_tool_calls
from toolace_integrations.format.literals import MAX_DEPTH, PARSE_LOCK, Reject, literal, string_end
from toolace_integrations.format.names import is_expressible_name, mask_reserved_names
from toolace_integrations.format.profiles import PROMPT_PROFILES
from toolace_integrations.format.schema import to_json_schema
from toolace_integrations.format.tools import FunctionSpec, normalize_tools
from toolace_integrations.format.validation import (
    BoundedValidator,
    ValidationTimeout,
    check_patterns,
    first_error,
    validation_budget,
)

__all__ = [
    "CALL_WRAPPERS",
    "MAX_INPUT_CHARS",
    "InvalidCall",
    "ParsedOutput",
    "ToolCall",
    "format_tool_calls",
    "looks_like_call_start",
    "parse_tool_calls",
]

MAX_INPUT_CHARS = 1_000_000
"""Longer outputs are not parsed (one :class:`InvalidCall` if they look like calls)."""

_MAX_CALLS = 1000
_FENCE, _AT_END = "```", " at the end of the output"
CALL_WRAPPERS = tuple(dict.fromkeys(w for p in PROMPT_PROFILES.values() for w in p.call_wrappers))
"""Every profile's call wrappers (opening, closing): a call list may come inside any of them."""
_SPECIAL = re.compile(r"[\"'()\[\]{},]")


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
    openers = (_FENCE, *(opening for opening, _ in CALL_WRAPPERS))
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


def _index(tools: Sequence[Mapping[str, Any] | FunctionSpec]) -> dict[str, FunctionSpec]:
    specs = [t if isinstance(t, FunctionSpec) else normalize_tools([t])[0] for t in tools]
    return {spec.name: spec for spec in specs}


def _unwrap(text: str) -> tuple[str, str, bool]:
    """Strip a call wrapper (:data:`CALL_WRAPPERS`): ``<|python_tag|>...``, Llama-4's pair.

    Returns the body, the text after the closing token, and whether there was a wrapper.
    """
    for opening, closing in CALL_WRAPPERS:
        if text.startswith(opening):
            inner = text[len(opening) :]
            body, _, after = inner.partition(closing) if closing else (inner, "", "")
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


def _split(text: str, start: int) -> _Split:
    """Split a call list at top-level commas in one pass, skipping strings and brackets."""
    segments: list[str] = []
    stack: list[str] = []
    segment_start = position = start
    while (match := _SPECIAL.search(text, position)) is not None:
        char, position = match.group(), match.end()
        if char in "\"'":
            position = string_end(text, match.start())
            if position < 0:
                segments.append(text[segment_start:])
                return _Split(segments, problem=f"an unclosed string{_AT_END}", unclosed=True)
        elif char in "([{":
            stack.append(char)
            if len(stack) > MAX_DEPTH:
                segments.append(text[segment_start:])
                return _Split(segments, problem=f"brackets nested over {MAX_DEPTH} levels deep")
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
                raise Reject(split.problem)
            if not segment:
                if index == last and not (truncated and at_end):
                    continue
                raise Reject("call list not closed" if at_end else "empty entry between commas")
            calls.append(_parse_call(segment, specs))
        except Reject as reject:
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
        raise Reject(f"expected `tool_name(arg=value, ...)`, got {segment[:80]!r}")
    masked, reserved = mask_reserved_names(arguments_text)
    try:
        with PARSE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences such as "\d"
            node = ast.parse("_(" + masked, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise Reject("expected a single call `tool_name(arg=value, ...)`")
        keys = [reserved.pop(k.arg, k.arg) if k.arg else None for k in node.keywords]
        if reserved:  # e.g. a lambda's parameter: refused before any placeholder shows
            word = next(iter(reserved.values()))
            raise Reject(f"invalid call syntax: the reserved word {word!r} is not an argument name")
        positional = [literal(argument) for argument in node.args]
        arguments: dict[str, Any] = {}
        for key, keyword in zip(keys, node.keywords, strict=True):
            if key is None:
                raise Reject("`**` unpacking is not allowed")
            if key in arguments:
                raise Reject(f"argument {key!r} is given twice")
            arguments[key] = literal(keyword.value)
    except (SyntaxError, ValueError) as error:
        raise Reject(f"invalid call syntax: {getattr(error, 'msg', error)}", name) from None
    except (RecursionError, MemoryError):
        raise Reject("call is too deeply nested or complex to parse", name) from None
    except Reject as reject:
        raise Reject(str(reject), name) from None
    spec = None if specs is None else specs.get(name)
    if specs is not None and spec is None:
        raise Reject(f"unknown tool {name!r}; bound tools are {sorted(specs)}", name)
    if positional:
        if spec is None:
            raise Reject("positional arguments need bound tools; write name=value", name)
        parameters = list(spec.properties)
        if len(positional) > len(parameters):
            raise Reject(f"{len(positional)} positional arguments for {parameters}", name)
        if clash := set(parameters[: len(positional)]) & set(arguments):
            raise Reject(f"arguments {sorted(clash)} given by position and keyword", name)
        arguments = dict(zip(parameters, positional, strict=False)) | arguments
    if spec is not None:
        schema_key = json.dumps(spec.parameters, sort_keys=True, default=str)
        try:
            violation = first_error(_validator(schema_key), arguments)
        except ValidationTimeout as timeout:
            message = f"arguments not checked against the schema of {name!r}: {timeout}"
            raise Reject(message, name, late=True) from None
        if violation is not None:
            message = f"arguments do not match the schema of {name!r}: at {violation.json_path}: "
            raise Reject(message + violation.message, name, late=True)
    return ToolCall(name, arguments)


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
