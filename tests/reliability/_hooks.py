"""Reliability helpers: hooks that count, steer or break the tiny real model's forward passes.

Everything here runs the real tokenizer and the real ``generate`` of the tiny offline checkpoint.
The hooks sit on the model itself, so they see exactly the work the adapters make it do:
:class:`ForwardCounter` counts forward passes (one for the prompt, then one per new token),
:func:`steer` makes the model write given answers token by token (so we can make it emit calls
of unbound tools or arguments that break the schema), :func:`steer_prompts` does so by prompt
(from the engine's request preparation and logits processors), so every row of a batch writes
its own answer, :func:`never_stop` keeps it from ending
an answer on its own, :func:`slow_forwards` keeps it busy for a known while, and
:func:`fail_forward` raises inside a forward pass (a simulated OOM).
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from toolace_integrations.core.encoding import text_encoder
from toolace_integrations.local.engine import TransformersEngine
from toolace_integrations.local.runner import Row

DTYPE = "float32"
"""An explicit dtype gives these tests their own engine (the cache key differs from the default
spec the other test modules use), so hooks and lock checks here never meet another module's."""


class ForwardCounter:
    """Counts forward passes of a model (thread-safe enough: one ``+=`` under the GIL)."""

    def __init__(self, model: Any) -> None:
        self.calls = 0
        self._handle = model.register_forward_hook(self._count)

    def _count(self, module: Any, args: Any, output: Any) -> None:
        self.calls += 1

    def remove(self) -> None:
        self._handle.remove()


def _logits_hook(engine: TransformersEngine, edit: Callable[[torch.Tensor], None]) -> Any:
    def hook(module: Any, args: Any, logits: torch.Tensor) -> torch.Tensor:
        edit(logits[:, -1, :])
        return logits

    return engine.model.get_output_embeddings().register_forward_hook(hook)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (the tiny models gain nothing from more;
    on a shared 2-core box a second OpenMP thread becomes a straggler every step waits for)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _script(engine: TransformersEngine, answer: str | Sequence[int]) -> list[int]:
    """The token ids that write ``answer`` (text as plain-text tokens, or ids), then its eos."""
    tokenizer = engine.tokenizer
    if isinstance(answer, str):
        ids = text_encoder(tokenizer).content_ids(answer)
        assert tokenizer.decode(ids) == answer, "the tiny tokenizer must round-trip the answer"
    else:
        ids = list(answer)
    return [*ids, tokenizer.eos_token_id]


def _force(last: torch.Tensor, token: int) -> None:
    last.fill_(-1e9)
    last[..., token] = 1e9


@contextmanager
def steer(
    engine: TransformersEngine, *answers: str | Sequence[int]
) -> Iterator[list[str | Sequence[int]]]:
    """Make the model write ``answers`` verbatim, one per generation, each ended by its eos.

    An answer is text (written as plain-text tokens) or token ids, which may hold control
    tokens such as ``<|python_start|>``; the tokenizer's eos (``<|eot_id|>``, Llama-4's
    ``<|eot|>``) ends each. Generations take the answers in the order they start, one at a time:
    ask with concurrency 1 (rows of a batch would share one script). Yields the answers still
    unused, so a test can check that every one was generated.
    """
    scripts = [_script(engine, answer) for answer in answers]
    pending = list(answers)
    state: dict[str, Any] = {"script": None, "at": 0}

    def force(last: torch.Tensor) -> None:
        if state["script"] is None:  # a new generation starts with this forward pass
            assert scripts, "the model generated more answers than were scripted"
            state["script"], state["at"] = scripts.pop(0), 0
            pending.pop(0)
        _force(last, state["script"][state["at"]])
        state["at"] += 1
        if state["at"] == len(state["script"]):
            state["script"] = None

    handle = _logits_hook(engine, force)
    try:
        yield pending
    finally:
        handle.remove()


@contextmanager
def steer_prompts(engine: TransformersEngine, answers: Mapping[str, str]) -> Iterator[set[str]]:
    """Make the model answer each prompt text in ``answers`` with its answer, then <|eot_id|>.

    The script follows the prompt (``engine.prompt_text`` of the request), not the order in
    which generations start, so any concurrency works: every row of a batch is forced to its
    own answer, before the engine's own logits processors (the tool-call grammar) run. A
    request whose prompt has no answer fails. Yields the prompts not asked yet.
    """
    scripts = {prompt: _script(engine, answer) for prompt, answer in answers.items()}
    unasked = set(answers)
    rows: weakref.WeakKeyDictionary[Row, list[int]] = weakref.WeakKeyDictionary()
    prepare, processors = engine.prepare, engine._runner.logits_processors

    def prepare_scripted(request: Any, *args: Any) -> Any:
        job = prepare(request, *args)
        prompt = engine.prompt_text(request.messages)
        assert prompt in scripts, f"no answer scripted for the prompt {prompt[-300:]!r}"
        unasked.discard(prompt)
        rows[job.state] = scripts[prompt]
        return job

    def scripted_first(batch: Sequence[Row]) -> LogitsProcessorList:
        return LogitsProcessorList([_ScriptedRows(batch, rows), *processors(batch)])

    engine.prepare = prepare_scripted
    engine._runner.logits_processors = scripted_first
    try:
        yield unasked
    finally:
        del engine.prepare
        engine._runner.logits_processors = processors


class _ScriptedRows(LogitsProcessor):
    """Forces each scripted row of a batch to the next token of its own script."""

    def __init__(self, batch: Sequence[Row], scripts: Mapping[Row, list[int]]) -> None:
        self.batch = batch
        self.scripts = scripts

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        for index, row in enumerate(self.batch):
            script = self.scripts.get(row)
            if script is None or row.decoder.done:
                continue
            at = len(row.decoder.tokens)
            assert at < len(script), "a row went on after its scripted <|eot_id|>"
            _force(scores[index], script[at])
        return scores


@contextmanager
def never_stop(engine: TransformersEngine) -> Iterator[None]:
    """Forbid the end tokens, so only ``max_new_tokens`` or cancellation ends generation."""
    stop_ids = list(engine.stop_token_ids)

    def forbid(last: torch.Tensor) -> None:
        last[..., stop_ids] = -1e9

    handle = _logits_hook(engine, forbid)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def slow_forwards(engine: TransformersEngine, seconds: float) -> Iterator[None]:
    """Make every forward pass take ``seconds`` longer, with the GIL released (like a GPU).

    Keeps the model busy for a known while however fast the box or the batching is.
    """

    def pause(module: Any, args: Any) -> None:
        time.sleep(seconds)

    handle = engine.model.register_forward_pre_hook(pause)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def fail_forward(
    engine: TransformersEngine, error: BaseException, *, on_call: int = 1
) -> Iterator[ForwardCounter]:
    """Raise ``error`` from the ``on_call``-th forward pass (1 is the prompt's prefill)."""
    counter = ForwardCounter(engine.model)

    def pre_hook(module: Any, args: Any) -> None:
        if counter.calls + 1 == on_call:
            raise error

    handle = engine.model.register_forward_pre_hook(pre_hook)
    try:
        yield counter
    finally:
        handle.remove()
        counter.remove()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


async def await_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """:func:`wait_until` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return predicate()


def lock_free(engine: TransformersEngine) -> bool:
    """Whether no generation holds the model (the lock is free and can be taken at once)."""
    lock: threading.Lock = engine._generate_lock
    if not lock.acquire(blocking=False):
        return False
    lock.release()
    return True
