"""The prompt: system instructions, the tool list, and each role of a conversation.

This module is the one place conversations are rendered; every adapter and backend renders
through it, in the :class:`~toolace_integrations.format.profiles.PromptProfile` of the
checkpoint (ToolACE-8B's by default). It produces role/content messages; the token layout
around them is the profile's chat template, applied by
:class:`~toolace_integrations.core.encoding.PromptEncoder` whatever template the checkpoint
ships (its own template is an explicit option there).

Sources (the default profile; the others name theirs):
    - Team-ACE/ToolACE-8B model card, "Usage": the system prompt, filled with the tool list.
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
from toolace_integrations.format.profiles import TOOLACE, PromptProfile
from toolace_integrations.format.tools import FunctionSpec

_SURROGATE = re.compile("[\ud800-\udfff]")

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
    system_template: str | None = None,
    profile: PromptProfile = TOOLACE,
) -> list[dict[str, str]]:
    """Render a conversation to the role/content messages of ``profile``'s checkpoints.

    The profile's instructions and tool list open the system turn when tools are bound
    (``system_template`` replaces its instructions); the system messages that open the
    conversation follow them in that turn. A system message later in the conversation stays
    where it was, as a system turn of its own. Assistant calls are replayed as call text (after
    the profile's call prefix); tool results go back under ``ipython``, grouped or one turn
    each as the profile says. Contents are stripped, as the chat layouts trim them.

    Raises:
        PromptError: a tool result answers no earlier call and carries no tool name, or a text
            holds a lone surrogate (not valid Unicode, so no tokenizer can encode it).
        CallFormatError: a past call's arguments cannot be written in the call syntax.
    """
    opening = next((i for i, m in enumerate(messages) if m.role != "system"), len(messages))
    own = [m.content.strip() for m in messages[:opening] if m.content.strip()]
    tool_prompt = profile.system_prompt(tools, system_template) if tools else ""
    tool_prompt = tool_prompt.strip() if profile.strip_tool_prompt else tool_prompt
    system_parts = ([tool_prompt] if tool_prompt.strip() else []) + own
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
        if message.role == "tool" and profile.grouped_results:
            pending_results.append(_tool_result(message, call_names))
        elif message.role == "tool":
            rendered.append({"role": TOOL_RESULT_ROLE, "content": _escaped(message.content)})
        elif message.role == "assistant" and message.tool_calls:
            call_names.update({call.id: call.name for call in message.tool_calls})
            replay = {"role": "assistant", "content": format_tool_calls(message.tool_calls)}
            if profile.call_prefix:
                replay["prefix"] = profile.call_prefix
            rendered.append(replay)
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
    """One ``ipython`` turn holding every result as ``[{"name": ..., "results": ...}]``."""
    return {"role": TOOL_RESULT_ROLE, "content": _escaped(json.dumps(results, ensure_ascii=False))}


def _escaped(text: str) -> str:
    r"""``text`` with each lone surrogate written as its JSON escape (``\ud800``)."""
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
