"""BFCL v4 data read from the installed ``bfcl-eval`` wheel (data files only, never its code).

``bfcl_eval``'s modules import every API SDK it evaluates; the wheel is installed ``--no-deps``
and only its JSON files are read here.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")


@dataclass(frozen=True)
class Entry:
    """One BFCL question: its tools and its acceptable answers."""

    id: str
    question: str
    functions: list[dict[str, Any]]
    ground_truth: list[dict[str, dict[str, list[Any]]]]


def package_dir() -> Path:
    """The installed ``bfcl_eval`` package folder (found without importing it)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('BFCL data needs: pip install --no-deps "bfcl-eval==2026.3.23"')
    return Path(list(spec.submodule_search_locations)[0])


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_entries(categories: tuple[str, ...] = CATEGORIES) -> list[Entry]:
    """Every entry of ``categories``, in file order, joined with its ground truth."""
    data = package_dir() / "data"
    entries = []
    for category in categories:
        answers = {
            row["id"]: row["ground_truth"]
            for row in _lines(data / "possible_answer" / f"BFCL_v4_{category}.json")
        }
        for row in _lines(data / f"BFCL_v4_{category}.json"):
            (turn,) = row["question"]  # single-turn categories: one turn of user messages
            question = "\n".join(message["content"] for message in turn)
            entries.append(Entry(row["id"], question, row["function"], answers[row["id"]]))
    return entries


def _first(value: Any) -> Any:
    """The first acceptable value; nested dicts (and dicts in lists) hold acceptable lists."""
    if isinstance(value, dict):
        chosen = {key: _first(options[0]) for key, options in value.items() if options}
        return {key: item for key, item in chosen.items() if item != ""}
    if isinstance(value, list):
        return [_first(item) for item in value]
    return value


def first_answer(entry: Entry) -> list[tuple[str, dict[str, Any]]]:
    """The ground truth as calls: each argument's first acceptable value, ``""`` = omitted."""
    calls = []
    for call in entry.ground_truth:
        ((name, options),) = call.items()
        arguments = {key: _first(values[0]) for key, values in options.items() if values}
        calls.append((name, {key: value for key, value in arguments.items() if value != ""}))
    return calls


def llama31_chat_template() -> str:
    """The official Llama-3.1 chat template, as BFCL's Llama-3.1 handler quotes it."""
    source = (package_dir() / "model_handler" / "local_inference" / "llama_3_1.py").read_text()
    start = source.index('"chat_template":') + len('"chat_template":')
    body = source[start : source.index('"""', start)]
    return textwrap.dedent(body).strip()
