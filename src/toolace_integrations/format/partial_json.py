"""Prefixes of ``json.dumps(arguments)`` as streamed calls carry them, read the frameworks' way.

Pure helpers for the adapters: :func:`partial_arguments` shows a prefix as the dict it spells
so far (LlamaIndex's ``ToolCallBlock.tool_kwargs``), :func:`breaking_suffix` marks a streamed
call that turned out invalid (LangChain sums ``tool_call_chunks`` and cannot take pieces back).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["breaking_suffix", "partial_arguments"]


def breaking_suffix(prefix: str) -> str:
    """Text that makes ``prefix`` + it unreadable as JSON, even to lenient partial parsers.

    A streamed call that turns out invalid cannot take its argument pieces back; frameworks that
    sum pieces (LangChain's ``tool_call_chunks``) then read the sum as an invalid call. The
    suffix closes an open string and adds a closing bracket that matches nothing.
    """
    stack, in_string, escaped = [], False, False
    for char in prefix:
        if in_string:
            in_string = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return ('"' if in_string else "") + ("}" if stack and stack[-1] == "[" else "]")


def partial_arguments(prefix: str) -> dict[str, Any]:
    """The arguments a prefix of ``json.dumps(arguments)`` shows so far, as a dict.

    An open string is shown as written so far, a key without its value is left out. For
    frameworks that read partial calls as dicts (LlamaIndex's ``ToolCallBlock.tool_kwargs``).
    """
    stack: list[str] = []
    cuts: list[tuple[int, str]] = []  # where a prefix ends between values, and its closers
    in_string = escaped = False
    for position, char in enumerate(prefix):
        if in_string:
            in_string = escaped or char != '"'
            escaped = not escaped and char == "\\"
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
            cuts.append((position + 1, "".join(reversed(stack))))
        elif char in "}]" and stack:
            stack.pop()
        elif char == ",":
            cuts.append((position, "".join(reversed(stack))))
    closers = "".join(reversed(stack))
    candidates = [prefix + '"' + closers] if in_string and not escaped else []
    candidates += [prefix + closers] + [prefix[:at] + close for at, close in reversed(cuts)]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        return value if isinstance(value, dict) else {}
    return {}
