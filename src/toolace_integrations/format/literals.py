"""Literal values read from model text, never evaluated: the parser's value reader and bounds."""

from __future__ import annotations

import ast
import math
import operator
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

MAX_DEPTH, MAX_INT_BITS = 100, 1024
"""Bounds on what a call may hold: bracket levels, bits of an int."""

PARSE_LOCK = threading.Lock()
"""Held around :func:`ast.parse` (with its warnings silenced)."""

_JSON_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}
_ESCAPE_LENGTH = {"x": 2, "u": 4, "U": 8}
_OCTAL = frozenset("01234567")
_STRING_END = {q: re.compile(r"\\[\s\S]|" + q) for q in ('"', "'", '"""', "'''")}
_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip


class Reject(Exception):
    """Why one call is unusable; ``late``: well-formed, but it failed the tool's schema."""

    def __init__(self, message: str, name: str | None = None, *, late: bool = False) -> None:
        super().__init__(message)
        self.name, self.late = name, late


def literal(node: ast.expr) -> Any:
    """Convert a literal expression; anything that would need evaluation is rejected."""
    if isinstance(node, ast.Constant):
        if node.value is None or isinstance(node.value, str | bool):
            return node.value
        return _checked_number(node.value)
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    if isinstance(node, ast.Name):
        raise Reject(f"bare name {node.id!r} is not a value (quote strings)")
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [literal(element) for element in node.elts]
    if isinstance(node, ast.Dict):
        result: dict[str, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                raise Reject("`**` unpacking is not allowed")
            key = literal(key_node)
            if not isinstance(key, str) or key in result:
                raise Reject(f"dict keys must be distinct strings, got {key!r}")
            result[key] = literal(value_node)
        return result
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _number(node.operand)
        return _checked_number(-value if isinstance(node.op, ast.USub) else value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _number(node.left), _number(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0 and (abs(left).bit_length() - 1) * right > MAX_INT_BITS:
                raise Reject(f"{left}**{right} is too large")
        try:
            return _checked_number(_OPERATORS[type(node.op)](left, right))
        except ArithmeticError as error:
            raise Reject(f"arithmetic failed: {error}") from None
    kind = type(node).__name__  # e.g. Call, Attribute, Lambda, JoinedStr (f-string), NamedExpr
    raise Reject(f"{ast.unparse(node)[:80]!r} is not a literal value ({kind})")


def _number(node: ast.expr) -> int | float:
    value = literal(node)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Reject(f"arithmetic needs numbers, got {value!r}"[:120])
    return value


def _checked_number(value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Reject(f"{type(value).__name__} values are not supported")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise Reject(f"integer with more than {MAX_INT_BITS} bits is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise Reject(f"{value!r} is not a finite number")
    return value


def string_end(text: str, start: int) -> int:
    """Index just past the string literal opening at ``text[start]``, or -1 if it never closes."""
    delimiter = text[start] * 3 if text.startswith(text[start] * 3, start) else text[start]
    position = start + len(delimiter)
    while (match := _STRING_END[delimiter].search(text, position)) is not None:
        if match.group() == delimiter:
            return match.end()
        position = match.end()
    return -1


def literal_value(text: str) -> tuple[Any] | None:
    """The literal value ``text`` spells, as parsing reads it, or ``None``."""
    try:
        with PARSE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            node = ast.parse("_(" + text + ")", mode="eval").body
        if not isinstance(node, ast.Call) or len(node.args) != 1 or node.keywords:
            return None
        return (literal(node.args[0]),)
    except (SyntaxError, ValueError, Reject, RecursionError, MemoryError):
        return None


def _escape_length(raw: str, at: int) -> int | None:
    """Length of the escape at ``raw[at]`` (a backslash), ``None`` if it may not be complete."""
    if at + 1 >= len(raw):
        return None
    kind = raw[at + 1]
    if kind in _ESCAPE_LENGTH:
        length = 2 + _ESCAPE_LENGTH[kind]
        return length if at + length <= len(raw) else None
    if kind == "N":
        close = raw.find("}", at)
        return None if close < 0 else close - at + 1
    if kind in _OCTAL:
        digits = 1
        while digits < 3 and at + 1 + digits < len(raw) and raw[at + 1 + digits] in _OCTAL:
            digits += 1
        return 1 + digits if digits == 3 or at + 1 + digits < len(raw) else None
    return 2


def decodable_length(raw: str) -> int:
    """How much of a string literal's content ``raw`` can be decoded: up to a partial escape."""
    cut = 0
    while cut < len(raw):
        if raw[cut] != "\\":
            cut += 1
            continue
        length = _escape_length(raw, cut)
        if length is None:
            break
        cut += length
    return cut
