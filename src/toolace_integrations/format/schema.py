"""The one schema dialect: ToolACE's and BFCL's type names, mapped to JSON Schema and checked.

ToolACE's training data and BFCL write ``"type": "dict"``, ``"float"``, ``"tuple"`` or ``"any"``
where JSON Schema says ``object``, ``number``, ``array`` or nothing. Prompt rendering keeps the
tool as written (the model saw those names); parsing and the grammar read
:func:`to_json_schema` of it, so ``"type": "int"`` means the same everywhere, and
:func:`check_parameters` refuses every schema problem when tools are bound, never after
generation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

import jsonschema

from toolace_integrations.errors import ToolSpecError
from toolace_integrations.format.names import is_argument_name

TYPE_ALIASES = {
    "dict": "object", "float": "number", "int": "integer", "str": "string",
    "bool": "boolean", "list": "array", "tuple": "array",
}  # fmt: skip
"""ToolACE/BFCL type names and their JSON Schema equivalents; ``any`` means no constraint."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def to_json_schema(node: Any) -> Any:
    """Copy a schema with ToolACE's and BFCL's type names spelled as JSON Schema's.

    ``dict``/``float``/``int``/``str``/``bool``/``list``/``tuple`` become their JSON names;
    ``any`` (alone or in a type list) drops the type constraint.
    """
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    result = {key: to_json_schema(value) for key, value in node.items()}
    kind = node.get("type")
    if isinstance(kind, str | list):
        listed = [kind] if isinstance(kind, str) else kind
        kinds = [TYPE_ALIASES.get(k, k) if isinstance(k, str) else k for k in listed]
        if "any" in kinds:
            del result["type"]
        else:
            result["type"] = kinds[0] if isinstance(kind, str) else kinds
    return result


def resolve_ref(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The local ``#/...`` target of ``ref`` in ``root``, or None when there is none."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def check_parameters(tool: str, parameters: Any) -> None:
    """Check a tool's parameter schema, so every problem surfaces when tools are bound.

    Results are cached by schema text, as adapters check the same tools on every call.

    Raises:
        ToolSpecError: the schema is not an object schema, is not valid JSON Schema (after the
            type aliases), has an argument name that is not a Python identifier, a ``$ref``
            that points nowhere or only at itself, or text with lone surrogates.
    """
    if not isinstance(parameters, Mapping):
        raise ToolSpecError(f"Tool {tool!r} has parameters {parameters!r}; expected a JSON schema.")
    try:
        text = json.dumps(parameters, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ToolSpecError(f"Tool {tool!r} has parameters that are not JSON: {error}.") from None
    _check_text(tool, text)


@lru_cache(maxsize=1024)
def _check_text(tool: str, text: str) -> None:
    parameters = json.loads(text)
    for where, value in _strings(parameters, "parameters"):
        if _SURROGATE.search(value):
            raise ToolSpecError(
                f"Tool {tool!r} has a lone surrogate in {where} ({value[:60]!r}); it cannot be "
                "encoded as UTF-8 for the model. Remove or replace that character."
            )
    schema: dict[str, Any] = to_json_schema(parameters)
    if schema.get("type", "object") != "object":
        raise ToolSpecError(
            f"Tool {tool!r} has parameters of type {parameters.get('type')!r}; ToolACE passes "
            'keyword arguments, so the schema must be an object ("type": "object" or "dict").'
        )
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "/".join(str(part) for part in error.path) or "top level"
        raise ToolSpecError(
            f"Tool {tool!r}: its parameters are not a valid JSON schema at {where}: {error.message}"
        ) from None
    for argument in schema.get("properties") or {}:
        if not is_argument_name(argument):
            raise ToolSpecError(
                f"Tool {tool!r} has argument {argument!r}, which is not a Python "
                "identifier, so ToolACE cannot pass it as `name=value`. Rename it."
            )
    _check_refs(tool, schema)


def _strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string (keys included) in a JSON-like value, with where it is."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str):
                yield f"{where} key", key
            yield from _strings(value, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            yield from _strings(value, f"{where}[{index}]")


def _direct_refs(schema: Mapping[str, Any]) -> list[str]:
    """Refs a schema is made of without describing a value first: ``$ref`` and ``allOf``."""
    refs = [schema["$ref"]] if isinstance(schema.get("$ref"), str) else []
    for part in schema.get("allOf") or ():
        if isinstance(part, Mapping):
            refs += _direct_refs(part)
    return refs


def _check_refs(tool: str, root: Mapping[str, Any]) -> None:
    """Every ``$ref`` resolves locally, and no chain of refs (through ``allOf``) loops."""
    stack: list[Any] = [root]
    refs: set[str] = set()
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, Mapping):
            stack.extend(value for key, value in node.items() if key not in ("enum", "const"))
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"])
    targets: dict[str, Mapping[str, Any]] = {}
    for ref in sorted(refs):
        target = resolve_ref(ref, root)
        if target is None:
            raise ToolSpecError(
                f"Tool {tool!r} has a $ref {ref!r} that does not resolve inside its parameters; "
                "only local references (#/$defs/...) are supported. Inline the referenced schema."
            )
        targets[ref] = target
    done: set[str] = set()
    for start in sorted(refs):
        path: list[str] = []
        pending: list[tuple[str, bool]] = [(start, True)]
        while pending:
            ref, entering = pending.pop()
            if not entering:
                path.pop()
                done.add(ref)
                continue
            if ref in path:
                raise ToolSpecError(
                    f"Tool {tool!r} has a $ref loop {' -> '.join([*path[path.index(ref) :], ref])}"
                    ": no schema describing a value is ever reached. Point the reference at one."
                )
            if ref in done:
                continue
            path.append(ref)
            pending.append((ref, False))
            pending += [(nxt, True) for nxt in _direct_refs(targets[ref])]
