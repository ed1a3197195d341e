"""The tool-call grammar as EBNF text: pure and deterministic, so the text can key a cache.

:func:`tool_call_grammar` turns bound tools and a
:class:`~toolace_integrations.format.tools.ToolChoice` into xgrammar's EBNF; the local engine
compiles it (:mod:`toolace_integrations.local.grammar`) and the remote backend sends it to vLLM.
Imports neither torch nor xgrammar.

Notes:
    Enforced from JSON schemas: types, ``enum``/``const``, required and known properties,
    ``minItems``/``maxItems``, non-negative numbers when ``minimum >= 0`` and positive integers
    when ``minimum >= 1`` or ``exclusiveMinimum >= 0``. Not enforced (the parser's schema check
    reports them): other numeric bounds, ``pattern``, ``format``, ``uniqueItems``, ``not``, and
    ``minLength``/``maxLength`` -- counted repetition makes xgrammar's masks 100x slower.
    Numbers have at most 20 integer and 20 fraction digits, a guard against runaway digits.
    Strings exclude control characters and surrogates (xgrammar would accept UTF-8-encoded
    surrogates); text excludes NUL and surrogates.
    Type names are read through :mod:`toolace_integrations.format.schema` (``dict``, ``float``,
    ``any`` ...), as the parser reads them. Recursive ``$ref`` schemas become recursive rules. In
    ``auto``/``none`` mode the text branch only forbids a leading ``[``, code fence, ``<|`` (a
    call wrapper's opening) or whitespace (all that ``str.isspace`` calls whitespace, which the
    parsers strip, so no call hides behind it): prose may still mention a call.
    :func:`text_answer_problem` reads the branch from the same data.
    Compile time grows about as the square of the grammar's size (with a 128k vocabulary, 50
    tools x 200 properties, 765 KB, took 22 s and 100 x 200 took 92 s), so grammars over
    :func:`max_grammar_bytes` are refused; ``benchmarks/bench_grammar_limits.py`` measures it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from toolace_integrations.errors import GrammarTooLargeError, ToolChoiceError, ToolSpecError
from toolace_integrations.format.environment import read_bytes
from toolace_integrations.format.schema import resolve_ref, to_json_schema
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

__all__ = [
    "LEADING_SPACE",
    "call_arguments",
    "max_grammar_bytes",
    "text_answer_problem",
    "tool_call_grammar",
]

DEFAULT_MAX_GRAMMAR_BYTES = 131_072
"""Default limit: under a second of compile time with a 128k-token vocabulary (benchmarks)."""

_ANY_DEPTH = 3
_PRIMITIVES = {
    # ``[...]*`` runs, not ``char*`` over a rule: xgrammar masks them ~500x faster.
    "string": r'"\"" [^"\\\u0000-\u001f\ud800-\udfff]*'
    r' (string-escape [^"\\\u0000-\u001f\ud800-\udfff]*)* "\""',
    "string-escape": r'"\\" (["\\\u0027bfnrt] | "u" unicode-escape)',
    "unicode-escape": "[0-9a-cA-Ce-fE-F] hex hex hex | [dD] [0-7] hex hex",
    "hex": "[0-9a-fA-F]",
    "natural": '"0" | positive',
    "positive": "[1-9] [0-9]{0,19}",
    "integer": '"-"? natural',
    "unsigned-number": 'natural ("." [0-9]{1,20})? ([eE] [-+]? [0-9] [0-9]?)?',
    "number": '"-"? unsigned-number',
    "boolean": '"True" | "False"',
    "null": '"None"',
    "scalar": "string | number | boolean | null",
}

LEADING_SPACE = frozenset(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""The characters ``str.isspace`` (and so the parsers' ``strip``) reads as whitespace."""

# The text branch, as data both the EBNF and :func:`text_answer_problem` are made from: text
# never holds NUL or a surrogate, and starts with neither whitespace the parsers would strip
# (a call could hide behind it), a ``[``, a code fence (one or two backticks may) nor ``<|``,
# the opening of every call wrapper (``<|python_tag|>``, ``<|python_start|>``), which the
# parsers read as calls.
_NEVER_IN_TEXT = (("\x00", "\x00"), ("\ud800", "\udfff"))
_NEVER_IN_TEXT_RE = re.compile("[" + "".join(f"{lo}-{hi}" for lo, hi in _NEVER_IN_TEXT) + "]")
_NOT_FIRST = frozenset("[`") | LEADING_SPACE
_TICK, _MAX_TICKS = "`", 2
_WRAPPER_OPENING = "<|"


