"""Framework-neutral tool definitions and ``tool_choice`` semantics.

Adapters convert their framework's tools to OpenAI-shaped function dicts (both LangChain and
LlamaIndex can) and hand them here; prompt rendering, parsing and the grammar all read the
resulting :class:`FunctionSpec` records, so tool handling exists once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from toolace_integrations.errors import ToolChoiceError, ToolSpecError
from toolace_integrations.format.names import is_expressible_name
from toolace_integrations.format.schema import check_parameters

TOOL_NAME_PATTERN = r"[^\W\d][\w.\- ]*\w|[^\W\d]"
"""A regex for the shape of tool names (Unicode word characters joined by ``.``, ``-``, space).

It serves prefix matching while streaming;
:func:`~toolace_integrations.format.names.is_expressible_name` is the exact check.
"""

_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class FunctionSpec:
    """One callable tool: its name, description and JSON schema of keyword arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def properties(self) -> dict[str, Any]:
        """The schema's ``properties``, in declaration order (the positional order)."""
        return dict(self.parameters.get("properties") or {})

    @property
    def required(self) -> list[str]:
        """Names of the required parameters."""
        return list(self.parameters.get("required") or [])


ToolChoiceMode = Literal["auto", "none", "required", "named"]


@dataclass(frozen=True)
class ToolChoice:
    """What the model may answer with.

    ``auto``: text or calls; ``none``: text only; ``required``: at least one call;
    ``named``: calls of ``name`` only. ``parallel=False`` allows at most one call.
    """

    mode: ToolChoiceMode = "auto"
    name: str | None = None
    parallel: bool = True


def normalize_tools(tools: Sequence[Mapping[str, Any]] | None) -> list[FunctionSpec]:
    """Convert OpenAI-shaped tool dicts to :class:`FunctionSpec` records and check them.

    Accepts ``{"type": "function", "function": {...}}`` and the bare ``{"name", "description",
    "parameters"}`` form.

    Every schema problem surfaces here, when tools are bound (see
    :func:`~toolace_integrations.format.schema.check_parameters`), never after generation.

    Raises:
        ToolSpecError: a name or argument name ToolACE cannot spell, duplicate tool names, or
            parameters that are not a usable JSON schema.
    """
    specs: list[FunctionSpec] = []
    seen: set[str] = set()
    for tool in tools or ():
        function = tool.get("function", tool) if tool.get("type") == "function" else tool
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ToolSpecError(f"Tool definition has no name: {dict(tool)!r}.")
        if not is_expressible_name(name):
            raise ToolSpecError(
                f"Tool name {name!r} cannot be written in ToolACE's call syntax "
                "`[name(arg=value)]`. Use letters, digits and underscores (a Python "
                "identifier), joined by single dots, hyphens or spaces."
            )
        if name in seen:
            raise ToolSpecError(f"Two tools are named {name!r}; tool names must be unique.")
        seen.add(name)
        description = function.get("description") or ""
        if not isinstance(description, str) or _SURROGATE.search(description):
            raise ToolSpecError(
                f"Tool {name!r} has a description that is not valid text ({description!r:.80}); "
                "pass a string without lone surrogates."
            )
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        check_parameters(name, parameters)
        specs.append(FunctionSpec(name, description, dict(parameters)))
    return specs


def resolve_tool_choice(
    choice: str | Mapping[str, Any] | bool | None,
    tools: Sequence[FunctionSpec],
    *,
    parallel: bool = True,
) -> ToolChoice:
    """Map every ``tool_choice`` spelling LangChain and OpenAI document to a :class:`ToolChoice`.

    ``None``/``"auto"`` -> auto; ``"none"`` -> none; ``"any"``/``"required"``/``True`` ->
    required; a tool name or ``{"type": "function", "function": {"name": ...}}`` -> named.

    Raises:
        ToolChoiceError: the value is unknown or names a tool that is not bound.
    """
    names = [tool.name for tool in tools]
    if choice is None or choice == "auto" or choice is False:
        return ToolChoice("auto", parallel=parallel)
    if choice == "none":
        return ToolChoice("none", parallel=parallel)
    if choice in ("any", "required") or choice is True:
        if not tools:
            raise ToolChoiceError(f"tool_choice={choice!r} needs at least one bound tool.")
        return ToolChoice("required", parallel=parallel)
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    else:
        name = choice
    if not isinstance(name, str) or name not in names:
        raise ToolChoiceError(
            f"tool_choice={choice!r} is neither 'auto', 'none', 'any'/'required' nor one of "
            f"the bound tools {names}."
        )
    return ToolChoice("named", name=name, parallel=parallel)
