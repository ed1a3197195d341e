"""JSON schemas read the way the call grammar reads them, and their shortest values.

:class:`Schemas` normalizes a schema exactly as :mod:`toolace_integrations.local.grammar` builds its
rules (``$ref``, ``allOf``, ``enum``/``const``, unions, BFCL's type names, inferred types) into a
:class:`Kind`, and gives the shortest text the grammar accepts for it. Pure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolace_integrations.format.grammar_text import _bound, _python_literal
from toolace_integrations.format.schema import TYPE_ALIASES, resolve_ref

__all__ = ["Kind", "Schemas", "entry_head"]

_MAX_NESTING = 64


@dataclass(frozen=True)
class Kind:
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

    def kind(self, schema: Any, root: Mapping[str, Any]) -> Kind:
        """The grammar's reading of ``schema`` (``$ref``s resolve against ``root``)."""
        if not isinstance(schema, Mapping):
            return Kind("any")
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
            return Kind("lit", tuple(v for v in map(_python_literal, values) if v is not None))
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return Kind("union", branches=tuple((s, root) for s in schema[key]))
        kind = schema.get("type")
        if isinstance(kind, list):
            return Kind("union", branches=tuple(({**schema, "type": k}, root) for k in kind))
        if not isinstance(kind, str):
            kind = "object" if "properties" in schema else "array" if "items" in schema else "any"
        kind = TYPE_ALIASES.get(kind, kind)
        if kind == "boolean":
            return Kind("lit", ("True", "False"))
        if kind == "null":
            return Kind("lit", ("None",))
        if kind == "string":
            return Kind("string")
        if kind in ("integer", "number"):
            minimum = schema.get("minimum")
            low = minimum if isinstance(minimum, (int, float)) else -math.inf
            exclusive = schema.get("exclusiveMinimum")
            positive = kind == "integer" and (
                low >= 1 or (isinstance(exclusive, (int, float)) and exclusive >= 0)
            )
            return Kind("number", positive=positive)
        if kind == "array":
            lo, hi = _bound(schema, "minItems") or 0, _bound(schema, "maxItems")
            return Kind("array", items=(schema.get("items"), root), lo=lo, hi=hi, depth=-1)
        if kind == "object":
            properties = schema.get("properties")
            if isinstance(properties, Mapping) and properties:
                required = set(schema.get("required") or ())
                entries = tuple((k, (s, root), k in required) for k, s in properties.items())
                return Kind("object", entries=entries)
            extra = schema.get("additionalProperties")
            if extra is False:
                return Kind("lit", ("{}",))
            inner = (extra, root) if isinstance(extra, Mapping) else None
            return Kind("map", items=inner, depth=1)
        return Kind("any")

    def resolve(self, pair: Any, depth: int = 0) -> Kind:
        """:meth:`kind` of a ``(schema, root)`` pair; ``None`` is any value at ``depth``."""
        return Kind("any", depth=depth) if pair is None else self.kind(pair[0], pair[1])

    def shortest(self, kind: Kind, depth: int = 0) -> str | None:
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

    def entry(self, kind: Kind, index: int, *, args: bool = False, depth: int = 0) -> str | None:
        """The shortest ``"key": value`` (``key=value`` for ``args``) text of entry ``index``."""
        key, pair, _ = kind.entries[index]
        value = self.shortest(self.resolve(pair), depth)
        return None if value is None else entry_head(key, args) + value

    def required_after(
        self, kind: Kind, last: int, *, args: bool = False, depth: int = 0
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


def entry_head(key: str, args: bool) -> str:
    """How an entry starts: ``key=`` in a call, ``"key": `` in a dict."""
    return f"{key}=" if args else f"{json.dumps(key)}: "


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    return resolve_ref(ref, root) or {}