def _excluding(chars: frozenset[str]) -> str:
    """An EBNF class of every character except ``chars`` and those text never holds."""
    ranges = sorted([(c, c) for c in chars] + list(_NEVER_IN_TEXT))
    body = "".join(f"\\u{ord(lo):04x}" + (f"-\\u{ord(hi):04x}" if hi != lo else "")
                   for lo, hi in ranges)  # fmt: skip
    return f"[^{body}]"


def text_answer_problem(text: str, *, complete: bool = True) -> str | None:
    """Why the grammar's text branch rejects ``text``, or ``None`` when it accepts it.

    Made from the same data as the branch's EBNF rule, so the remote client's check of what a
    server sent reads the grammar as xgrammar does (a property test compares the two).

    Args:
        text: A text answer.
        complete: ``False`` accepts a prefix of an answer the branch accepts (a cut answer).
    """
    if _NEVER_IN_TEXT_RE.search(text):
        return "it holds a NUL or surrogate character, which the grammar forbids"
    if not text:
        return "it is empty, which the grammar forbids" if complete else None
    ticks = len(text) - len(text.lstrip(_TICK))
    if ticks > _MAX_TICKS:
        return "it starts with a code fence, which the grammar forbids"
    if ticks == 0 and text[0] in _NOT_FIRST:
        return f"it starts with {text[0]!r}, which the grammar forbids (whitespace, '[')"
    if text.startswith(_WRAPPER_OPENING):
        return "it starts with '<|', a call wrapper's opening, which the grammar forbids in text"
    if ticks == len(text) and complete:
        return "it is only backticks, which the grammar forbids"
    return None


def _quote(text: str) -> str:
    """Quote ``text`` as an EBNF literal; control characters get 4-digit ``u`` escapes.

    xgrammar's 2-digit ``x`` escape is greedy: it would read ``x09abc`` as one code point.
    """
    out = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else "\\" + c if c in '"\\' else c
        for c in text
    )
    return f'"{out}"'


def _python_literal(value: Any) -> str | None:
    """Spell a JSON value as the Python literal ToolACE writes, or None if it has none."""
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        items = [_python_literal(item) for item in value]
        return None if None in items else "[" + ", ".join(map(str, items)) + "]"
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        items = [_python_literal(item) for item in value.values()]
        pairs = (
            f"{json.dumps(k, ensure_ascii=False)}: {v}" for k, v in zip(value, items, strict=True)
        )
        return None if None in items else "{" + ", ".join(pairs) + "}"
    return None


def _repeat(lo: int, hi: int | None) -> str:
    """EBNF repetition suffix for ``lo`` to ``hi`` (None: unbounded) occurrences."""
    if hi is None:
        return "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
    return "?" if (lo, hi) == (0, 1) else f"{{{lo},{hi}}}"


# The text branch's rule, made from the data above once _quote and _repeat exist.
_PRIMITIVES["text"] = (
    f"({_excluding(_NOT_FIRST | {_WRAPPER_OPENING[0]})} | {_quote(_TICK)}{_repeat(1, _MAX_TICKS)}"
    f" {_excluding(frozenset(_TICK))}) {_excluding(frozenset())}*"
    f" | {_quote(_WRAPPER_OPENING[0])} ({_excluding(frozenset(_WRAPPER_OPENING[1]))}"
    f" {_excluding(frozenset())}*)?"
)


def _separated(item: str, lo: int, hi: int | None) -> str:
    """Expression for ``lo`` to ``hi`` comma-separated ``item``s."""
    if hi is not None and hi <= 0:
        return '""'
    more = _repeat(max(lo - 1, 0), None if hi is None else hi - 1)
    tail = "" if hi == 1 else f' (", " {item}){more}'
    return f"{item}{tail}" if lo >= 1 else f"({item}{tail})?"


