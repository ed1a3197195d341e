"""A tool whose arguments are all enums: any call the grammar allows is schema-valid."""

from __future__ import annotations

from typing import Any

import jsonschema

PARAMETERS = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "green"]},
        "size": {"type": "string", "enum": ["S", "M", "L"]},
    },
    "required": ["color", "size"],
}
PICK = {
    "type": "function",
    "function": {"name": "pick", "description": "Pick a shirt.", "parameters": PARAMETERS},
}


def assert_valid_pick(name: str, arguments: dict[str, Any]) -> None:
    """A call of ``pick`` with arguments its schema accepts."""
    assert name == "pick"
    jsonschema.validate(arguments, PARAMETERS)
