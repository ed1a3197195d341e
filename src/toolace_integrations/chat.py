"""The framework-neutral chat turn every adapter runs: render, generate, stream, parse.

An adapter converts its framework's messages and tools to :class:`~toolace_integrations.prompt.
Message` and :class:`~toolace_integrations.tools.FunctionSpec`, calls :func:`stream_chat` (or
:func:`run_chat_batch`), and maps the events back to its own types. Streaming is the one code
path: a non-streaming call is the stream, consumed.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

from toolace_integrations.generation import (
    Backend,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
)
from toolace_integrations.grammar import tool_call_grammar
from toolace_integrations.parsing import ParsedOutput, looks_like_call_start, parse_tool_calls
from toolace_integrations.prompt import DEFAULT_SYSTEM_TEMPLATE, Message, render_messages
from toolace_integrations.tools import TOOL_NAME_PATTERN, FunctionSpec, ToolChoice

_T = TypeVar("_T")
_NAME_PREFIX = re.compile(rf"(?:{TOOL_NAME_PATTERN})?")
_BARE_CALL_START = re.compile(rf"(?:{TOOL_NAME_PATTERN})\(")


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
    """

    parsed: ParsedOutput
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    model_name: str
    cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class ChatEvent:
    """A streamed piece: answer text to show now, and on the last event the whole result."""

    content: str = ""
    result: ChatTurn | None = None


def build_request(
    messages: Sequence[Message],
    tools: Sequence[FunctionSpec] = (),
    *,
    tool_choice: ToolChoice | None = None,
    sampling: SamplingParams | None = None,
    system_template: str = DEFAULT_SYSTEM_TEMPLATE,
    constrained: bool = True,
) -> GenerationRequest:
    """Render a conversation into a request; with ``constrained``, the grammar enforces choice.

    Args:
        messages: The conversation.
        tools: The bound tools.
        tool_choice: What the model may answer with; ``None`` is ``auto``.
        sampling: Decoding settings.
        system_template: ToolACE's system prompt with a ``{functions}`` placeholder.
        constrained: Constrain decoding to valid calls of the bound tools (needs xgrammar).

    Raises:
        GrammarTooLargeError: the grammar would be too large to compile (see ``grammar``).
    """
    rendered = render_messages(messages, tools, system_template=system_template)
    request = GenerationRequest(
        tuple(rendered),
        sampling or SamplingParams(),
        tuple(tools),
        (tool_choice or ToolChoice()) if tools else None,
        constrained=constrained and bool(tools),
    )
    if request.grammar_choice is not None:  # refused here, not on the thread that compiles
        tool_call_grammar(request.tools, request.grammar_choice)
    return request


def stream_chat(
    backend: Backend, request: GenerationRequest, cancel: threading.Event | None = None
) -> Iterator[ChatEvent]:
    """Stream one assistant turn: answer text as it comes, calls parsed at the end.

    Text that may be the start of a call list is held back, so a streamed answer never shows
    call syntax as content; surrounding whitespace is held back too, so the summed stream equals
    the non-streamed content.
    """
    text = ""
    shown = ""
    for event in backend.stream(request, cancel):
        text += event.delta
        if event.result is None and not _may_be_call(text, request.tools):
            visible = text.strip()
            if len(visible) > len(shown):
                yield ChatEvent(content=visible[len(shown) :])
                shown = visible
    result = event.result
    assert result is not None
    final = _chat_result(backend.model_name, request, result)
    content = final.parsed.content
    tail = content[len(shown) :] if content.startswith(shown) else ""
    yield ChatEvent(content=tail, result=final)


