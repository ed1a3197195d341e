"""Answers written from BFCL's ground truth, for the scorer's and the runner's tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema

from toolace_integrations.errors import ToolSpecError
from toolace_integrations.evaluation.data import CATEGORIES, Entry, load_entries, openai_tools
from toolace_integrations.evaluation.scoring import Call, check_ast
from toolace_integrations.format.parsing import format_tool_calls
from toolace_integrations.format.schema import to_json_schema
from toolace_integrations.format.tools import normalize_tools


def _first(options: Any) -> Any:
    """The first acceptable value; nested dicts (and dicts in lists) hold acceptable lists."""
    value = options[0] if isinstance(options, list) else options
    if isinstance(value, dict):
        chosen = {key: _first(item) for key, item in value.items() if item != []}
        return {key: item for key, item in chosen.items() if item != ""}
    if isinstance(value, list):
        return [_first([item]) for item in value]
    return value


def ground_truth_calls(entry: Entry) -> list[Call]:
    """Each ground-truth call with every argument's first acceptable value (``""`` omitted)."""
    calls: list[Call] = []
    for answer in entry.ground_truth:
        ((name, options),) = answer.items()
        arguments = {key: _first(values) for key, values in options.items() if values}
        calls.append((name, {key: value for key, value in arguments.items() if value != ""}))
    return calls


def scripted_answer(entry: Entry) -> str | None:
    """The ToolACE text answering ``entry`` right, or None when its ground truth cannot be said.

    Irrelevance entries get a text answer. Ground truths that break their own schema (a value
    outside an enum, a missing required argument) are None: the grammar would not let the model
    write them; so are entries whose tools the adapters refuse to bind, and the few whose
    first acceptable values BFCL's own rules reject. Arguments go in schema order, the order
    the grammar fixes.
    """
    try:
        tools = normalize_tools(openai_tools(entry.functions, entry.category))
    except ToolSpecError:  # the adapters refuse this tool set (e.g. a parameter named `from`)
        return None
    if "irrelevance" in entry.category:
        return "None of the functions can answer this."
    if not entry.ground_truth:
        return None
    specs = {spec.name: spec for spec in tools}
    calls = []
    for name, arguments in ground_truth_calls(entry):
        spec = specs[name]
        if set(arguments) - set(spec.properties):
            return None
        schema = to_json_schema(spec.parameters)
        validator = jsonschema.Draft202012Validator(schema)
        if any(True for _ in validator.iter_errors(arguments)) or not _declared(arguments, schema):
            return None
        calls.append((name, _in_schema_order(arguments, to_json_schema(spec.parameters))))
    if not check_ast(entry.functions, calls, entry.ground_truth, entry.category).valid:
        return None  # BFCL itself rejects this first reading of its ground truth
    return format_tool_calls(calls)


def _declared(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether every object key is a declared property (the grammar allows no others)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        if properties and set(value) - set(properties):
            return False
        return all(_declared(item, properties.get(key) or {}) for key, item in value.items())
    if isinstance(value, list):
        items = schema.get("items")
        return all(_declared(item, items if isinstance(items, dict) else {}) for item in value)
    return True


def _in_schema_order(value: Any, schema: Mapping[str, Any]) -> Any:
    """Object keys in their schema's property order (the grammar's), at every depth."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        order = {key: index for index, key in enumerate(properties)}
        keys = sorted(value, key=lambda key: order.get(key, len(order)))
        return {key: _in_schema_order(value[key], properties.get(key) or {}) for key in keys}
    if isinstance(value, list):
        items = schema.get("items")
        return [_in_schema_order(item, items if isinstance(items, dict) else {}) for item in value]
    return value


def answerable_sample(per_category: int, longest: int | None = None) -> list[tuple[Entry, str]]:
    """``per_category`` scriptable entries of each category, spread over its file, with answers.

    The k-th pick is the first scriptable entry from the k-th stretch of the file on; ``longest``
    skips answers of more characters (generation time on CPU grows with the answer).
    """
    chosen: list[tuple[Entry, str]] = []
    for category in CATEGORIES:
        entries = load_entries([category])
        picked: list[tuple[Entry, str]] = []
        for start in range(0, len(entries), max(1, len(entries) // per_category)):
            for entry in entries[start:]:
                answer = scripted_answer(entry)
                fits = answer is not None and (longest is None or len(answer) <= longest)
                if answer is not None and fits and entry not in (e for e, _ in picked):
                    picked.append((entry, answer))
                    break
            if len(picked) == per_category:
                break
        chosen += picked
    return chosen
