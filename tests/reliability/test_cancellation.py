"""Leaving a stream or cancelling a call stops generation within a few tokens and frees the model.

The model is kept from ending its answer on its own (end tokens are masked), so only
``max_new_tokens`` -- far away -- or cancellation can stop it. A forward-pass counter on the
model measures how many tokens were still computed after the caller left.
"""

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from _hooks import (
    DTYPE,
    ForwardCounter,
    await_until,
    lock_free,
    never_stop,
    slow_forwards,
    wait_until,
)
from langchain_core.messages import AIMessage
from llama_index.core.base.llms.types import ChatMessage

from toolace_integrations.core.generation import GenerationRequest, SamplingParams
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine

LONG = 400  # max_new_tokens of the call that gets cancelled; it must never get near it
FEW = 8  # forward passes a cancellation may still take to land (seen: 0-1; generous for a busy box)
PROMPT = "Tell me a very long story."


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=LONG)


@pytest.fixture(scope="module")
def li(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=LONG)


@pytest.fixture
def endless(engine: TransformersEngine) -> Iterator[None]:
    with never_stop(engine):
        yield


@pytest.fixture(autouse=True)
def _settle(engine: TransformersEngine) -> Iterator[None]:
    """After a failure, let a runaway generation end so it does not fail the next test too."""
    yield
    wait_until(lambda: lock_free(engine), timeout=60)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def _assert_stopped_and_free(
    engine: TransformersEngine, forwards: ForwardCounter, left_at: int, lc: ChatToolACE
) -> None:
    """Generation stopped within FEW tokens of ``left_at`` and the next caller gets the model."""
    assert wait_until(lambda: lock_free(engine), timeout=10), "the model is still held"
    after = forwards.calls - left_at
    assert after <= FEW, f"{after} more tokens were generated after the caller left"
    assert forwards.calls < LONG // 2
    with ThreadPoolExecutor(1) as pool:  # promptly: a hang fails here, not at pytest's timeout
        message = pool.submit(lc.invoke, "Hi", max_tokens=2).result(timeout=30)
    assert isinstance(message, AIMessage) and message.usage_metadata
    assert message.usage_metadata["output_tokens"] == 2


async def _assert_stopped_and_free_async(
    engine: TransformersEngine, forwards: ForwardCounter, left_at: int, lc: ChatToolACE
) -> None:
    assert await await_until(lambda: lock_free(engine), timeout=10), "the model is still held"
    after = forwards.calls - left_at
    assert after <= FEW, f"{after} more tokens were generated after the caller left"
    assert forwards.calls < LONG // 2
    message = await asyncio.wait_for(lc.ainvoke("Hi", max_tokens=2), 30)
    assert isinstance(message, AIMessage) and message.usage_metadata
    assert message.usage_metadata["output_tokens"] == 2


def test_breaking_out_of_a_langchain_stream(
    lc: ChatToolACE, engine: TransformersEngine, forwards: ForwardCounter, endless: None
) -> None:
    for chunk in lc.stream(PROMPT):
        if chunk.content:
            left_at = forwards.calls
            break
    # The abandoned generator is closed as the loop ends, which joins the generation thread.
    assert lock_free(engine), "generation goes on after the loop was left"
    _assert_stopped_and_free(engine, forwards, left_at, lc)


def test_breaking_out_of_a_llama_index_stream(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    forwards: ForwardCounter,
    endless: None,
) -> None:
    for response in li.stream_chat(user(PROMPT)):
        if response.delta:
            left_at = forwards.calls
            break
    assert lock_free(engine), "generation goes on after the loop was left"
    _assert_stopped_and_free(engine, forwards, left_at, lc)


def _lc_astream(lc: ChatToolACE) -> AsyncIterator[Any]:
    return lc.astream(PROMPT)


async def _li_astream(li: ToolACELLM) -> AsyncIterator[Any]:
    async for response in await li.astream_chat(user(PROMPT)):
        yield response


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
async def test_breaking_out_of_an_async_stream(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    forwards: ForwardCounter,
    endless: None,
    adapter: str,
) -> None:
    stream = _lc_astream(lc) if adapter == "langchain" else _li_astream(li)
    async for item in stream:
        if getattr(item, "content", None) or getattr(item, "delta", None):
            left_at = forwards.calls
            break
    del stream  # as a plain `async for ... break` would leave it: asyncio finalizes it
    await _assert_stopped_and_free_async(engine, forwards, left_at, lc)


