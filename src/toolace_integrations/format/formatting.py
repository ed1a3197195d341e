"""Write tool calls in ToolACE's call syntax: :func:`format_tool_calls`, the inverse of parsing."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from toolace_integrations.errors import CallFormatError
from toolace_integrations.format.calls import ToolCall
from toolace_integrations.format.literals import MAX_DEPTH, MAX_INT_BITS
from toolace_integrations.format.names import is_argument_name, is_expressible_name

__all__ = ["format_tool_calls"]

_SURROGATE = re.compile("[\ud800-\udfff]")


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
                f"keys), at most {MAX_DEPTH} levels deep, ints of at most {MAX_INT_BITS} bits."
            ) from None
        parts.append(f"{name}({rendered})")
    return f"[{', '.join(parts)}]"


def _format_value(value: Any, depth: int = 0) -> str:
    if depth > MAX_DEPTH:
        raise CallFormatError(f"a value is nested over {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
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
