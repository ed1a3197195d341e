"""The tool list as each checkpoint family reads it in its system prompt (the tool-JSON dialects).

Every dialect writes a tool as ``name``, ``description`` and ``parameters`` with objects spelled
``"type": "dict"``, as ToolACE's training data, BFCL's data and Meta's examples all do; they
differ in key order and layout:

- :func:`toolace_tools`: compact JSON, non-ASCII kept, parameters as ``type``, ``properties``,
  ``required`` (ToolACE's training data).
- :func:`bfcl_tools`: ``json.dumps(functions, indent=4)``, BFCL's ``format_function_doc`` for
  its default ``json`` format (so non-ASCII is escaped), keys in the order given.
- :func:`meta_tools`: four-space indented JSON, parameters as ``type``, ``required``,
  ``properties`` (Meta's Llama-3.2 zero-shot function-calling example).
- :func:`llama4_tools`: as :func:`meta_tools` with the ``required`` list on one line (Meta's
  Llama-4 zero-shot function-calling example).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from toolace_integrations.format.tools import FunctionSpec

_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions")


def tool_schema_for_prompt(tool: FunctionSpec) -> dict[str, Any]:
    """A tool as ToolACE's training data writes it, whatever key order the framework produced.

    Keys come as ``name``, ``description``, ``parameters``; the parameters as ``type``
    (``"dict"``), ``properties``, ``required``, then anything else; every nested schema starts
    with its ``type``. Type names are kept as written (BFCL's ``float``/``tuple``/``any``).
    """
    parameters = _toolace_schema(tool.parameters)
    parameters.setdefault("properties", {})
    parameters.setdefault("required", [])
    head = {key: parameters.pop(key) for key in ("type", "properties", "required")}
    return {"name": tool.name, "description": tool.description, "parameters": head | parameters}


def toolace_tools(tools: Sequence[FunctionSpec]) -> str:
    """Compact JSON, as ToolACE's training data lists tools."""
    return json.dumps([tool_schema_for_prompt(tool) for tool in tools], ensure_ascii=False)


def bfcl_tools(tools: Sequence[FunctionSpec]) -> str:
    """``json.dumps(functions, indent=4)``, as BFCL lists tools in its default system prompt."""
    functions = [
        {
            "name": t.name,
            "description": t.description,
            "parameters": _toolace_schema(t.parameters, ordered=False),
        }
        for t in tools
    ]
    return json.dumps(functions, indent=4)


def meta_tools(tools: Sequence[FunctionSpec]) -> str:
    """Indented JSON with ``required`` before ``properties``, as Meta's Llama-3.2 example."""
    return _dump([_meta_schema(tool, inline_required=False) for tool in tools], 0)


def llama4_tools(tools: Sequence[FunctionSpec]) -> str:
    """As :func:`meta_tools`, the ``required`` list on one line, as Meta's Llama-4 example."""
    return _dump([_meta_schema(tool, inline_required=True) for tool in tools], 0)


class _OneLine(list[Any]):
    """A list written on one line inside indented JSON."""


def _meta_schema(tool: FunctionSpec, *, inline_required: bool) -> dict[str, Any]:
    parameters = tool_schema_for_prompt(tool)["parameters"]
    required = parameters.pop("required")
    head = {"type": parameters.pop("type"), "required": required}
    if inline_required:
        head["required"] = _OneLine(required)
    parameters = head | parameters
    return {"name": tool.name, "description": tool.description, "parameters": parameters}


def _dump(value: Any, depth: int) -> str:
    """JSON indented by four spaces, :class:`_OneLine` lists on one line, non-ASCII kept."""
    if isinstance(value, _OneLine) or not isinstance(value, (dict, list)) or not value:
        return json.dumps(value, ensure_ascii=False)
    inner, outer = "    " * (depth + 1), "    " * depth
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(key, ensure_ascii=False)}: {_dump(item, depth + 1)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{outer}}}"
    items = [f"{inner}{_dump(item, depth + 1)}" for item in value]
    return "[\n" + ",\n".join(items) + f"\n{outer}]"


def _toolace_schema(
    schema: Mapping[str, Any], *, top: bool = True, ordered: bool = True
) -> dict[str, Any]:
    """Copy a JSON schema, dropping pydantic's ``title`` noise and spelling objects ``dict``.

    ``ordered``: each schema starts with ``type``, ``properties``, ``required``; else the keys
    keep their order.
    """
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key == "type" and value == "object":
            converted[key] = "dict"
        elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
            converted[key] = {
                k: _toolace_schema(v, top=False, ordered=ordered) for k, v in value.items()
            }
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            converted[key] = [_toolace_schema(v, top=False, ordered=ordered) for v in value]
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            converted[key] = _toolace_schema(value, top=False, ordered=ordered)
        else:
            converted[key] = value
    if top and "type" not in converted:
        converted = {"type": "dict"} | converted
    if not ordered:
        return converted
    first = [key for key in ("type", "properties", "required") if key in converted]
    return {key: converted[key] for key in first} | converted
