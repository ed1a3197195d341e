"""An interrupt raised in the model's worker thread stops its batch, not its callers' programs.

``KeyboardInterrupt`` or ``SystemExit`` raised inside a forward pass (a hook, a signal handler
of an embedding library) must reach every caller of that batch as a ``GenerationError``: as the
interrupt itself it would look like the caller's own Ctrl-C and, in asyncio, escape
``gather(return_exceptions=True)`` and end the event loop. The worker keeps serving.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from _hooks import DTYPE
from langchain_core.messages import AIMessage

from toolace_integrations.errors import GenerationError
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.local.engine import TransformersEngine

CALLERS = 4
INTERRUPTS = [KeyboardInterrupt, SystemExit]


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=8)


@contextmanager
def interrupting(engine: TransformersEngine, interrupt: type[BaseException]) -> Iterator[set[str]]:
    """Raise ``interrupt`` from every forward pass while active; yields the threads it hit."""
    threads: set[str] = set()

    def pre_hook(module: Any, args: Any) -> None:
        threads.add(threading.current_thread().name)
        raise interrupt()

    handle = engine.model.register_forward_pre_hook(pre_hook)
    try:
        yield threads
    finally:
        handle.remove()


def _assert_interrupted(outcomes: list[Any], interrupt: type[BaseException]) -> None:
    for outcome in outcomes:
        assert isinstance(outcome, GenerationError), f"a caller got {outcome!r}"
        assert isinstance(outcome.__cause__, interrupt)


def _assert_answers(message: Any) -> None:
    assert isinstance(message, AIMessage) and message.usage_metadata
    assert message.usage_metadata["output_tokens"] == 2


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_callers_in_threads_get_a_generation_error(
    lc: ChatToolACE, engine: TransformersEngine, interrupt: type[BaseException]
) -> None:
    def call(number: int) -> Any:
        try:
            return lc.invoke(f"Question number {number}?")
        except BaseException as error:  # the interrupt itself, on a broken scheduler
            return error

    with interrupting(engine, interrupt) as threads, ThreadPoolExecutor(CALLERS) as pool:
        outcomes = list(pool.map(call, range(CALLERS)))
    assert threads == {"toolace-scheduler"}
    _assert_interrupted(outcomes, interrupt)
    _assert_answers(lc.invoke("Hi", max_tokens=2))  # the worker serves later calls


@pytest.mark.parametrize("interrupt", INTERRUPTS)
def test_gathered_coroutines_get_a_generation_error_and_the_loop_goes_on(
    lc: ChatToolACE, engine: TransformersEngine, interrupt: type[BaseException]
) -> None:
    async def main() -> tuple[list[Any], Any]:
        with interrupting(engine, interrupt) as threads:
            calls = (lc.ainvoke(f"Question number {n}?") for n in range(CALLERS))
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert threads == {"toolace-scheduler"}
        return outcomes, await lc.ainvoke("Hi", max_tokens=2)

    try:
        outcomes, later = asyncio.run(main())
    except BaseException as error:  # noqa: BLE001 - the test's point: nothing escapes
        pytest.fail(f"{error!r} escaped gather(return_exceptions=True) and ended the loop")
    _assert_interrupted(outcomes, interrupt)
    _assert_answers(later)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_the_remote_gatherer_reaches_callers_as_a_generation_error(
    interrupt: type[BaseException],
) -> None:
    """The remote backend's batch thread: an interrupt stops its batch and is retried for no one."""
    from toolace_integrations.core.generation import GenerationRequest, SamplingParams
    from toolace_integrations.remote.batching import RequestGatherer

    calls: list[int] = []

    def generate_batch(requests: Any, cancel: Any) -> Any:
        calls.append(len(requests))
        raise interrupt()

    gatherer = RequestGatherer(generate_batch, max_batch=2)
    request = GenerationRequest(({"role": "user", "content": "Hi"},), SamplingParams(4))
    futures = [gatherer.submit(request, threading.Event()) for _ in range(2)]
    for future in futures:
        error = future.exception(timeout=30)
        assert isinstance(error, GenerationError) and isinstance(error.__cause__, interrupt)
    assert calls == [2]  # the batch once; no caller retried alone into the same interrupt
    gatherer.close()
