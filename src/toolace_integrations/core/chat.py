"""The framework-neutral chat turn every adapter runs: render, generate, stream, parse.

An adapter converts its framework's messages and tools to
:class:`~toolace_integrations.format.prompt.Message` and
:class:`~toolace_integrations.format.tools.FunctionSpec`, calls :func:`stream_chat` (or
:func:`run_chat_batch`), and maps the events back to its own types. Streaming is the one code path:
a non-streaming call is the stream, consumed.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

from toolace_integrations.core.generation import (
    Backend,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
)
from toolace_integrations.core.scheduling import scheduler_for
from toolace_integrations.format.grammar_text import tool_call_grammar
from toolace_integrations.format.incremental import CallDelta, CallStream
from toolace_integrations.format.parsing import ParsedOutput, parse_tool_calls
from toolace_integrations.format.profiles import TOOLACE, PromptProfile
from toolace_integrations.format.prompt import Message, render_messages
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

_T = TypeVar("_T")


@dataclass(frozen=True)
class ChatTurn:
    """One finished assistant turn.

    Attributes:
        parsed: The answer text, the calls, and the calls that failed to parse or validate.
        text: The raw model output.
        finish_reason: ``stop`` (end token or stop string) or ``length`` (``max_new_tokens``).
        prompt_tokens: Tokens in the prompt.
        completion_tokens: Tokens generated.
        model_name: The model id or path.
        cached_prompt_tokens: Prompt tokens served from a cache of earlier prompts.
        closed_early: Near ``max_new_tokens`` the forced call list was ended early where nothing
            was cut or invented: ``text`` is the model's text up to there plus ``)]`` or ``]``.
    """

    parsed: ParsedOutput
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    model_name: str
    cached_prompt_tokens: int = 0
    closed_early: bool = False


@dataclass(frozen=True)
class ChatEvent:
    """A streamed piece: answer text to show now, and on the last event the whole result.

    ``calls`` are pieces of tool calls as they are written (see
    :class:`~toolace_integrations.format.incremental.CallDelta`); their ids are those of the
    result's calls, and each call's argument pieces sum to ``json.dumps`` of its final arguments.
    """

    content: str = ""
    result: ChatTurn | None = None
    calls: tuple[CallDelta, ...] = ()


def build_request(
    messages: Sequence[Message],
    tools: Sequence[FunctionSpec] = (),
    *,
    tool_choice: ToolChoice | None = None,
    sampling: SamplingParams | None = None,
    system_template: str | None = None,
    constrained: bool = True,
    checkpoint_template: bool = False,
    profile: PromptProfile = TOOLACE,
) -> GenerationRequest:
    """Render a conversation into a request; with ``constrained``, the grammar enforces choice.

    Args:
        messages: The conversation.
        tools: The bound tools.
        tool_choice: What the model may answer with; ``None`` is ``auto``.
        sampling: Decoding settings.
        system_template: A system prompt with a ``{functions}`` placeholder; ``None``: the
            profile's.
        constrained: Constrain decoding to valid calls of the bound tools (needs xgrammar).
        checkpoint_template: Encode with the checkpoint's own chat template.
        profile: The checkpoint's prompt profile.

    Raises:
        GrammarTooLargeError: the grammar would be too large to compile (see ``grammar``).
    """
    rendered = render_messages(messages, tools, system_template=system_template, profile=profile)
    request = GenerationRequest(
        tuple(rendered),
        sampling or SamplingParams(),
        tuple(tools),
        (tool_choice or ToolChoice()) if tools else None,
        constrained=constrained and bool(tools),
        checkpoint_template=checkpoint_template,
        profile=profile,
    )
    if request.grammar_choice is not None:  # refused here, not on the thread that compiles
        tool_call_grammar(request.tools, request.grammar_choice, wrappers=profile.call_wrappers)
    return request


def stream_chat(
    backend: Backend, request: GenerationRequest, cancel: threading.Event | None = None
) -> Iterator[ChatEvent]:
    """Stream one assistant turn: answer text as it comes, calls parsed at the end.

    Text that may be the start of a call list is held back, so a streamed answer never shows
    call syntax as content; surrounding whitespace is held back too, so the summed stream equals
    the non-streamed content. With the grammar on, calls of bound tools stream as
    :attr:`ChatEvent.calls` pieces as they are written; without it a call may turn out
    malformed after its pieces were shown, so calls arrive whole on the last event. Each piece
    of text is read once.
    """
    choice = request.tool_choice
    parsing = bool(request.tools) and not (choice is not None and choice.mode == "none")
    calls = CallStream(request.tools if parsing and request.constrained else (), choice)
    text = ""
    shown = 0  # characters of ``text`` shown as content
    start = end = -1  # where the visible (stripped) answer starts and ends so far
    for event in backend.stream(request, cancel):
        offset = len(text)
        text += event.delta  # in place: one reference
        found = calls.feed(event.delta)
        pieces = tuple(found) if parsing else ()
        if stripped := len(event.delta.rstrip()):
            end = offset + stripped
            if start < 0:
                start = shown = len(text) - len(text.lstrip())
        if event.result is None and end > shown and not _may_be_call(calls, request.tools):
            yield ChatEvent(content=text[shown:end], calls=pieces)
            shown = end
        elif pieces:
            yield ChatEvent(calls=pieces)
    result = event.result
    assert result is not None
    final = _chat_result(backend.model_name, request, result)
    parsed, last = calls.finish(final.parsed)
    final = replace(final, parsed=parsed)
    content, visible = parsed.content, text[max(start, 0) : shown]
    tail = content[len(visible) :] if content.startswith(visible) else ""
    yield ChatEvent(content=tail, result=final, calls=tuple(last) if parsing else ())


async def iterate_in_thread(
    produce: Callable[[threading.Event], Iterator[_T]],
) -> AsyncGenerator[_T, None]:
    """Iterate ``produce(cancel)`` in a thread of its own so the event loop never blocks.

    This is how every adapter's async methods run the one streaming path. Each stream gets its
    own thread (with the caller's context variables, as ``asyncio.to_thread`` gives), not one
    of the event loop's default pool: that pool has ``min(32, cores + 4)`` threads, so more
    streams than that would wait for each other instead of decoding in one batch. Leaving early
    (``break``, ``aclose``) or cancelling the consuming task sets ``cancel``, which stops
    generation within a token, and waits for the thread to finish without blocking the loop.
    Closing the event loop mid-stream counts as leaving too (nobody can consume then), whether
    or not the generator is ever closed or collected.

    Notes:
        A generator collected while its loop is stopped but not closed is closed by asyncio
        when that loop runs again (or counts as left once the loop is closed).
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[_T] | BaseException | None] = asyncio.Queue()
    cancel = _ConsumerGone(loop)
    finished: asyncio.Future[None] = loop.create_future()

    def send(item: tuple[_T] | BaseException | None) -> None:
        with suppress(RuntimeError):  # the event loop already closed: nobody is waiting
            loop.call_soon_threadsafe(items.put_nowait, item)

    def finish() -> None:
        if not finished.done():
            finished.set_result(None)

    def run() -> None:
        try:
            iterator = produce(cancel)
            try:
                for item in iterator:
                    send((item,))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as error:  # re-raised in the event loop below
            send(error)
        finally:
            send(None)
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(finish)

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(run,), name="toolace-stream", daemon=True).start()
    try:
        while (item := await items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item[0]
    finally:
        cancel.set()
        await asyncio.shield(finished)


class _ConsumerGone(threading.Event):
    """A stream's cancel flag, also set for good once the consumer's event loop is closed.

    An abandoned generator's ``finally`` never runs on a closed loop: nobody else would stop it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def is_set(self) -> bool:
        """Whether the consumer left or its event loop is closed."""
        return super().is_set() or self._loop.is_closed()


def run_chat(backend: Backend, request: GenerationRequest) -> ChatTurn:
    """One assistant turn, generated to the end."""
    for event in stream_chat(backend, request):
        if event.result is not None:
            return event.result
    raise AssertionError("stream_chat always ends with a result")


async def arun_chat(backend: Backend, request: GenerationRequest) -> ChatTurn:
    """One assistant turn, awaited; turns requested together run as one batch.

    The prompt is encoded and its grammar compiled in a worker thread, then the backend's
    scheduler (:mod:`toolace_integrations.core.scheduling`) runs the turn, batched with concurrent
    ones (``asyncio.gather`` of ``ainvoke``s, agents running side by side), joining a running
    batch at its next token. A backend with its own ``submit`` (the remote one) schedules the
    turn itself: the server decides what runs together. Cancelling the awaiting task
    (``asyncio.wait_for`` timing out) stops this turn within a token, while the batch goes on
    for the others.
    """
    cancel = threading.Event()
    future: Future[GenerationResult] | None = None
    try:
        if (submit := getattr(backend, "submit", None)) is not None:
            future = submit(request, cancel)  # a server batches requests itself
        else:
            scheduler = scheduler_for(backend)
            prepare = partial(scheduler.prepare, request, cancel)
            future = await asyncio.to_thread(scheduler.start, prepare)
        result = await asyncio.shield(asyncio.wrap_future(future))
    except asyncio.CancelledError:
        cancel.set()
        if future is not None and not future.cancel():  # generating: it stops within a token
            with suppress(BaseException):
                await asyncio.wrap_future(future)
        raise
    # Parsing checks arguments against schemas (bounded, but up to a second): off the loop.
    return await asyncio.to_thread(_chat_result, backend.model_name, request, result)


def run_chat_batch(backend: Backend, requests: Sequence[GenerationRequest]) -> list[ChatTurn]:
    """Several assistant turns generated together as one batch."""
    results = backend.generate_batch(requests)
    return [
        _chat_result(backend.model_name, request, result)
        for request, result in zip(requests, results, strict=True)
    ]


def _chat_result(
    model_name: str, request: GenerationRequest, result: GenerationResult
) -> ChatTurn:
    choice = request.tool_choice
    if request.tools and not (choice is not None and choice.mode == "none"):
        truncated = result.finish_reason == "length"
        parsed = parse_tool_calls(result.text, request.tools, truncated=truncated)
    else:
        parsed = ParsedOutput(result.text.strip(), [], [])
    if choice is not None and not choice.parallel and len(parsed.calls) > 1:
        parsed = ParsedOutput(parsed.content, parsed.calls[:1], parsed.invalid)
    return ChatTurn(
        parsed,
        result.text,
        result.finish_reason,
        result.prompt_tokens,
        result.completion_tokens,
        model_name,
        result.cached_prompt_tokens,
        result.closed_early,
    )


def _may_be_call(calls: CallStream, tools: Sequence[FunctionSpec]) -> bool:
    """Whether streamed text so far could still turn out to be a call list (O(1))."""
    return bool(tools) and calls.may_be_call