async def iterate_in_thread(
    produce: Callable[[threading.Event], Iterator[_T]],
) -> AsyncGenerator[_T, None]:
    """Iterate ``produce(cancel)`` in a worker thread so the event loop never blocks.

    This is how every adapter's async methods run the one streaming path. Leaving early
    (``break``, ``aclose``) or cancelling the consuming task sets ``cancel``, which stops
    generation within a token, and waits for the thread to finish without blocking the loop.
    """
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[_T] | BaseException | None] = asyncio.Queue()
    cancel = threading.Event()

    def send(item: tuple[_T] | BaseException | None) -> None:
        with suppress(RuntimeError):  # the event loop already closed: nobody is waiting
            loop.call_soon_threadsafe(items.put_nowait, item)

    def run() -> None:
        iterator = produce(cancel)
        try:
            for item in iterator:
                send((item,))
        except BaseException as error:  # re-raised in the event loop below
            send(error)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            send(None)

    worker = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while (item := await items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item[0]
    finally:
        cancel.set()
        await asyncio.shield(worker)


def run_chat(backend: Backend, request: GenerationRequest) -> ChatTurn:
    """One assistant turn, generated to the end."""
    for event in stream_chat(backend, request):
        if event.result is not None:
            return event.result
    raise AssertionError("stream_chat always ends with a result")


async def arun_chat(backend: Backend, request: GenerationRequest) -> ChatTurn:
    """One assistant turn, awaited; turns requested together run as one batch.

    Concurrent calls (``asyncio.gather`` of ``ainvoke``s, agents running side by side) that
    arrive within :data:`COALESCE_WINDOW_S` of each other are generated as one left-padded batch
    and each caller gets its own result. A turn that arrives alone runs as a single prompt.
    Cancelling the awaiting task stops generation once every caller in its batch has gone.
    """
    cancel = threading.Event()
    # A backend with its own ``submit`` (a server) schedules requests itself: no client batch.
    submit = getattr(backend, "submit", None) or _coalescer(backend).submit
    future: Future[GenerationResult] = submit(request, cancel)
    done = asyncio.wrap_future(future)
    try:
        result = await asyncio.shield(done)
    except asyncio.CancelledError:
        cancel.set()
        if not future.cancel():  # already generating: wait until it stops, within a token
            with suppress(BaseException):
                await done
        raise
    # Parsing checks arguments against schemas (bounded, but up to a second): off the loop.
    return await asyncio.to_thread(_chat_result, backend.model_name, request, result)


COALESCE_WINDOW_S = 0.005
"""How long the first of several concurrent async turns waits for others to join its batch."""
COALESCE_MAX_BATCH = 16

_Pending = tuple[GenerationRequest, threading.Event, "Future[GenerationResult]"]


class _EveryoneLeft(threading.Event):
    """A cancel flag for a batch: set once every caller in it has cancelled."""

    def __init__(self, callers: Sequence[threading.Event]) -> None:
        super().__init__()
        self._callers = callers

    def is_set(self) -> bool:
        return all(caller.is_set() for caller in self._callers)

    def set(self) -> None:
        for caller in self._callers:
            caller.set()


class _Coalescer:
    """A queue in front of one backend that gathers concurrent requests into batches."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._pending: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="toolace-batcher", daemon=True).start()

    def submit(
        self, request: GenerationRequest, cancel: threading.Event
    ) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        self._pending.put((request, cancel, future))
        return future

    def _serve(self) -> None:
        while True:
            batch = [self._pending.get()]
            deadline = time.monotonic() + COALESCE_WINDOW_S
            while len(batch) < COALESCE_MAX_BATCH and (wait := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self._pending.get(timeout=wait))
                except queue.Empty:
                    break
            live = [item for item in batch if item[2].set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = self._backend.generate_batch(
                    [request for request, _, _ in live], _EveryoneLeft([c for _, c, _ in live])
                )
            except BaseException as error:
                if len(live) == 1:
                    live[0][2].set_exception(error)
                    continue
                # One caller's bad request (e.g. too long) must not fail its neighbours.
                for request, cancel, future in live:
                    try:
                        future.set_result(self._backend.generate_batch([request], cancel)[0])
                    except BaseException as single_error:  # handed to its caller
                        future.set_exception(single_error)
                continue
            for (_, _, future), result in zip(live, results, strict=True):
                future.set_result(result)


_coalescers: dict[int, _Coalescer] = {}
_coalescers_lock = threading.Lock()


def _coalescer(backend: Backend) -> _Coalescer:
    with _coalescers_lock:
        if id(backend) not in _coalescers:
            _coalescers[id(backend)] = _Coalescer(backend)
        return _coalescers[id(backend)]


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
    )


def _may_be_call(text: str, tools: Sequence[FunctionSpec]) -> bool:
    """Whether streamed text so far could still turn out to be a call list."""
    stripped = text.lstrip()
    if not tools:
        return False
    if not stripped or looks_like_call_start(stripped):
        return True
    return bool(_BARE_CALL_START.match(stripped)) or _NAME_PREFIX.fullmatch(stripped) is not None
