"""LangChain messages, tools and results to and from the core's records; structured output."""

from __future__ import annotations

import json
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
)
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from toolace_integrations.core import chat
from toolace_integrations.errors import NoToolCallError, ToolSpecError, TruncatedOutputError
from toolace_integrations.format.parsing import ToolCall
from toolace_integrations.format.prompt import Message, PromptError, join_text_blocks
from toolace_integrations.format.tool_json import tool_schema_for_prompt
from toolace_integrations.format.tools import FunctionSpec, normalize_tools

_SKIPPED_BLOCKS = {"tool_call", "tool_call_chunk", "invalid_tool_call", "tool_use", "reasoning"}


def unique_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats that ToolACE sees identically, e.g. a pydantic model and its JSON schema."""
    seen: dict[str, str] = {}
    unique = []
    for tool in tools:
        spec = normalize_tools([tool])[0]
        key = json.dumps(tool_schema_for_prompt(spec), sort_keys=True, default=str)
        if seen.get(spec.name) != key:  # a different tool of the same name fails later
            seen[spec.name] = key
            unique.append(tool)
    return unique


def _text(content: str | list[Any]) -> str:
    """The text of a message's content; separate text blocks stay apart (a newline between)."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        kind = "text" if isinstance(block, str) else block.get("type")
        if kind == "text":
            parts.append(block if isinstance(block, str) else str(block.get("text", "")))
        elif kind not in _SKIPPED_BLOCKS:
            raise PromptError(
                f"ToolACE-8B reads text only; a {kind!r} content block cannot be sent. "
                "Describe the content in text instead."
            )
    return join_text_blocks(parts)


def to_message(message: BaseMessage) -> Message:
    """A LangChain message as the core's :class:`Message`; text content only."""
    if isinstance(message, SystemMessage):
        return Message("system", _text(message.content))
    if isinstance(message, HumanMessage):
        return Message("user", _text(message.content))
    if isinstance(message, AIMessage):
        calls = tuple(
            ToolCall(c["name"], c["args"], c["id"]) if c["id"] else ToolCall(c["name"], c["args"])
            for c in message.tool_calls
        )
        return Message("assistant", _text(message.content), calls)
    if isinstance(message, ToolMessage):
        content = message.content
        if not isinstance(content, str):
            textual = all(isinstance(b, str) or b.get("type") == "text" for b in content)
            content = _text(content) if textual else json.dumps(content, ensure_ascii=False)
        return Message("tool", content, tool_call_id=message.tool_call_id, name=message.name)
    if isinstance(message, ChatMessage) and message.role in ("system", "user", "assistant"):
        return Message(message.role, _text(message.content))  # type: ignore[arg-type]
    raise PromptError(
        f"ChatToolACE cannot send a {type(message).__name__} (type {message.type!r}); "
        "use SystemMessage, HumanMessage, AIMessage or ToolMessage."
    )


def response_format_tool(response_format: Any) -> FunctionSpec | None:
    """``{"type": "json_schema", ...}`` (create_agent's ProviderStrategy) as a forced tool."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        raise ToolSpecError(
            f"response_format={response_format!r} is not supported; pass "
            "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}} "
            "or use with_structured_output(schema)."
        )
    spec = response_format.get("json_schema") or {}
    function = {"name": spec.get("name"), "description": spec.get("description", "")}
    return normalize_tools([{**function, "parameters": spec.get("schema") or {}}])[0]


def to_ai_message(result: chat.ChatTurn, answer_tool: str | None) -> AIMessage:
    """A finished turn as an ``AIMessage``; ``answer_tool``'s call becomes JSON content."""
    parsed = result.parsed
    calls, content = parsed.calls, parsed.content
    if answer_tool and (answers := [call for call in calls if call.name == answer_tool]):
        content = json.dumps(answers[0].arguments, ensure_ascii=False)
        calls = [call for call in calls if call.name != answer_tool]
    return AIMessage(
        content=content,
        tool_calls=[tool_call(name=c.name, args=c.arguments, id=c.id) for c in calls],
        invalid_tool_calls=[
            invalid_tool_call(name=c.name, args=c.text, id=c.id, error=c.error)
            for c in parsed.invalid
        ],
        usage_metadata={
            "input_tokens": result.prompt_tokens,
            "output_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
            "input_token_details": {"cache_read": result.cached_prompt_tokens},
        },
        response_metadata={
            "model_name": result.model_name,
            "finish_reason": result.finish_reason,
            "model_provider": "toolace",
            "raw_output": result.text,
            **({"closed_early": True} if result.closed_early else {}),
        },
    )


def structured_output(
    llm: Runnable[Any, AIMessage], schema: dict[str, Any] | type, *, include_raw: bool
) -> Runnable[Any, Any]:
    """``llm`` (bound to ``schema``'s forced tool) followed by LangChain's tool parsers.

    As ``BaseChatModel.with_structured_output``, except that a forced answer cut by
    ``max_tokens`` raises (or, with ``include_raw``, reports) :class:`TruncatedOutputError`.
    """
    parser: Runnable[Any, Any]
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
    else:
        name = convert_to_openai_tool(schema)["function"]["name"]
        parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
    parser = RunnableLambda(_refuse_truncated) | parser
    if not include_raw:
        return llm | parser
    parse = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    no_parse = RunnablePassthrough.assign(parsed=lambda _: None)
    fallback = parse.with_fallbacks([no_parse], exception_key="parsing_error")
    return RunnableMap(raw=llm) | fallback


def _refuse_truncated(message: AIMessage) -> AIMessage:
    """A forced answer cut by ``max_tokens``, or whose call is invalid, is an error, not ``None``.

    An answer the engine closed early (``closed_early``) was not cut: its call is the model's.
    """
    if message.tool_calls:
        return message
    metadata = message.response_metadata
    if metadata.get("finish_reason") == "length" and not metadata.get("closed_early"):
        tokens = message.usage_metadata["output_tokens"] if message.usage_metadata else 0
        raise TruncatedOutputError(tokens)
    if message.invalid_tool_calls:
        problems = "; ".join(str(call.get("error")) for call in message.invalid_tool_calls)
        raise NoToolCallError(f"The model's answer is not a valid call of the schema: {problems}.")
    return message


def openai_tools(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Call arguments with any ``tools`` as the OpenAI dicts ``bind_tools`` would bind."""
    options = dict(kwargs)
    if (tools := options.pop("tools", None)) is not None:
        options["tools"] = [convert_to_openai_tool(tool) for tool in tools]
    return options
