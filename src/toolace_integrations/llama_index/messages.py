"""LlamaIndex messages, tools and responses to and from the core's records."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    ChatResponse,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
    VideoBlock,
)

from toolace_integrations.core.chat import ChatEvent, ChatTurn
from toolace_integrations.format.parsing import ToolCall
from toolace_integrations.format.partial_json import partial_arguments
from toolace_integrations.format.prompt import Message, PromptError, Role, join_text_blocks

_ROLES: dict[MessageRole, Role] = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.CHATBOT: "assistant",
    MessageRole.MODEL: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}
_NON_TEXT_BLOCKS = (ImageBlock, AudioBlock, VideoBlock, DocumentBlock)


def openai_tool(tool: Any) -> Any:
    """A LlamaIndex tool as an OpenAI function dict; dicts pass through.

    The tool keeps its own name (``to_openai_tool`` would rewrite ``Market Trends API``), since
    ToolACE can spell it and agents look the called tool up by that name.
    """
    metadata = getattr(tool, "metadata", None)
    if metadata is None:
        return tool
    parameters = metadata.get_parameters_dict()
    return {"name": metadata.name, "description": metadata.description, "parameters": parameters}


def to_message(message: ChatMessage) -> Message:
    """A LlamaIndex message as the core's :class:`Message`; text only."""
    blocks = [b for b in message.blocks if isinstance(b, _NON_TEXT_BLOCKS)]
    if blocks:
        raise PromptError(
            f"ToolACE-8B reads text only, but a {message.role.value} message holds a "
            f"{type(blocks[0]).__name__}. Describe it in text or use a multimodal model."
        )
    role = _ROLES[message.role]
    text = join_text_blocks(b.text for b in message.blocks if isinstance(b, TextBlock))
    extra = message.additional_kwargs
    if role == "tool":
        name = extra.get("name") or extra.get("tool_name")
        return Message("tool", text, tool_call_id=extra.get("tool_call_id"), name=name)
    if role == "assistant":
        return Message("assistant", text, tool_calls=tuple(tool_calls(message)))
    return Message(role, text)


def tool_calls(message: ChatMessage) -> list[ToolCall]:
    """Calls from ``ToolCallBlock`` records, else from OpenAI-shaped ``additional_kwargs``."""
    calls = [
        _tool_call(b.tool_name, b.tool_kwargs, b.tool_call_id)
        for b in message.blocks
        if isinstance(b, ToolCallBlock)
    ]
    if calls:
        return calls
    for raw in message.additional_kwargs.get("tool_calls") or ():
        function = _field(raw, "function") or raw
        calls.append(
            _tool_call(_field(function, "name"), _field(function, "arguments"), _field(raw, "id"))
        )
    return calls


def _tool_call(name: Any, arguments: Any, call_id: Any) -> ToolCall:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError) as error:
            raise PromptError(
                f"Arguments of the {name!r} call are not JSON a tool can take "
                f"({type(error).__name__}: {error}); pass them as a JSON object."
            ) from error
    arguments = dict(arguments or {})
    return (
        ToolCall(str(name), arguments, str(call_id)) if call_id else ToolCall(str(name), arguments)
    )


def _field(record: Any, key: str) -> Any:
    return record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)


def chat_response(
    event: ChatEvent, text: str, calls: dict[str, tuple[int, str, str]] | None = None
) -> ChatResponse:
    """A response for ``event``: the text so far and, while streaming, the calls so far.

    ``calls`` carries the streamed calls between events; a partial response holds a
    ``ToolCallBlock`` per call with the arguments parsed so far (as llama-index's OpenAI LLM
    streams them) and the same calls in OpenAI's ``additional_kwargs["tool_calls"]`` shape with
    the JSON written so far (llama-index's streaming structured output reads that key); the last
    response holds the complete, validated calls.
    """
    result = event.result
    if result is None:
        calls = {} if calls is None else calls
        for piece in event.calls:
            index, name, arguments = calls.get(piece.id, (piece.index, piece.name or "", ""))
            calls[piece.id] = (index, name, arguments + piece.arguments)
        ordered = sorted(calls.items(), key=lambda item: item[1][0])
        blocks: list[Any] = [TextBlock(text=text)]
        blocks += [
            ToolCallBlock(tool_call_id=i, tool_name=name, tool_kwargs=partial_arguments(arguments))
            for i, (_, name, arguments) in ordered
        ]
        extra: dict[str, Any] = {}
        if calls:
            extra["tool_calls"] = [_openai_call(i, name, a) for i, (_, name, a) in ordered]
        message = ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra)
        return ChatResponse(message=message, delta=event.content)
    parsed = result.parsed
    blocks = [TextBlock(text=parsed.content)]
    blocks += [
        ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=c.arguments)
        for c in parsed.calls
    ]
    extra = {}
    if parsed.calls:
        extra["tool_calls"] = [
            _openai_call(c.id, c.name, json.dumps(c.arguments)) for c in parsed.calls
        ]
    if parsed.invalid:
        extra["invalid_tool_calls"] = [
            {"id": call.id, "name": call.name, "text": call.text, "error": call.error}
            for call in parsed.invalid
        ]
    usage = {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
    raw: dict[str, Any] = {"text": result.text, "finish_reason": result.finish_reason}
    raw["usage"] = usage
    if result.closed_early:
        raw["closed_early"] = True
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks, additional_kwargs=extra),
        delta=event.content,
        raw={**raw, "model": result.model_name},
        additional_kwargs=usage,
    )


def _openai_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A call in OpenAI's ``tool_calls`` shape, as llama-index's streaming programs read it."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def with_cache_usage(response: ChatResponse, result: ChatTurn) -> ChatResponse:
    """Prompt tokens served from the prefix cache, in OpenAI's ``usage`` shape and as a count."""
    if isinstance(response.raw, dict) and isinstance(response.raw.get("usage"), dict):
        details = {"cached_tokens": result.cached_prompt_tokens}
        response.raw["usage"]["prompt_tokens_details"] = details
    response.additional_kwargs["cached_tokens"] = result.cached_prompt_tokens
    return response
