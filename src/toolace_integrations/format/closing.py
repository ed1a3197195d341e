"""The shortest text that closes a grammar-constrained call list, tracked as it is written.

:class:`Closer` reads the answer one character at a time, following the call grammar of
:mod:`toolace_integrations.local.grammar` (``[name(arg=value, ...), ...]``, arguments in schema
order, values spelled as the grammar spells them), and can say at any point which shortest text
turns what is written into a complete answer the grammar accepts: the open string, number, list,
dict, call and call list closed, and every required argument or key still missing given the shortest
value of its schema. The budget logits processor forces that text when tokens run out.

Notes:
    Text outside the grammar's form (prose, other spacing, ``'`` quotes) and unions whose
    branches start alike (two object schemas in one ``anyOf``) end the tracking:
    :meth:`Closer.closing` then returns ``None``. Pure: no torch, no xgrammar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolace_integrations.format.grammar_text import _ANY_DEPTH
from toolace_integrations.format.schema_values import Kind, Schemas, entry_head
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

_NUMBER_CHARS = frozenset("0123456789.eE+-")
_SCALAR_LITERALS = ("True", "False", "None")


@dataclass
class _Frame:
    """One open construct: a call list, a call name, arguments, or a value."""

    kind: str  # list, name, args, object, map, array, string, number, lit, value
    spec: Any = None  # Kind of a value, the FunctionSpec of args, candidates of a name
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
            heads.append((index, entry_head(key, args)))
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

    def _open_value(self, kind: Kind, c: str) -> bool:
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
            self._stack.append(_Frame("string", spec=Kind("string")))
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


def _any_kind(depth: int, c: str) -> Kind | None:
    """The kind of an any-typed value that starts with ``c``, at nesting ``depth``."""
    if c == '"':
        return Kind("string")
    if c.isdigit() or c == "-":
        return Kind("number")
    if c in "TFN":
        return Kind("lit", _SCALAR_LITERALS)
    if depth >= _ANY_DEPTH:
        return None
    if c == "[":
        return Kind("array", items=None, depth=depth)
    if c == "{":
        return Kind("map", items=None, depth=depth + 1)
    return None


def _starts(kind: Kind, c: str) -> bool:
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
