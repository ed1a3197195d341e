"""Records of an answer: parsed calls, invalid attempts, the whole parse, streamed call pieces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

__all__ = ["CallDelta", "InvalidCall", "ParsedOutput", "ToolCall", "mint_id"]


def mint_id() -> str:
    """A fresh, unique call id."""
    return f"call_{uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """A well-formed call: tool name, keyword arguments and a minted, unique id."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=mint_id)


@dataclass(frozen=True)
class InvalidCall:
    """A call the model attempted that cannot be used; ``error`` says why."""

    text: str
    error: str
    name: str | None = None
    id: str = field(default_factory=mint_id)


@dataclass(frozen=True)
class ParsedOutput:
    """A parsed answer: text ``content``, valid ``calls`` and ``invalid`` attempts."""

    content: str
    calls: list[ToolCall] = field(default_factory=list)
    invalid: list[InvalidCall] = field(default_factory=list)


@dataclass(frozen=True)
class CallDelta:
    """A piece of a streamed call.

    Attributes:
        index: The call's position in the call list.
        id: The call's id, the same on every piece and in the final parse.
        name: The tool name, on the call's first piece only.
        arguments: The next piece of ``json.dumps(arguments)``.
        error: Set on a last piece when the call turned out invalid (why).
    """

    index: int
    id: str
    name: str | None = None
    arguments: str = ""
    error: str | None = None
