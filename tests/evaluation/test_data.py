"""Reading BFCL's data files and turning its function documents into the tools users bind."""

from __future__ import annotations

import importlib.util

import pytest

from toolace_integrations.errors import ToolACEError
from toolace_integrations.evaluation import data


def test_missing_bfcl_data_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bfcl_eval" else real(name)
    )
    with pytest.raises(ToolACEError, match=r'pip install --no-deps "bfcl-eval==2026\.3\.23"'):
        data.load_entries(["simple_python"])


def test_bfcl_types_become_json_schema_and_get_bfcl_python_hint() -> None:
    function = {
        "name": "geo.route",
        "description": "Plan a route.",
        "parameters": {
            "type": "dict",
            "properties": {
                "stops": {"type": "array", "items": {"type": "tuple", "items": {"type": "float"}}},
                "options": {"type": "dict", "properties": {"mode": {"type": "any"}}},
            },
            "required": ["stops"],
        },
    }
    (tool,) = data.openai_tools([function])
    parameters = tool["function"]["parameters"]
    assert parameters["type"] == "object" and parameters["required"] == ["stops"]
    assert parameters["properties"]["stops"]["items"] == {
        "type": "array",
        "items": {"type": "number"},
    }
    assert parameters["properties"]["options"]["properties"]["mode"] == {"type": "string"}
    hint = "Plan a route. Note that the provided function is in Python 3 syntax."
    assert tool["function"]["description"] == hint
    assert function["parameters"]["type"] == "dict"  # the entry itself is left as it was


def test_every_supported_category_loads_with_its_answers() -> None:
    pytest.importorskip("bfcl_eval")
    entries = data.load_entries()
    by_category = {c: [e for e in entries if e.category == c] for c in data.CATEGORIES}
    assert len(by_category["simple_python"]) == 400 and len(by_category["live_relevance"]) == 16
    assert all(e.ground_truth for c in data.AST_CATEGORIES for e in by_category[c])
    assert all(e.messages for e in entries)
    toolless = {e.category for e in entries if not e.functions}
    assert toolless == {"live_irrelevance"}  # 4 of its entries offer no function at all
