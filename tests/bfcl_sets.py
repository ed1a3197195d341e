"""BFCL v4 tool sets for tests, read from the ``bfcl-eval`` data files (never its checker).

``bfcl-eval`` is installed ``--no-deps`` (see the Makefile); importing its evaluation code
would pull every API SDK, so only its JSON-lines data files are read.
"""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from toolace_integrations.errors import ToolSpecError
from toolace_integrations.tools import FunctionSpec, normalize_tools

CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")
_TYPES = {"dict": "object", "float": "number", "tuple": "array"}


def data_dir() -> Path | None:
    """The folder of BFCL's data files, or ``None`` when ``bfcl-eval`` is not installed."""
    spec = find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def tool_sets(per_category: int) -> list[tuple[str, str, list[FunctionSpec]]]:
    """``(id, question, tools)`` of the first usable entries of each category.

    Entries whose tools this package cannot bind (a name or argument ToolACE cannot spell) are
    skipped, as a user would have to rename them.
    """
    folder = data_dir()
    if folder is None:
        return []
    found = []
    for category in CATEGORIES:
        taken = 0
        for line in (folder / f"BFCL_v4_{category}.json").read_text().splitlines():
            entry = json.loads(line)
            try:
                tools = normalize_tools(entry["function"])
            except ToolSpecError:
                continue
            question = entry["question"][0][-1]["content"]
            found.append((entry["id"], question, tools))
            taken += 1
            if taken == per_category:
                break
    return found


def json_schema(schema: Any) -> Any:
    """BFCL's parameter schema with JSON Schema's type names (for ``jsonschema``)."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: json_schema(value) for key, value in schema.items()}
    kind = schema.get("type")
    if kind == "any":
        del result["type"]
    elif isinstance(kind, str):
        result["type"] = _TYPES.get(kind, kind)
    return result
