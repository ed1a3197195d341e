"""Answers written from BFCL's ground truth, for the scorer's and the runner's tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsonschema

from toolace_integrations.errors import ToolSpecError
from toolace_integrations.evaluation.data import CATEGORIES, Entry, load_entries, openai_tools
from toolace_integrations.evaluation.scoring import Call, check_ast
from toolace_integrations.format.parsing import format_tool_calls
from toolace_integrations.format.schema import to_json_schema
from toolace_integrations.format.tools import FunctionSpec, normalize_tools


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
    """The ToolACE text answering ``entry`` right, or None when its ground truth cannot be said."""
    return script(entry)[0]


def script(entry: Entry) -> tuple[str | None, str]:
    """``(answer, "")`` for an entry a model can answer right, else ``(None, why not)``.

    Irrelevance entries get a text answer; live_relevance entries (no ground truth: any call
    counts) a call of their first tool with the simplest schema-valid required values. In the
    Java and JavaScript categories each value is written as the source text BFCL's readers take
    back (``true``, ``5L``, ``new ArrayList<>(Arrays.asList(1, 2))``). Ground truths that break
    their own schema (a value outside an enum, a missing required argument, an undeclared key)
    cannot be written under the grammar, and a few first acceptable values BFCL's own rules
    reject. Arguments go in schema order, the order the grammar fixes.
    """
    try:
        tools = normalize_tools(openai_tools(entry.functions, entry.category))
    except ToolSpecError as error:  # nothing in BFCL v4 today; say so if it comes back
        return None, f"the adapters refuse its tools: {error}"
    if "irrelevance" in entry.category:
        return "None of the functions can answer this.", ""
    if entry.category == "live_relevance":
        return _relevant_call(tools[0])
    if not entry.ground_truth:
        return None, "no ground truth to script (any call counts)"
    specs = {spec.name: spec for spec in tools}
    documents = {function["name"]: function for function in entry.functions}
    calls = []
    for name, arguments in ground_truth_calls(entry):
        spec = specs[name]
        if set(arguments) - set(spec.properties):
            return None, "the ground truth passes an undeclared argument"
        if "java" in entry.category:  # simple_java, simple_javascript
            declared = documents[name]["parameters"]["properties"]
            language = "javascript" if "javascript" in entry.category else "java"
            arguments = {k: _source(v, declared[k], language) for k, v in arguments.items()}
        schema = to_json_schema(spec.parameters)
        validator = jsonschema.Draft202012Validator(schema)
        broken = next(iter(validator.iter_errors(arguments)), None)
        if broken is not None:
            return None, f"the ground truth breaks its schema ({broken.validator})"
        if not _declared(arguments, schema):
            return None, "the ground truth passes an undeclared object key"
        calls.append((name, _in_schema_order(arguments, schema)))
    if not check_ast(entry.functions, calls, entry.ground_truth, entry.category).valid:
        return None, "BFCL rejects the first acceptable value it lists"
    return format_tool_calls(calls), ""


def _relevant_call(tool: FunctionSpec) -> tuple[str | None, str]:
    """A call of ``tool`` with each required argument's simplest schema-valid value."""
    schema = to_json_schema(tool.parameters)
    properties = schema.get("properties") or {}
    arguments = {key: _simplest(properties.get(key) or {}) for key in schema.get("required", [])}
    if next(iter(jsonschema.Draft202012Validator(schema).iter_errors(arguments)), None):
        return None, "no simple value fits its required arguments"
    return format_tool_calls([(tool.name, _in_schema_order(arguments, schema))]), ""


def _simplest(schema: Mapping[str, Any]) -> Any:
    """The first enum value, else a small value of the schema's type."""
    if schema.get("enum"):
        return schema["enum"][0]
    minimum = schema.get("minimum")
    simplest = {"integer": max(1, int(minimum or 1)), "number": 1.5, "boolean": True}
    return {**simplest, "array": [], "object": {}}.get(schema.get("type", ""), "x")


def _source(value: Any, declared: Mapping[str, Any], language: str) -> Any:
    """``value`` as the Java or JavaScript source text BFCL reads back as it (others as given)."""
    kind, items = declared["type"], (declared.get("items") or {}).get("type")
    if isinstance(value, str) and kind not in ("ArrayList", "Array", "HashMap", "array", "dict"):
        return value
    if language == "java":
        if kind == "ArrayList" and isinstance(value, list):
            inner = ", ".join(_java_item(item, items) for item in value)
            return f"new ArrayList<>(Arrays.asList({inner}))"
        if kind == "Array" and isinstance(value, list):
            inner = ", ".join(_java_item(item, items, quote=False) for item in value)
            return f"new {items or 'Object'}[]{{{inner}}}"
        if kind == "HashMap" and isinstance(value, dict):
            puts = " ".join(f'put("{k}", {_java_item(item, None)});' for k, item in value.items())
            return f"new HashMap<String, Object>() {{{{ {puts} }}}}"
        return _java_item(value, kind, quote=False)
    if kind == "Bigint" and isinstance(value, int):
        return f"{value}n"
    return _js_item(value, quote=False)


def _java_item(value: Any, kind: str | None, *, quote: bool = True) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if quote and kind in (None, "String", "char") else value
    suffix = {"long": "L", "float": "f"}.get(kind or "", "")
    return f"{value}{suffix}"


def _js_item(value: Any, *, quote: bool = True) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{value}'" if quote else value
    if isinstance(value, list):
        return "[" + ", ".join(_js_item(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_js_item(item)}" for key, item in value.items()) + "}"
    return str(value)


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


def answerable_sample(
    per_category: int, keep: Callable[[Entry], bool] = lambda entry: True
) -> list[tuple[Entry, str]]:
    """``per_category`` scriptable entries of each category, spread over its file, with answers.

    The k-th pick is the first scriptable entry that ``keep`` accepts from the k-th stretch of
    the file on.
    """
    chosen: list[tuple[Entry, str]] = []
    for category in CATEGORIES:
        entries = load_entries([category])
        picked: list[tuple[Entry, str]] = []
        for start in range(0, len(entries), max(1, len(entries) // per_category)):
            for entry in entries[start:]:
                answer = scripted_answer(entry)
                if answer is not None and keep(entry) and entry not in (e for e, _ in picked):
                    picked.append((entry, answer))
                    break
            if len(picked) == per_category:
                break
        chosen += picked
    return chosen