def _bound(schema: Mapping[str, Any], key: str) -> int | None:
    value = schema.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _Builder:
    """Accumulates rules; identical sub-schemas share one rule, refs become (recursive) rules."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._memo: dict[str, str] = {}
        self._objects = 0

    def use(self, name: str) -> str:
        """Add a primitive rule (and what it needs) on first use and return its name."""
        if name not in self.rules:
            self.rules[name] = _PRIMITIVES[name]
            for word in re.findall(r"[a-z][a-z-]+", _PRIMITIVES[name]):
                if word in _PRIMITIVES:
                    self.use(word)
        return name

    def any(self, depth: int = 0) -> str:
        """A Python literal of any type, nested at most ``_ANY_DEPTH`` levels below ``depth``."""
        if depth >= _ANY_DEPTH:
            return self.use("scalar")
        name = f"any-{depth}"
        if name not in self.rules:
            self.rules[name] = ""
            inner = self.any(depth + 1)
            member = f'({self.use("string")} ": " {inner})'
            self.rules[name] = (
                f'scalar | "[" {_separated(inner, 0, None)} "]" '
                f'| "{{" {_separated(member, 0, None)} "}}"'
            )
            self.use("scalar")
        return name

    def ordered(self, prefix: str, entries: Sequence[tuple[str, bool]]) -> str:
        """Join entries in order with ``", "``; optional ones may be skipped, required may not."""
        if not entries:
            return '""'
        rest = [f"{prefix}-rest{k}" for k in range(len(entries))] + [""]
        for k in range(len(entries) - 1, 0, -1):
            expr, required = entries[k]
            piece = f'", " {expr}' if required else f'(", " {expr})?'
            self.rules[rest[k]] = f"{piece} {rest[k + 1]}".rstrip()
        alternatives = []
        for k, (expr, required) in enumerate(entries):
            alternatives.append(f"{expr} {rest[k + 1]}".rstrip())
            if required:
                break
        else:
            alternatives.append('""')
        return " | ".join(alternatives)

    def value(self, schema: Any, root: Mapping[str, Any], scope: str) -> str:
        """Expression for a Python literal matching ``schema`` (refs resolve against ``root``)."""
        if not isinstance(schema, Mapping):
            return self.any()
        ref = schema.get("$ref")
        if isinstance(ref, str):
            key = f"{scope}\0{ref}"
            if key not in self._memo:
                self._memo[key] = name = f"{scope}-ref{len(self._memo)}"
                self.rules[name] = ""
                self.rules[name] = self._body(self._resolve(ref, root), root, scope)
            return self._memo[key]
        text = json.dumps(schema, sort_keys=True, default=repr)
        key = f"{scope}\0{text}" if '"$ref"' in text else text  # refs resolve per tool
        if key not in self._memo:
            body = self._body(schema, root, scope)
            if body in self.rules:
                return body
            self._memo[key] = name = f"v{len(self._memo)}"
            self.rules[name] = body
        return self._memo[key]

    @staticmethod
    def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
        """The local ``#/...`` target of ``ref`` in ``root`` (binding checked that it exists)."""
        return resolve_ref(ref, root) or {}

    def _body(self, schema: Mapping[str, Any], root: Mapping[str, Any], scope: str) -> str:
        """Rule body for ``schema`` (without ``$ref`` at its top)."""
        if isinstance(schema.get("allOf"), list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if isinstance(part, Mapping) and isinstance(part.get("$ref"), str):
                    part = self._resolve(part["$ref"], root)
                for key, val in part.items() if isinstance(part, Mapping) else ():
                    if key in ("properties", "required") and key in merged:
                        val = {**merged[key], **val} if key == "properties" else merged[key] + val
                    merged[key] = val
            return self._body(merged, root, scope)
        if "const" in schema or isinstance(schema.get("enum"), list):
            values = [schema["const"]] if "const" in schema else schema["enum"]
            literals = [lit for lit in map(_python_literal, values) if lit is not None]
            if not literals:
                raise ToolSpecError(f"No value of the enum/const {values!r} is a Python literal.")
            return " | ".join(_quote(lit) for lit in literals)
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return " | ".join(self.value(sub, root, scope) for sub in schema[key])
        kind = schema.get("type")
        if isinstance(kind, list):
            return " | ".join(self.value({**schema, "type": k}, root, scope) for k in kind)
        if not isinstance(kind, str):
            kind = "object" if "properties" in schema else "array" if "items" in schema else "any"
        if kind in ("string", "boolean", "null"):
            return self.use(kind)
        if kind in ("integer", "number"):
            minimum = schema.get("minimum")
            low = minimum if isinstance(minimum, (int, float)) else -math.inf
            if kind == "integer":
                exclusive = schema.get("exclusiveMinimum")
                positive = low >= 1 or (isinstance(exclusive, (int, float)) and exclusive >= 0)
                return self.use("positive" if positive else "natural" if low >= 0 else "integer")
            return self.use("unsigned-number" if low >= 0 else "number")
        if kind == "array":
            item = self.value(schema.get("items"), root, scope)
            lo, hi = _bound(schema, "minItems") or 0, _bound(schema, "maxItems")
            return f'"[" {_separated(item, lo, hi)} "]"'
        if kind == "object":
            properties = schema.get("properties")
            if isinstance(properties, Mapping) and properties:
                required = set(schema.get("required") or ())
                entries = [
                    (
                        f"{_quote(json.dumps(key) + ': ')} {self.value(sub, root, scope)}",
                        key in required,
                    )
                    for key, sub in properties.items()
                ]
                self._objects += 1
                return f'"{{" ({self.ordered(f"o{self._objects}", entries)}) "}}"'
            extra = schema.get("additionalProperties")
            if extra is False:
                return '"{}"'
            inner = self.value(extra, root, scope) if isinstance(extra, Mapping) else self.any(1)
            member = f'({self.use("string")} ": " {inner})'
            return f'"{{" {_separated(member, 0, None)} "}}"'
        return self.any()


def call_arguments(schema: Mapping[str, Any]) -> list[tuple[str, Any, bool]]:
    """A call's arguments as the grammar writes them: name, schema and required, in order.

    ``schema`` is a tool's parameters read through
    :func:`~toolace_integrations.format.schema.to_json_schema`. The budget closer reads calls
    through this too, so both agree on which arguments a call may skip.
    """
    required = set(schema.get("required") or ())
    properties = schema.get("properties") or {}
    return [(name, sub, name in required) for name, sub in properties.items()]


def max_grammar_bytes() -> int:
    """The grammar size limit: ``TOOLACE_MAX_GRAMMAR_BYTES`` or 128 KiB (0 lifts it).

    Raises:
        EnvironmentValueError: the variable is not a size in bytes (see :func:`read_bytes`).
    """
    return read_bytes("TOOLACE_MAX_GRAMMAR_BYTES", DEFAULT_MAX_GRAMMAR_BYTES)


def tool_call_grammar(
    tools: Sequence[FunctionSpec],
    choice: ToolChoice,
    *,
    max_bytes: int | None = None,
    wrappers: Sequence[tuple[str, str]] = (),
) -> str:
    """Build the EBNF grammar of the answers ``choice`` allows over ``tools``.

    Calls are ``[name(arg=value, ...), ...]`` with arguments in schema order (optional ones may be
    skipped, required ones may not) and values typed by each argument's JSON schema; text answers
    start with neither ``[``, a code fence nor whitespace. Equal inputs give equal text.

    Args:
        tools: The bound tools.
        choice: What the model may answer with.
        max_bytes: Refuse grammars longer than this (UTF-8); ``None``: :func:`max_grammar_bytes`,
            ``0``: no limit.
        wrappers: Opening and closing text the model may also write around the call list
            (a prompt profile's ``call_wrappers``, such as Llama-4's ``<|python_start|>``); the
            local engine passes them spelled so that only the wrapper token matches
            (:meth:`~toolace_integrations.local.grammar.GrammarConstraint.wrappers`).

    Raises:
        ToolChoiceError: ``choice`` needs a call but no tool (or not the named tool) is bound.
        GrammarTooLargeError: the grammar is over the limit, so compiling it could take minutes.
    """
    builder = _Builder()
    builder.rules["root"] = ""
    if choice.mode == "named":
        chosen = [(i, t) for i, t in enumerate(tools) if t.name == choice.name]
        if not chosen:
            raise ToolChoiceError(f"tool_choice names {choice.name!r}, which is not bound.")
    else:
        chosen = [] if choice.mode == "none" else list(enumerate(tools))
        if choice.mode == "required" and not chosen:
            raise ToolChoiceError("tool_choice='required' needs at least one bound tool.")
    calls = []
    for index, tool in chosen:
        scope = f"t{index}"
        schema = to_json_schema(tool.parameters)  # the dialect's type names, as the parser reads
        entries = [
            (f"{_quote(arg + '=')} {builder.value(sub, schema, scope)}", required)
            for arg, sub, required in call_arguments(schema)
        ]
        builder.rules[scope] = f'{_quote(tool.name + "(")} ({builder.ordered(scope, entries)}) ")"'
        calls.append(scope)
    alternatives = []
    if calls:
        builder.rules["call"] = " | ".join(calls)
        builder.rules["calls"] = '"[" call (", " call)* "]"' if choice.parallel else '"[" call "]"'
        alternatives.append("calls")
        for opening, closing in wrappers:
            alternatives.append(f"{_quote(opening)} calls {_quote(closing)}".removesuffix(' ""'))
    if choice.mode in ("auto", "none"):
        alternatives.append(builder.use("text"))
    builder.rules["root"] = " | ".join(alternatives)
    grammar = "".join(f"{name} ::= {body}\n" for name, body in builder.rules.items())
    limit = max_grammar_bytes() if max_bytes is None else max_bytes
    if limit and (size := len(grammar.encode())) > limit:
        raise GrammarTooLargeError(size, limit)
    return grammar
