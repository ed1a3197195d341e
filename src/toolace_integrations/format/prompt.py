"""ToolACE-8B's prompt: system instructions, the tool list, and each role of a conversation.

This module is the one place the prompt format lives; every adapter and backend renders through
it. It produces role/content messages; the token layout around them is
:data:`TOOLACE_CHAT_TEMPLATE`, applied by :class:`~toolace_integrations.core.encoding.PromptEncoder`
whatever template the checkpoint ships (its own template is an explicit option there).

Sources:
    - Team-ACE/ToolACE-8B model card, "Usage": the system prompt below, filled with the tool list.
    - ToolACE training data (Team-ACE/ToolACE on the Hub, ShareGPT format): tools as JSON objects
      ``{"name", "description", "parameters": {"type": "dict", ...}}``; tool results as
      ``[{"name": <tool>, "results": <result>}]``; answers as ``[f(a=1), g(b="x")]``.
    - Llama-3.1's chat template, BFCL and vLLM's ``tool_chat_template_toolace.jinja``: tool results
      go back under the ``ipython`` header. Unlike that vLLM template (which replays arguments
      with ``"%sr"|format`` and yields ``city=San Franciscor``), past calls are replayed with
      :func:`~toolace_integrations.format.parsing.format_tool_calls`, exactly as the model writes
      them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from toolace_integrations.errors import ToolACEError
from toolace_integrations.format.parsing import ToolCall, format_tool_calls
from toolace_integrations.format.tools import FunctionSpec

DEFAULT_SYSTEM_TEMPLATE = (
    "You are an expert in composing functions. You are given a question and a set of possible "
    "functions. \nBased on the question, you will need to make one or more function/tool calls "
    "to achieve the purpose. \nIf none of the function can be used, point it out. If the given "
    "question lacks the parameters required by the function,\nalso point it out. You should only "
    "return the function call in tools call sections.\nIf you decide to invoke any of the "
    "function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, "
    "params_name2=params_value2...), func_name2(params)]\n\nYou SHOULD NOT include any other "
    "text in the response.\nHere is a list of functions in JSON format that you can invoke."
    "\n{functions}\n\n"
)
"""The model card's system prompt; ``{functions}`` is replaced by the JSON tool list."""

_SURROGATE = re.compile("[\ud800-\udfff]")

TOOLACE_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
"""The layout BFCL used when it scored ToolACE-8B (``LlamaHandler._format_prompt``): plain
Llama-3 headers, stripped contents, no "Cutting Knowledge Date" lines, tool results under
``ipython`` as sent. The default layout of every prompt."""

TOOL_RESULT_ROLE = "ipython"

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    """One framework-neutral conversation turn.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: The text. For ``tool`` turns, the tool's result (JSON text stays structured).
        tool_calls: Calls an assistant turn made; replayed in ToolACE's call syntax.
        tool_call_id: For ``tool`` turns, the id of the call this result answers.
        name: For ``tool`` turns, the tool's name when the framework knows it.
    """

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


class PromptError(ToolACEError, ValueError):
    """A conversation that cannot be rendered (for example a result for an unknown call)."""


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


def system_prompt(tools: Sequence[FunctionSpec], template: str = DEFAULT_SYSTEM_TEMPLATE) -> str:
    """The model card's system prompt with the tool list filled in as JSON."""
    functions = json.dumps([tool_schema_for_prompt(tool) for tool in tools], ensure_ascii=False)
    return template.replace("{functions}", functions)


def join_text_blocks(texts: Iterable[str]) -> str:
    """One message's separate text blocks as one text, a newline between blocks.

    As vLLM's OpenAI server and LlamaIndex's ``ChatMessage.content`` join them (LangChain's
    ``message.text`` glues them, which suits stream pieces, not separate parts).
    """
    return "\n".join(texts)


