"""The local transformers engine: load ToolACE once, then generate, stream and batch.

The engine knows tokenizers and models, not agent frameworks: it takes role/content messages
(rendered by :mod:`toolace_integrations.format.prompt`) and returns text with a finish reason and
token counts. Loaded models are shared per process, keyed by everything that changes the weights in
memory, so every chat model or LLM pointing at the same checkpoint reuses one copy.

Every call (sync, async, streamed, batched) becomes a job of the engine's
:class:`~toolace_integrations.core.scheduling.Scheduler`, which decides what runs together; the
:class:`~toolace_integrations.local.runner.Runner` runs it on the model.

At DEBUG the ``toolace_integrations.*`` loggers say what explains a slow or odd call: batch sizes,
prompt and cached (prefix-reused) tokens, grammar compile times, call lists closed early to fit
``max_new_tokens``, prefix-cache evictions and batches yielding to newcomers. Nothing is logged
at INFO or above on the normal path.
"""

from __future__ import annotations

import importlib
import os
import queue
import threading
from collections.abc import Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import torch
from transformers import LogitsProcessorList

from toolace_integrations.core.budget import budget_closer
from toolace_integrations.core.encoding import PromptEncoder, cached_encoder
from toolace_integrations.core.forking import reset_after_fork
from toolace_integrations.core.generation import (
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    SamplingParams,
    StreamEvent,
)
from toolace_integrations.core.scheduling import (
    MAX_BATCH,
    Done,
    Job,
    Scheduler,
    ShouldYield,
    queued_check,
)
from toolace_integrations.errors import GenerationError, ModelLoadError, PromptTooLongError
from toolace_integrations.format.environment import read_bytes, read_count
from toolace_integrations.format.profiles import TOOLACE, PromptProfile
from toolace_integrations.local.decoding import RowDecoder
from toolace_integrations.local.loading import OOM_ADVICE, load_model, stop_token_ids
from toolace_integrations.local.prefix_cache import PrefixCache
from toolace_integrations.local.row_grammars import RowGrammars
from toolace_integrations.local.runner import Row, Runner