async def _consume(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize(
    "call",
    ["langchain-ainvoke", "langchain-astream", "llama_index-achat", "llama_index-astream_chat"],
)
async def test_cancelling_the_task(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    forwards: ForwardCounter,
    endless: None,
    call: str,
) -> None:
    work = {
        "langchain-ainvoke": lambda: lc.ainvoke(PROMPT),
        "langchain-astream": lambda: _consume(_lc_astream(lc)),
        "llama_index-achat": lambda: li.achat(user(PROMPT)),
        "llama_index-astream_chat": lambda: _consume(_li_astream(li)),
    }[call]
    task = asyncio.ensure_future(work())
    assert await await_until(lambda: forwards.calls >= 3, timeout=30), "generation never began"
    task.cancel()
    left_at = forwards.calls
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    await _assert_stopped_and_free_async(engine, forwards, left_at, lc)


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
async def test_timeout_while_waiting_for_a_busy_model(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    forwards: ForwardCounter,
    endless: None,
    adapter: str,
) -> None:
    """A caller queued behind another generation can give up at once, and never runs later."""
    lock: threading.Lock = engine._generate_lock
    assert lock.acquire(timeout=10)  # stands in for another caller's long generation
    released = threading.Event()

    def release() -> None:
        if not released.is_set():
            released.set()
            lock.release()

    # A caller that cannot give up waits for this safety release.
    safety = asyncio.get_running_loop().call_later(15, release)
    call = lc.ainvoke(PROMPT) if adapter == "langchain" else li.achat(user(PROMPT))
    started = time.perf_counter()
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(call, 0.3)
        waited = time.perf_counter() - started
    finally:
        safety.cancel()
        release()
    assert waited < 5, f"the timed-out call waited {waited:.1f}s for the busy model"
    released_at = forwards.calls
    await asyncio.sleep(0.3)  # time for the abandoned request to (wrongly) start generating
    await _assert_stopped_and_free_async(engine, forwards, released_at, lc)


def _has_content(item: Any) -> bool:
    return bool(getattr(item, "content", None) or getattr(item, "delta", None))


@pytest.mark.parametrize("generator", ["kept", "collected"])
@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_closing_the_event_loop_mid_stream_stops_the_row(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    forwards: ForwardCounter,
    endless: None,
    adapter: str,
    generator: str,
) -> None:
    """A stream whose event loop is closed mid-way, never ``aclose``d, stops within a token,
    whether its generator is still referenced or garbage-collected after the loop closed."""
    loop = asyncio.new_event_loop()
    stream = _lc_astream(lc) if adapter == "langchain" else _li_astream(li)

    async def until_content() -> None:
        while not _has_content(await anext(stream)):
            pass

    loop.run_until_complete(until_content())
    left_at = forwards.calls
    loop.close()
    if generator == "collected":
        del stream
        gc.collect()
    _assert_stopped_and_free(engine, forwards, left_at, lc)


BUSY = GenerationRequest(
    ({"role": "user", "content": PROMPT},),
    SamplingParams(max_new_tokens=3000, temperature=0.7),  # sampled: greedy callers queue
)


def _queued(engine: TransformersEngine) -> bool:
    return bool(engine.scheduler._queue)


def _leave_once_queued(engine: TransformersEngine, cancel: threading.Event) -> None:
    threading.Thread(
        target=lambda: wait_until(lambda: _queued(engine), timeout=30) and cancel.set()
    ).start()


@pytest.mark.parametrize(
    "call",
    ["langchain-astream", "llama_index-astream_chat", "engine-generate", "engine-generate_batch"],
)
async def test_a_queued_caller_that_leaves_is_released_while_another_batch_runs(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    forwards: ForwardCounter,
    endless: None,
    call: str,
) -> None:
    """A caller queued behind a batch of other sampling settings gets control back as soon as
    it leaves, while that batch still runs, and its job never runs."""
    busy_cancel, busy_done = threading.Event(), threading.Event()

    def busy() -> None:
        try:
            engine.generate(BUSY, busy_cancel)
        finally:
            busy_done.set()

    greedy = GenerationRequest(({"role": "user", "content": PROMPT},), SamplingParams(LONG))
    cancel = threading.Event()
    leave: dict[str, Callable[[], Any]] = {
        "engine-generate": lambda: engine.generate(greedy, cancel),
        "engine-generate_batch": lambda: engine.generate_batch([greedy, greedy], cancel),
    }
    with slow_forwards(engine, 0.005):  # the busy batch lasts 15 s at least, unless cancelled
        threading.Thread(target=busy).start()
        try:
            assert await await_until(lambda: forwards.calls >= 3, timeout=30), "busy never began"
            if call in leave:
                _leave_once_queued(engine, cancel)
                results = await asyncio.to_thread(leave[call])
                left = results if isinstance(results, list) else [results]
                assert all(r.text == "" and r.completion_tokens == 0 for r in left)
            else:
                stream = _lc_astream(lc) if call.startswith("langchain") else _li_astream(li)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(_consume(stream), 0.5)
            assert not busy_done.is_set(), "the caller was released only when the batch ended"
            assert not _queued(engine), "the caller that left is still queued"
        finally:
            busy_cancel.set()
            await asyncio.to_thread(busy_done.wait, 60)
    released_at = forwards.calls
    await asyncio.sleep(0.3)  # time for the abandoned request to (wrongly) start generating
    await _assert_stopped_and_free_async(engine, forwards, released_at, lc)
