"""BFCL v4's single-turn entries, read from the data files of the installed ``bfcl-eval`` wheel.

Only the JSON files are read: importing ``bfcl_eval``'s code pulls every API vendor's SDK, and
the wheel is meant to be installed with ``--no-deps``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolace_integrations.errors import ToolACEError

__all__ = [
    "AST_CATEGORIES",
    "CATEGORIES",
    "RELEVANCE_CATEGORIES",
    "BFCLDataError",
    "Entry",
    "load_entries",
    "openai_tools",
]

INSTALL = 'pip install --no-deps "bfcl-eval==2026.3.23"'
AST_CATEGORIES = (
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)
RELEVANCE_CATEGORIES = ("irrelevance", "live_irrelevance", "live_relevance")
CATEGORIES = AST_CATEGORIES + RELEVANCE_CATEGORIES
"""The categories scored here, in BFCL's order."""

_UNSUPPORTED = {  # looked up by substring
    "multi_turn": "multi-turn entries run tools in BFCL's simulated environments "
    "(file system, trading, travel), which only BFCL's own runner provides",
    "memory": "memory entries are agentic: they need BFCL's memory back ends",
    "web_search": "web-search entries are agentic: they need live search through BFCL",
    "format_sensitivity": "format-sensitivity entries rewrite BFCL's own prompt, which "
    "our adapters replace with ToolACE's",
}
_HINTS = {
    "python": " Note that the provided function is in Python 3 syntax.",
    "java": " Note that the provided function is in Java 8 SDK syntax.",
    "javascript": " Note that the provided function is in JavaScript syntax.",
}
_OPENAPI_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


class BFCLDataError(ToolACEError):
    """The BFCL data is missing, or a category cannot be scored here."""


@dataclass(frozen=True)
class Entry:
    """One BFCL question.

    Attributes:
        id: BFCL's id, e.g. ``"simple_python_0"``.
        category: its category, e.g. ``"simple_python"``.
        messages: the conversation, ``[{"role": ..., "content": ...}]``.
        functions: BFCL's function documents (BFCL types: ``dict``, ``float``, ``tuple``...).
        ground_truth: the acceptable answers; empty for the relevance categories.
    """

    id: str
    category: str
    messages: tuple[Mapping[str, str], ...]
    functions: tuple[Mapping[str, Any], ...]
    ground_truth: tuple[Mapping[str, Mapping[str, list[Any]]], ...]


def check_categories(categories: Sequence[str]) -> tuple[str, ...]:
    """``categories`` validated, in BFCL's order; unsupported ones refused with the reason."""
    for category in categories:
        if category in CATEGORIES:
            continue
        reason = next((why for key, why in _UNSUPPORTED.items() if key in category), None)
        if reason:
            raise BFCLDataError(f"category {category!r} is not supported: {reason}")
        raise BFCLDataError(f"unknown category {category!r}; choose among {', '.join(CATEGORIES)}")
    return tuple(category for category in CATEGORIES if category in categories)


def data_dir() -> Path:
    """The installed ``bfcl_eval`` package's data folder (found without importing it)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise BFCLDataError(f"the BFCL data is not installed; install it with: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise BFCLDataError(f"{path} is missing; reinstall the BFCL data with: {INSTALL}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_entries(categories: Sequence[str] = CATEGORIES) -> list[Entry]:
    """Every entry of ``categories`` (validated by :func:`check_categories`), in file order."""
    folder = data_dir()
    entries = []
    for category in check_categories(categories):
        answers: dict[str, Any] = {}
        if category in AST_CATEGORIES:
            answer_file = folder / "possible_answer" / f"BFCL_v4_{category}.json"
            answers = {row["id"]: row["ground_truth"] for row in _rows(answer_file)}
        for row in _rows(folder / f"BFCL_v4_{category}.json"):
            (turn,) = row["question"]  # single-turn categories: one turn of messages
            entries.append(
                Entry(
                    id=row["id"],
                    category=category,
                    messages=tuple(turn),
                    functions=tuple(row["function"]),
                    ground_truth=tuple(answers.get(row["id"], ())),
                )
            )
    return entries


def openai_tools(
    functions: Sequence[Mapping[str, Any]], category: str = "simple_python"
) -> list[dict[str, Any]]:
    """BFCL function documents as the OpenAI tools a user would bind, as BFCL prompts them.

    BFCL's types become JSON Schema's (``dict`` -> ``object``, ``float`` -> ``number``,
    ``tuple`` -> ``array``, ``any`` -> ``string``, as BFCL's own function-calling handlers map
    them), and each description gets BFCL's language hint. In the Java and JavaScript
    categories every parameter becomes a string of source text, its type told in its
    description, as BFCL rewrites them at inference.
    """
    language = _language(category)
    tools = []
    for function in functions:
        parameters = copy.deepcopy(dict(function["parameters"]))
        if language != "python":
            _as_source_text(parameters.get("properties", {}), language)
        parameters = _openapi(parameters)
        description = function.get("description", "") + _HINTS[language]
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": function["name"],
                    "description": description,
                    "parameters": parameters,
                },
            }
        )
    return tools


def _language(category: str) -> str:
    if "javascript" in category:
        return "javascript"
    return "java" if "java" in category else "python"


def _as_source_text(properties: dict[str, Any], language: str) -> None:
    """BFCL's Java/JavaScript rewrite: each parameter a string, its type in its description."""
    name = "Java" if language == "java" else "JavaScript"
    for value in properties.values():
        kind = value["type"]
        note = value.get("description", "")
        if kind == "any":
            note += f" This parameter can be of any type of {name} object in string representation."
        else:
            note += f" This is {name} {kind} type parameter in string representation."
        if kind in ("ArrayList", "Array", "array") and "items" in value:
            items = value.pop("items")["type"]
            note += (
                f" The list elements are of type {items}; they are not in string representation."
            )
        if language == "javascript" and kind == "dict" and "properties" in value:
            schema = json.dumps(value.pop("properties"))
            note += (
                " The dictionary entries have the following schema; they are not in string "
                f"representation. {schema}"
            )
        value["description"] = note
        value["type"] = "string"


def _openapi(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_openapi(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            converted[key] = _OPENAPI_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            converted[key] = {name: _openapi(item) for name, item in value.items()}
        else:
            converted[key] = _openapi(value)
    return converted