class TransformersEngine:
    """A tokenizer and model loaded once, shared by every thread and coroutine through a scheduler.

    Use :func:`load_engine` rather than the constructor, so the same checkpoint loads once.

    Args:
        spec: What to load.
        prefix_cache_entries: Key/value caches kept for prompt-prefix reuse (0 turns it off);
            by default ``TOOLACE_PREFIX_CACHE_ENTRIES`` or 32: one for each conversation of a
            full batch (16 rows) and as many again for the prompts they share, so concurrent
            agents do not evict each other's conversations.
        prefix_cache_bytes: Memory those caches may hold together; by default
            ``TOOLACE_PREFIX_CACHE_BYTES`` or 2 GiB. On CPU, the memory of the last batch's
            cache is kept for the next batch up to the same amount.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        prefix_cache_entries: int | None = None,
        prefix_cache_bytes: int | None = None,
    ) -> None:
        self.spec = spec
        if prefix_cache_entries is None:  # read first: a bad value fails before loading
            prefix_cache_entries = read_count("TOOLACE_PREFIX_CACHE_ENTRIES", 2 * MAX_BATCH)
        if prefix_cache_bytes is None:
            prefix_cache_bytes = read_bytes("TOOLACE_PREFIX_CACHE_BYTES", 2 * 1024**3)
        # The process's one encoder of this checkpoint: the adapters count tokens and detect the
        # prompt profile with the same tokenizer, so it is loaded (and copied) once.
        self.encoder = cached_encoder(spec.model, spec.revision)
        self.tokenizer = self.encoder.tokenizer
        self._template_encoder: PromptEncoder | None = None
        self.model: Any = load_model(spec)
        self.model.eval()
        embeddings: Any = self.model.get_input_embeddings()
        rows = int(embeddings.weight.shape[0])
        if (largest := max(self.tokenizer.get_vocab().values(), default=-1)) >= rows:
            raise ModelLoadError(
                f"The tokenizer of {spec.model!r} has token id {largest}, but the model embeds "
                f"only {rows} tokens: they do not belong together. Load both from one checkpoint."
            )
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.stop_token_ids = stop_token_ids(self.tokenizer, self.model)
        self.prefix_cache = PrefixCache(
            self.model.config, max_entries=prefix_cache_entries, max_bytes=prefix_cache_bytes
        )
        pad = self.model.generation_config.pad_token_id
        self.pad_id = int(pad if pad is not None else self.stop_token_ids[0])
        self._runner = Runner(
            self.model, self.prefix_cache, self.pad_id, self.stop_token_ids, self._logits_processors
        )
        self.scheduler = Scheduler(self)
        self._grammar: Any = None
        self._grammar_lock = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        """In a forked child: a parent thread may have held the grammar set-up lock."""
        self._grammar_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The id or path the model was loaded from."""
        return self.spec.model

    @property
    def _generate_lock(self) -> threading.Lock:
        """Held while the model generates (the scheduler's model lock)."""
        return self.scheduler.model_lock

    def prompt_text(
        self, messages: Sequence[Mapping[str, str]], profile: PromptProfile = TOOLACE
    ) -> str:
        """The full prompt text the chat template renders for ``messages``."""
        return self.encoder.prompt_text(messages, profile)

    def encode(
        self, messages: Sequence[Mapping[str, str]], profile: PromptProfile = TOOLACE
    ) -> list[int]:
        """Token ids of the prompt; content never becomes control tokens (see PromptEncoder)."""
        return self.encoder.encode(messages, profile)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """Yield text deltas as tokens are produced; the last event carries the result.

        Closing the iterator early (``break``) or setting ``cancel`` stops generation within a
        token and frees the model for the next caller; a call still queued behind a batch of
        other settings is released at once.
        """
        halt = _Halt(cancel)
        events: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        future = self.scheduler.start(lambda: self.prepare(request, halt, events))
        future.add_done_callback(lambda _: events.put(None))
        try:
            while (delta := self._next_delta(events, future, halt)) is not None:
                yield StreamEvent(delta)
        finally:
            halt.set()
            self.scheduler.withdraw(future)
            future.exception()  # waits, within a token, for the model to let go of this row
        result = future.result()
        yield StreamEvent("", result)

    def _next_delta(
        self,
        events: queue.SimpleQueue[str | None],
        future: Future[GenerationResult],
        halt: threading.Event,
    ) -> str | None:
        """The next text delta, ``None`` once the job is done.

        A job still queued when its caller leaves is withdrawn (released at once).
        """
        while True:
            try:
                return events.get(timeout=queued_check(future))
            except queue.Empty:
                if halt.is_set():
                    self.scheduler.withdraw(future)

    def generate(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """Generate to the end (or until ``cancel`` is set) and return the result."""
        for event in self.stream(request, cancel):
            if event.result is not None:
                return event.result
        raise GenerationError("generation ended without a result")

    def generate_batch(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event | None = None
    ) -> list[GenerationResult]:
        """Several requests at once, each as it would come out alone (greedy is identical).

        Rows decode together where their sampling settings allow (see
        :mod:`toolace_integrations.core.scheduling`); each reuses its longest cached prompt prefix.
        """
        halt = _Halt(cancel)
        jobs = [self.prepare(request, halt) for request in requests]
        return [self.scheduler.wait(future, halt) for future in self.scheduler.submit(*jobs)]

    def prepare(
        self,
        request: GenerationRequest,
        cancel: threading.Event,
        events: queue.SimpleQueue[str | None] | None = None,
    ) -> Job:
        """Encode, check and compile the grammar for ``request`` (in the caller's thread)."""
        prompt_ids = self._encoder(request).encode(request.messages, request.profile)
        sampling = request.sampling
        if self.context_window and len(prompt_ids) >= self.context_window:
            raise PromptTooLongError(len(prompt_ids), self.context_window, sampling.max_new_tokens)
        budget = sampling.max_new_tokens
        if self.context_window:
            budget = min(budget, self.context_window - len(prompt_ids))
        closer = budget_closer(self.tokenizer, request)  # None unless the grammar forces calls
        decoder = RowDecoder(
            self.tokenizer, sampling.stop, self.stop_token_ids, budget, cancel, events, closer
        )
        matcher = None
        if request.grammar_choice is not None:
            from toolace_integrations.local.grammar import tool_call_grammar

            grammar = self._grammar_constraint()
            wrappers = grammar.wrappers(request.profile.call_wrappers)
            text = tool_call_grammar(request.tools, request.grammar_choice, wrappers=wrappers)
            compiled = grammar.compile(text)
            matcher = importlib.import_module("xgrammar").GrammarMatcher(compiled)
        row = Row(prompt_ids, sampling, decoder, matcher)
        alone = sampling.cache_implementation is not None or (
            bool(sampling.temperature) and sampling.seed is not None
        )
        key: Hashable = object() if alone else _sampling_key(sampling)
        return Job(request, cancel, row, key, preemptible=not alone)

    def run(self, jobs: Sequence[Job], should_yield: ShouldYield, done: Done) -> None:
        """Run ``jobs`` as one batch (called by the scheduler, holding the model lock)."""
        by_row = {id(job.state): job for job in jobs}
        self._runner.prefix_cache = self.prefix_cache  # benchmarks swap stores on one engine
        try:
            self._runner.run(
                [job.state for job in jobs],
                should_yield=should_yield,
                on_done=lambda row, now: done(by_row[id(row)], row.result(), now),
            )
        except torch.OutOfMemoryError as error:
            raise GenerationError(OOM_ADVICE) from error

    def _encoder(self, request: GenerationRequest) -> PromptEncoder:
        if not request.checkpoint_template:
            return self.encoder
        if self._template_encoder is None:  # raises if the checkpoint ships no template
            self._template_encoder = PromptEncoder(self.tokenizer, use_checkpoint_template=True)
        return self._template_encoder

    def _logits_processors(self, rows: Sequence[Row]) -> LogitsProcessorList:
        if all(row.matcher is None for row in rows):
            return LogitsProcessorList()
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        xgrammar = importlib.import_module("xgrammar")
        return LogitsProcessorList([RowGrammars(rows, xgrammar, vocab_size)])

    def _grammar_constraint(self) -> Any:
        with self._grammar_lock:
            if self._grammar is None:
                from toolace_integrations.local.grammar import GrammarConstraint

                vocab_size = self.model.get_output_embeddings().weight.shape[0]
                self._grammar = GrammarConstraint(self.tokenizer, vocab_size, self.stop_token_ids)
            return self._grammar


def _sampling_key(sampling: SamplingParams) -> Hashable:
    """Rows decode together when ``generate`` would sample them the same way."""
    if not sampling.temperature:
        return ("greedy",)
    return ("sample", sampling.temperature, sampling.top_p)


class _Halt(threading.Event):
    """One generation's stop flag: set by its own consumer, or by the caller's ``cancel``.

    Setting it never sets ``cancel``, which a batch may share among several callers.
    """

    def __init__(self, cancel: threading.Event | None) -> None:
        super().__init__()
        self._cancel = cancel

    def is_set(self) -> bool:
        return super().is_set() or (self._cancel is not None and self._cancel.is_set())


_engines: dict[str, TransformersEngine] = {}
_engines_lock = threading.Lock()


def load_engine(spec: ModelSpec) -> TransformersEngine:
    """The process-wide engine for ``spec``, loading the checkpoint on first use.

    Specs are normalized first, so settings that load the same weights share one engine.
    """
    spec = spec.normalized(cuda=torch.cuda.is_available())
    key = spec.cache_key()
    with _engines_lock:
        if key not in _engines:
            _engines[key] = TransformersEngine(spec)
        return _engines[key]


def unload_engine(engine: Any) -> None:
    """Drop ``engine`` and its prefix caches from the registry; weights go with the last user."""
    with _engines_lock:
        key = engine.spec.cache_key()
        if _engines.get(key) is engine:
            del _engines[key]
    engine.prefix_cache.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _reset_after_fork() -> None:
    global _engines_lock
    _engines_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
