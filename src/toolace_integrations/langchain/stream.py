"""ChatToolACE's streamed turn: core chat events as LangChain pieces and message chunks."""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Sequence
from contextlib import closing, suppress
from typing import cast

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.utils.json import parse_partial_json

from toolace_integrations.core import chat
from toolace_integrations.core.generation import Backend, GenerationRequest
from toolace_integrations.format.incremental import CallDelta
from toolace_integrations.format.partial_json import breaking_suffix
from toolace_integrations.langchain.messages import to_ai_message

Piece = tuple[chat.ChatEvent, AIMessage | None]


def turn_pieces(
    backend: Backend, request: GenerationRequest, answer_tool: str | None, cancel: threading.Event
) -> Generator[Piece, None, None]:
    """``(event, None)`` pieces of a turn, then ``(last, final message)``.

    Call pieces of the ``response_format`` answer tool are dropped: that call becomes the
    final message's content, not a tool call.
    """
    shown = ""
    answers: set[str] = set()
    stream = chat.stream_chat(backend, request, cancel)  # a generator: close() stops it
    with closing(cast("Generator[chat.ChatEvent, None, None]", stream)) as events:
        for event in events:
            answers |= {c.id for c in event.calls if c.name and c.name == answer_tool}
            calls = tuple(c for c in event.calls if c.id not in answers)
            if event.result is None:
                shown += event.content
                yield chat.ChatEvent(event.content, calls=calls), None
                continue
            message = to_ai_message(event.result, answer_tool)
            text = str(message.content)
            tail = text[len(shown) :] if text.startswith(shown) else event.content
            yield chat.ChatEvent(tail, calls=calls), message


def to_chunk(
    delta: str,
    message: AIMessage | None,
    calls: Sequence[CallDelta] = (),
    streamed: dict[str, tuple[int, str]] | None = None,
) -> ChatGenerationChunk | None:
    """A content and call piece, or the last chunk carrying calls, usage and metadata.

    ``streamed`` maps the id of each call streamed so far to its index and argument text; a
    streamed call that ends invalid gets a suffix that makes LangChain read it as invalid. Calls
    the stream never showed arrive whole on the last chunk.
    """
    streamed = {} if streamed is None else streamed
    chunks = []
    for piece in calls:
        index, arguments = streamed.get(piece.id, (piece.index, ""))
        text = breaking_suffix(arguments) if piece.error is not None else piece.arguments
        streamed[piece.id] = (index, arguments + text)
        chunks.append(tool_call_chunk(name=piece.name, args=text, id=piece.id, index=index))
    if message is None:
        if not (delta or chunks):
            return None
        return ChatGenerationChunk(message=AIMessageChunk(content=delta, tool_call_chunks=chunks))
    fresh = max((index for index, _ in streamed.values()), default=-1) + 1
    for c in message.tool_calls:
        if c["id"] not in streamed:
            chunks.append(
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=fresh)
            )
            fresh += 1
    for bad in message.invalid_tool_calls:
        if bad["id"] in streamed:
            continue
        args = bad["args"] or ""
        with suppress(Exception):  # LangChain would read a JSON object as a valid call
            if isinstance(parse_partial_json(args), dict):
                args = json.dumps(args)
        chunks.append(tool_call_chunk(name=bad["name"], args=args, id=bad["id"], index=fresh))
        fresh += 1
    last = AIMessageChunk(
        content=delta,
        tool_call_chunks=chunks,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        chunk_position="last",
    )
    return ChatGenerationChunk(message=last)