def render_messages(
    messages: Sequence[Message],
    tools: Sequence[FunctionSpec] = (),
    *,
    system_template: str = DEFAULT_SYSTEM_TEMPLATE,
) -> list[dict[str, str]]:
    """Render a conversation to the role/content messages ToolACE-8B was trained on.

    The ToolACE instructions and tool list open the system turn when tools are bound; the
    system messages that open the conversation follow them in that turn. A system message
    later in the conversation stays where it was, as a system turn of its own. Assistant calls
    are replayed as call text, and consecutive tool results become one ``ipython`` turn.
    Contents are stripped, as ToolACE's chat template trims them.

    Raises:
        PromptError: a tool result answers no earlier call and carries no tool name, or a text
            holds a lone surrogate (not valid Unicode, so no tokenizer can encode it).
        CallFormatError: a past call's arguments cannot be written in the call syntax.
    """
    opening = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    system_parts = [system_prompt(tools, system_template)] if tools else []
    system_parts += [m.content for m in messages[:opening]]
    system_parts = [part.strip() for part in system_parts if part.strip()]
    rendered: list[dict[str, str]] = []
    if system_parts:
        rendered.append({"role": "system", "content": "\n\n".join(system_parts)})

    call_names: dict[str, str] = {}
    pending_results: list[dict[str, Any]] = []
    for message in messages[opening:]:
        if message.role != "tool" and pending_results:
            rendered.append(_tool_results_turn(pending_results))
            pending_results = []
        if message.role == "system":
            if message.content.strip():
                rendered.append({"role": "system", "content": message.content.strip()})
            continue
        if message.role == "tool":
            pending_results.append(_tool_result(message, call_names))
        elif message.role == "assistant" and message.tool_calls:
            call_names.update({call.id: call.name for call in message.tool_calls})
            rendered.append({"role": "assistant", "content": format_tool_calls(message.tool_calls)})
        else:
            rendered.append({"role": message.role, "content": message.content.strip()})
    if pending_results:
        rendered.append(_tool_results_turn(pending_results))
    _refuse_surrogates(rendered, bool(tools))
    return rendered


def _refuse_surrogates(rendered: Sequence[Mapping[str, str]], tools: bool) -> None:
    for index, message in enumerate(rendered):
        if (found := _SURROGATE.search(message["content"])) is not None:
            bound = tools and message["role"] == "system"
            source = " (from your system messages or the bound tools)" if bound else ""
            raise PromptError(
                f"The {message['role']} text of rendered message {index}{source} holds a lone "
                f"surrogate {found.group()!r} at character {found.start()}: it is not valid "
                "Unicode and cannot be tokenized. Fix the text where it was decoded (e.g. "
                "bytes.decode(errors='replace'))."
            )


def _tool_result(message: Message, call_names: Mapping[str, str]) -> dict[str, Any]:
    name = call_names.get(message.tool_call_id or "") or message.name
    if not name:
        raise PromptError(
            f"Tool result with tool_call_id={message.tool_call_id!r} answers no earlier "
            "assistant tool call and has no tool name. Pass the AIMessage that made the call, "
            "or set the tool message's name."
        )
    try:
        result: Any = json.loads(message.content)
    except (json.JSONDecodeError, TypeError, RecursionError):  # too deep: sent as text
        result = message.content
    return {"name": name, "results": result}


def _tool_results_turn(results: list[dict[str, Any]]) -> dict[str, str]:
    r"""One ``ipython`` turn; lone surrogates in results keep their JSON escape (``\ud800``)."""
    text = json.dumps(results, ensure_ascii=False)
    escaped = _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return {"role": TOOL_RESULT_ROLE, "content": escaped}


_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions")


def _toolace_schema(schema: Mapping[str, Any], *, top: bool = True) -> dict[str, Any]:
    """Copy a JSON schema, dropping pydantic's ``title`` noise and spelling objects ``dict``."""
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key == "type" and value == "object":
            converted[key] = "dict"
        elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
            converted[key] = {k: _toolace_schema(v, top=False) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            converted[key] = [_toolace_schema(v, top=False) for v in value]
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            converted[key] = _toolace_schema(value, top=False)
        else:
            converted[key] = value
    if top:
        converted.setdefault("type", "dict")
    first = [key for key in ("type", "properties", "required") if key in converted]
    return {key: converted[key] for key in first} | converted
