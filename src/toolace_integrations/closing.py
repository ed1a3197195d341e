"""The shortest text that closes a grammar-constrained call list, tracked as it is written.

:class:`Closer` reads the answer one character at a time, following the call grammar of
:mod:`toolace_integrations.grammar` (``[name(arg=value, ...), ...]``, arguments in schema order,
values spelled as the grammar spells them), and can say at any point which shortest text turns
what is written into a complete answer the grammar accepts: the open string, number, list, dict,
call and call list closed, and every required argument or key still missing given the shortest
value of its schema. The budget logits processor forces that text when tokens run out.

Notes:
    Text outside the grammar's form (prose, other spacing, ``'`` quotes) and unions whose
    branches start alike (two object schemas in one ``anyOf``) end the tracking:
    :meth:`Closer.closing` then returns ``None``. Pure: no torch, no xgrammar.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolace_integrations.grammar import _ANY_DEPTH, _TYPE_ALIASES, _bound, _python_literal
from toolace_integrations.tools import FunctionSpec, ToolChoice

_NUMBER_CHARS = frozenset("0123456789.eE+-")
_MAX_NESTING = 64
_SCALAR_LITERALS = ("True", "False", "None")


@dataclass(frozen=True)
class _Kind:
    """A normalized schema: ``kind`` is lit/string/number/array/object/map/any/union."""

    kind: str
    literals: tuple[str, ...] = ()
    positive: bool = False  # integer with minimum >= 1: the shortest is "1"
    items: Any = None  # array: item schema; map: value schema
    lo: int = 0
    hi: int | None = None
    entries: tuple[tuple[str, Any, bool], ...] = ()  # object: (key, schema, required)
    branches: tuple[Any, ...] = ()
    depth: int = 0  # any: nesting level


class Schemas:
    """Normalizes JSON schemas the way the grammar reads them and finds their shortest values."""

    def kind(self, schema: Any, root: Mapping[str, Any]) -> _Kind:
        """The grammar's reading of ``schema`` (``$ref``s resolve against ``root``)."""
        if not isinstance(schema, Mapping):
            return _Kind("any")
        seen: set[str] = set()
        while isinstance(schema.get("$ref"), str) and schema["$ref"] not in seen:
            seen.add(schema["$ref"])
            schema = _resolve(schema["$ref"], root)
        if isinstance(schema.get("allOf"), list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if isinstance(part, Mapping) and isinstance(part.get("$ref"), str):
                    part = _resolve(part["$ref"], root)
                for key, val in part.items() if isinstance(part, Mapping) else ():
                    if key in ("properties", "required") and key in merged:
                        val = {**merged[key], **val} if key == "properties" else merged[key] + val
                    merged[key] = val
            return self.kind(merged, root)
        if "const" in schema or isinstance(schema.get("enum"), list):
            values = [schema["const"]] if "const" in schema else schema["enum"]
            return _Kind("lit", tuple(v for v in map(_python_literal, values) if v is not None))
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return _Kind("union", branches=tuple((s, root) for s in schema[key]))
        kind = schema.get("type")
        if isinstance(kind, list):
            return _Kind("union", branches=tuple(({**schema, "type": k}, root) for k in kind))
        if not isinstance(kind, str):
            kind = "object" if "properties" in schema else "array" if "items" in schema else "any"
        kind = _TYPE_ALIASES.get(kind, kind)
        if kind == "boolean":
            return _Kind("lit", ("True", "False"))
        if kind == "null":
            return _Kind("lit", ("None",))
        if kind == "string":
            return _Kind("string")
        if kind in ("integer", "number"):
            minimum = schema.get("minimum")
            low = minimum if isinstance(minimum, (int, float)) else -math.inf
            exclusive = schema.get("exclusiveMinimum")
            positive = kind == "integer" and (
                low >= 1 or (isinstance(exclusive, (int, float)) and exclusive >= 0)
            )
            return _Kind("number", positive=positive)
        if kind == "array":
            lo, hi = _bound(schema, "minItems") or 0, _bound(schema, "maxItems")
            return _Kind("array", items=(schema.get("items"), root), lo=lo, hi=hi, depth=-1)
        if kind == "object":
            properties = schema.get("properties")
            if isinstance(properties, Mapping) and properties:
                required = set(schema.get("required") or ())
                entries = tuple((k, (s, root), k in required) for k, s in properties.items())
                return _Kind("object", entries=entries)
            extra = schema.get("additionalProperties")
            if extra is False:
                return _Kind("lit", ("{}",))
            inner = (extra, root) if isinstance(extra, Mapping) else None
            return _Kind("map", items=inner, depth=1)
        return _Kind("any")

    def resolve(self, pair: Any, depth: int = 0) -> _Kind:
        """:meth:`kind` of a ``(schema, root)`` pair; ``None`` is any value at ``depth``."""
        return _Kind("any", depth=depth) if pair is None else self.kind(pair[0], pair[1])

    def shortest(self, kind: _Kind, depth: int = 0) -> str | None:
        """The shortest value the grammar accepts for ``kind``; ``None`` if none is finite."""
        if depth > _MAX_NESTING:
            return None
        if kind.kind == "lit":
            return min(kind.literals, key=len) if kind.literals else None
        if kind.kind in ("string", "number", "any", "map"):
            simple = {"string": '""', "any": "0", "map": "{}"}
            return simple.get(kind.kind, "1" if kind.positive else "0")
        if kind.kind == "union":
            options = [self.shortest(self.resolve(b), depth + 1) for b in kind.branches]
            return min((o for o in options if o is not None), key=len, default=None)
        if kind.kind == "array":
            if kind.lo == 0 or (kind.hi is not None and kind.hi <= 0):
                return "[]"
            item = self.shortest(self.resolve(kind.items, kind.depth + 1), depth + 1)
            return None if item is None else "[" + ", ".join([item] * kind.lo) + "]"
        parts = self.required_after(kind, -1, depth=depth + 1)
        return None if parts is None else "{" + ", ".join(parts) + "}"

    def entry(self, kind: _Kind, index: int, *, args: bool = False, depth: int = 0) -> str | None:
        """The shortest ``"key": value`` (``key=value`` for ``args``) text of entry ``index``."""
        key, pair, _ = kind.entries[index]
        value = self.shortest(self.resolve(pair), depth)
        return None if value is None else _head(key, args) + value

    def required_after(
        self, kind: _Kind, last: int, *, args: bool = False, depth: int = 0
    ) -> list[str] | None:
        """The shortest texts of the required entries after entry ``last``."""
        parts = []
        for index in range(last + 1, len(kind.entries)):
            if kind.entries[index][2]:
                text = self.entry(kind, index, args=args, depth=depth)
                if text is None:
                    return None
                parts.append(text)
        return parts


def _head(key: str, args: bool) -> str:
    """How an entry starts: ``key=`` in a call, ``"key": `` in a dict."""
    return f"{key}=" if args else f"{json.dumps(key)}: "


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    node: Any = root if ref.startswith("#") else None
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


@dataclass
class _Frame:
    """One open construct: a call list, a call name, arguments, or a value."""

    kind: str  # list, name, args, object, map, array, string, number, lit, value
    spec: Any = None  # _Kind of a value, the FunctionSpec of args, candidates of a name
    state: str = "start"
    text: str = ""  # name/literal/number/entry-head text written so far
    last: int = -1  # index of the last complete entry (object, args)
    count: int = 0  # complete items (array)
    extra: dict[str, Any] = field(default_factory=dict)


class Closer:
    """Follows a grammar-constrained answer and knows its shortest closing text.

    Args:
        tools: The bound tools.
        choice: The tool choice the grammar enforces (``required``/``named``: calls only).
    """

    def __init__(self, tools: Sequence[FunctionSpec], choice: ToolChoice) -> None:
        self._schemas = Schemas()
        named = [t for t in tools if choice.mode != "named" or t.name == choice.name]
        self._args = {t.name: self._schemas.kind(t.parameters, t.parameters) for t in named}
        self._parallel = choice.parallel
        self._stack: list[_Frame] = []
        self._started = False
        self._done = False
        self._lost = not named

    def feed(self, text: str) -> None:
        """Read more of the answer."""
        for char in text:
            if self._lost:
                return
            self._char(char)

    def closing(self) -> str | None:
        """The shortest text completing the answer, or ``None`` when it cannot be told."""
        if self._lost:
            return None
        if not self._started:
            call = self.shortest_call("")
            return None if call is None else "[" + call + "]"
        parts = []
        for depth in range(len(self._stack) - 1, -1, -1):
            piece = self._close(self._stack[depth], depth == len(self._stack) - 1)
            if piece is None:
                return None
            parts.append(piece)
        return "".join(parts)

    # -- reading ---------------------------------------------------------------------------

    def _char(self, c: str) -> None:
        if self._done or (not self._started and c != "["):
            self._lost = True  # nothing may follow the closing "]" or precede the "["
        elif not self._started:
            self._started = True
            self._stack.append(_Frame("list"))
        elif not self._read(self._stack[-1], c):
            self._lost = True

    def _read(self, f: _Frame, c: str) -> bool:
        reader = getattr(self, f"_read_{f.kind}")
        return bool(reader(f, c))

    def _pop(self, c: str | None) -> bool:
        """Close the top frame; its parent reads ``c`` (if any) after the finished child."""
        self._stack.pop()
        parent = self._stack[-1]
        if parent.kind == "array":
            parent.state, parent.count = "after", parent.count + 1
        elif parent.kind == "map" and parent.state == "key":
            parent.state, parent.text = "colon", ""
        else:
            parent.state = "after"
        return True if c is None else self._read(parent, c)

    def _read_list(self, f: _Frame, c: str) -> bool:
        if f.state in ("start", "sep"):
            frame = _Frame("name")
            self._stack.append(frame)
            return self._read_name(frame, c)
        if f.state == "after" and c == "]":
            self._stack.pop()
            self._done = True
            return True
        if f.state == "after" and c == "," and self._parallel:
            f.state = "comma"
            return True
        if f.state == "comma" and c == " ":
            f.state = "sep"
            return True
        return False

    def _read_name(self, f: _Frame, c: str) -> bool:
        f.text += c
        if not any((name + "(").startswith(f.text) for name in self._args):
            return False
        if f.text[:-1] in self._args and f.text.endswith("("):
            self._stack[-1] = _Frame("args", spec=self._args[f.text[:-1]])
        return True

    def _read_args(self, f: _Frame, c: str) -> bool:
        return self._read_entries(f, c, args=True)

    def _read_object(self, f: _Frame, c: str) -> bool:
        return self._read_entries(f, c, args=False)

    def _heads(self, f: _Frame, args: bool) -> list[tuple[int, str]]:
        """Entries allowed after entry ``f.last``, with the text each starts with."""
        heads = []
        for index in range(f.last + 1, len(f.spec.entries)):
            key, _, required = f.spec.entries[index]
            heads.append((index, _head(key, args)))
            if required:
                break
        return heads

    def _read_entries(self, f: _Frame, c: str, *, args: bool) -> bool:
        if f.state in ("start", "after") and c == (")" if args else "}"):
            if any(required for _, _, required in f.spec.entries[f.last + 1 :]):
                return False
            if not args:
                return self._pop(None)
            self._stack.pop()
            self._stack[-1].state = "after"
            return True
        if f.state == "after" and c == ",":
            f.state, f.text = "comma", ""
            return True
        if f.state == "comma":
            f.state = "head"
            return c == " "
        if f.state in ("start", "head"):
            f.text += c
            heads = [(i, h) for i, h in self._heads(f, args) if h.startswith(f.text)]
            f.state = "head"
            for index, head in heads:
                if head == f.text:
                    f.state, f.last = "value", index
            return bool(heads)
        if f.state == "value":
            return self._open_value(self._schemas.resolve(f.spec.entries[f.last][1]), c)
        return False

    def _open_value(self, kind: _Kind, c: str) -> bool:
        if kind.kind == "union":
            fits = [k for k in map(self._schemas.resolve, kind.branches) if _starts(k, c)]
            if len(fits) != 1:
                return False
            kind = fits[0]
        if kind.kind == "any":
            found = _any_kind(kind.depth, c)
            if found is None:
                return False
            kind = found
        if not _starts(kind, c):
            return False
        frame = _Frame(kind.kind, spec=kind)
        self._stack.append(frame)
        return self._read(frame, c) if kind.kind in ("lit", "number") else True

    def _read_lit(self, f: _Frame, c: str) -> bool:
        if any(lit.startswith(f.text + c) for lit in f.spec.literals):
            f.text += c
            return True
        return f.text in f.spec.literals and self._pop(c)

    def _read_number(self, f: _Frame, c: str) -> bool:
        if c in _NUMBER_CHARS and (c not in "+-" or not f.text or f.text[-1] in "eE"):
            f.text += c
            return True
        return bool(f.text) and f.text[-1].isdigit() and self._pop(c)

    def _read_string(self, f: _Frame, c: str) -> bool:
        escape = f.extra.get("escape")
        if escape is not None:
            escape += c
            done = not escape.startswith("u") or len(escape) == 5
            f.extra["escape"] = None if done else escape
            return True
        if c == "\\":
            f.extra["escape"] = ""
            return True
        if c == '"':
            return self._pop(None)
        return ord(c) >= 0x20

    def _read_array(self, f: _Frame, c: str) -> bool:
        if f.state in ("start", "after") and c == "]":
            return f.count >= f.spec.lo and self._pop(None)
        if f.state == "after" and c == ",":
            f.state = "comma"
            return True
        if f.state == "comma":
            f.state = "item"
            return c == " "
        if f.state in ("start", "item"):
            f.state = "value"
            return self._open_value(self._schemas.resolve(f.spec.items, f.spec.depth + 1), c)
        return False

    def _read_map(self, f: _Frame, c: str) -> bool:
        if f.state in ("start", "after") and c == "}":
            return self._pop(None)
        if f.state == "after" and c == ",":
            f.state = "comma"
            return True
        if f.state == "comma":
            f.state = "member"
            return c == " "
        if f.state in ("start", "member") and c == '"':
            f.state = "key"
            self._stack.append(_Frame("string", spec=_Kind("string")))
            return True
        if f.state == "colon":
            f.text += c
            if f.text == ": ":
                f.state = "value"
            return ": ".startswith(f.text)
        if f.state == "value":
            return self._open_value(self._schemas.resolve(f.spec.items, f.spec.depth), c)
        return False

    # -- closing ---------------------------------------------------------------------------

    def shortest_call(self, prefix: str) -> str | None:
        """The shortest rest of a call whose text so far is ``prefix`` (``""``: any call)."""
        best: str | None = None
        for name, kind in self._args.items():
            if not (name + "(").startswith(prefix):
                continue
            args = self._schemas.required_after(kind, -1, args=True)
            if args is not None:
                call = name[len(prefix) :] + "(" + ", ".join(args) + ")"
                best = call if best is None or len(call) < len(best) else best
        return best

    def _close(self, f: _Frame, top: bool) -> str | None:
        s = self._schemas
        if f.kind == "list":
            call = "" if f.state == "after" or not top else self.shortest_call("")
            lead = " " if f.state == "comma" else ""
            return None if call is None else lead + call + "]"
        if f.kind == "name":
            return self.shortest_call(f.text)
        if f.kind in ("args", "object"):
            return self._close_entries(f, top)
        if f.kind == "string":
            escape = f.extra.get("escape")
            if escape is None:
                return '"'
            return "\\" + '"' if escape == "" else "0" * (5 - len(escape)) + '"'
        if f.kind == "number":
            return "0" if not f.text or f.text[-1] in "-+.eE" else ""
        if f.kind == "lit":
            fits = [lit for lit in f.spec.literals if lit.startswith(f.text)]
            return min(fits, key=len)[len(f.text) :] if fits else None
        if f.kind == "array":
            return self._close_array(f)
        inner = s.shortest(s.resolve(f.spec.items, f.spec.depth))  # a map
        if inner is None:
            return None
        if f.state in ("comma", "member"):
            return (" " if f.state == "comma" else "") + '"": ' + inner + "}"
        if f.state in ("key", "colon"):  # after the key string closes: ": " and a value
            return ": "[len(f.text) if f.state == "colon" else 0 :] + inner + "}"
        return (inner if f.state == "value" and top else "") + "}"

    def _close_array(self, f: _Frame) -> str | None:
        if f.state == "start" and f.spec.lo == 0:
            return "]"
        item = self._schemas.shortest(self._schemas.resolve(f.spec.items, f.spec.depth + 1))
        if item is None:
            return None
        done = f.count + (1 if f.state == "value" else 0)
        missing = max(f.spec.lo - done, 0)
        if f.state in ("start", "item", "comma"):
            lead = " " if f.state == "comma" else ""
            return lead + ", ".join([item] * max(missing, 1)) + "]"
        return "".join(", " + item for _ in range(missing)) + "]"

    def _close_entries(self, f: _Frame, top: bool) -> str | None:
        s, args = self._schemas, f.kind == "args"
        end = ")" if args else "}"
        if f.state in ("start", "after", "value"):
            rest = s.required_after(f.spec, f.last, args=args)
            if rest is None:
                return None
            text = ", ".join(rest)
            if f.state != "start" and text:
                text = ", " + text
            if f.state == "value" and top:
                value = s.shortest(s.resolve(f.spec.entries[f.last][1]))
                if value is None:
                    return None
                text = value + text
            return text + end
        best: str | None = None
        prefix = f.text if f.state == "head" else ""
        for index, head in self._heads(f, args):
            if not head.startswith(prefix):
                continue
            value = s.shortest(s.resolve(f.spec.entries[index][1]))
            rest = s.required_after(f.spec, index, args=args)
            if value is None or rest is None:
                continue
            text = head[len(prefix) :] + value + "".join(", " + r for r in rest)
            best = text if best is None or len(text) < len(best) else best
        if best is None:
            return None
        return (" " if f.state == "comma" else "") + best + end


def _any_kind(depth: int, c: str) -> _Kind | None:
    """The kind of an any-typed value that starts with ``c``, at nesting ``depth``."""
    if c == '"':
        return _Kind("string")
    if c.isdigit() or c == "-":
        return _Kind("number")
    if c in "TFN":
        return _Kind("lit", _SCALAR_LITERALS)
    if depth >= _ANY_DEPTH:
        return None
    if c == "[":
        return _Kind("array", items=None, depth=depth)
    if c == "{":
        return _Kind("map", items=None, depth=depth + 1)
    return None


def _starts(kind: _Kind, c: str) -> bool:
    """Whether a value of ``kind`` may start with ``c``."""
    if kind.kind == "lit":
        return any(lit.startswith(c) for lit in kind.literals)
    if kind.kind == "string":
        return c == '"'
    if kind.kind == "number":
        return c.isdigit() or (c == "-" and not kind.positive)
    if kind.kind == "array":
        return c == "["
    if kind.kind in ("object", "map"):
        return c == "{"
    if kind.kind == "any":
        return _any_kind(kind.depth, c) is not None
    return False
