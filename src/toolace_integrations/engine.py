"""The local transformers engine: load ToolACE once, then generate, stream and batch.

The engine knows tokenizers and models, not agent frameworks: it takes role/content messages
(rendered by :mod:`toolace_integrations.prompt`) and returns text with a finish reason and token
counts. Loaded models are shared per process, keyed by everything that changes the weights in
memory, so every chat model or LLM pointing at the same checkpoint reuses one copy.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedModel,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer
from transformers.utils import logging as hf_logging

from toolace_integrations.encoding import PromptEncoder, load_tokenizer, offline_advice
from toolace_integrations.errors import GenerationError, ModelLoadError, PromptTooLongError
from toolace_integrations.generation import (
    FinishReason,
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    SamplingParams,
    StreamEvent,
)
from toolace_integrations.prefix_cache import PrefixCache

_END_TOKENS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")


class TransformersEngine:
    """A tokenizer and model loaded once, generating under a lock so threads can share it.

    Use :func:`load_engine` rather than the constructor, so the same checkpoint loads once.

    Args:
        spec: What to load.
        prefix_cache_entries: Key/value caches kept for prompt-prefix reuse (0 turns it off);
            by default ``TOOLACE_PREFIX_CACHE_ENTRIES`` or 4.
        prefix_cache_bytes: Memory those caches may hold together; by default
            ``TOOLACE_PREFIX_CACHE_BYTES`` or 2 GiB.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        prefix_cache_entries: int | None = None,
        prefix_cache_bytes: int | None = None,
    ) -> None:
        self.spec = spec
        self.tokenizer = load_tokenizer(spec.model, spec.revision)
        self.encoder = PromptEncoder(self.tokenizer)
        self.model: Any = _load_model(spec)
        self.model.eval()
        embeddings: Any = self.model.get_input_embeddings()
        rows = int(embeddings.weight.shape[0])
        if (largest := max(self.tokenizer.get_vocab().values(), default=-1)) >= rows:
            raise ModelLoadError(
                f"The tokenizer of {spec.model!r} has token id {largest}, but the model embeds "
                f"only {rows} tokens: they do not belong together. Load both from one checkpoint."
            )
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self.stop_token_ids = _stop_token_ids(self.tokenizer, self.model)
        if prefix_cache_entries is None:
            prefix_cache_entries = int(os.environ.get("TOOLACE_PREFIX_CACHE_ENTRIES", 4))
        if prefix_cache_bytes is None:
            prefix_cache_bytes = int(os.environ.get("TOOLACE_PREFIX_CACHE_BYTES", 2 * 1024**3))
        self.prefix_cache = PrefixCache(
            self.model.config, max_entries=prefix_cache_entries, max_bytes=prefix_cache_bytes
        )
        self._generate_lock = threading.Lock()
        self._grammar: Any = None
        self._grammar_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The id or path the model was loaded from."""
        return self.spec.model

    def prompt_text(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The full prompt text the chat template renders for ``messages``."""
        return self.encoder.prompt_text(messages)

    def encode(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of the prompt; content never becomes control tokens (see PromptEncoder)."""
        return self.encoder.encode(messages)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """Yield text deltas as tokens are produced; the last event carries the result.

        Closing the iterator early (``break``) or setting ``cancel`` stops generation within a
        token and frees the model for the next caller.
        """
        halt = _Halt(cancel)
        prompt_ids = self._checked_prompt(request)
        decoder = _IncrementalDecoder(self.tokenizer, request.sampling.stop, halt)
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = self._generate_ids(request, prompt_ids, decoder, halt)
            except BaseException as error:  # re-raised in the consumer thread below
                outcome["error"] = error
            finally:
                decoder.events.put(None)

        worker = threading.Thread(target=run, name="toolace-generate", daemon=True)
        worker.start()
        try:
            while (delta := decoder.events.get()) is not None:
                yield StreamEvent(delta)
        finally:
            halt.set()
            worker.join()
        error = outcome.get("error")
        if isinstance(error, torch.OutOfMemoryError):
            raise GenerationError(_OOM_ADVICE) from error
        if error is not None:
            raise error
        yield StreamEvent(decoder.flush(), replace(outcome["result"], text=decoder.final_text()))

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
        """Run prompts with equal sampling settings as one left-padded ``generate`` call.

        Requests with different sampling settings, and constrained and free requests, are grouped,
        one ``generate`` per group. A
        group of one takes the single-prompt path, which reuses cached prompt prefixes.
        """
        results: dict[int, GenerationResult] = {}
        groups: dict[tuple[SamplingParams, bool], list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault((request.sampling, request.grammar_choice is None), []).append(index)
        for indices in groups.values():
            batch = [requests[i] for i in indices]
            if len(batch) == 1:
                outputs = [self.generate(batch[0], cancel)]
            else:
                outputs = self._generate_group(batch, cancel or threading.Event())
            for index, result in zip(indices, outputs, strict=True):
                results[index] = result
        return [results[i] for i in range(len(requests))]

    def _generate_group(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event
    ) -> list[GenerationResult]:
        prompts = [self._checked_prompt(request) for request in requests]
        sampling = requests[0].sampling
        width = max(len(p) for p in prompts)
        pad = self.model.generation_config.pad_token_id
        pad_id = int(pad if pad is not None else self.stop_token_ids[0])
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        processors = self._logits_processors(requests)
        with self._model_turn(cancel) as granted, torch.inference_mode():
            if not granted:
                return [GenerationResult("", "stop", len(p), 0) for p in prompts]
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            try:
                output = self.model.generate(
                    input_ids=input_ids.to(self.model.device),
                    attention_mask=attention.to(self.model.device),
                    generation_config=self._generation_config(sampling, pad_id),
                    logits_processor=processors,
                    stopping_criteria=StoppingCriteriaList([_CancelCriteria(cancel)]),
                )
            except torch.OutOfMemoryError as error:
                raise GenerationError(_OOM_ADVICE) from error
        results = []
        for prompt, row in zip(prompts, output.sequences[:, width:].tolist(), strict=True):
            tokens = _until_stop(row, self.stop_token_ids)
            decoded = self.tokenizer.decode(tokens, skip_special_tokens=True)
            text, stopped = _cut_at_stop(decoded, sampling.stop)
            ended = stopped or len(tokens) < len(row)
            count = len(tokens) + (len(tokens) < len(row))
            results.append(
                GenerationResult(text, "stop" if ended else "length", len(prompt), count)
            )
        return results

    def _checked_prompt(self, request: GenerationRequest) -> list[int]:
        prompt_ids = self.encode(request.messages)
        if self.context_window and len(prompt_ids) >= self.context_window:
            raise PromptTooLongError(
                len(prompt_ids), self.context_window, request.sampling.max_new_tokens
            )
        return prompt_ids

    def _generate_ids(
        self,
        request: GenerationRequest,
        prompt_ids: list[int],
        decoder: _IncrementalDecoder,
        cancel: threading.Event,
    ) -> GenerationResult:
        sampling = request.sampling
        max_new_tokens = sampling.max_new_tokens
        if self.context_window:
            max_new_tokens = min(max_new_tokens, self.context_window - len(prompt_ids))
        pad = self.model.generation_config.pad_token_id
        pad_id = int(pad if pad is not None else self.stop_token_ids[0])
        config = self._generation_config(
            replace(sampling, max_new_tokens=max_new_tokens, stop=(), seed=None), pad_id
        )
        processors = self._logits_processors([request])
        with self._model_turn(cancel) as granted, torch.inference_mode():
            if not granted:
                return GenerationResult("", "stop", len(prompt_ids), 0)
            reuse_prefixes = sampling.reuse_prefix and sampling.cache_implementation is None
            hit = self.prefix_cache.lookup(prompt_ids) if reuse_prefixes else None
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            output = self.model.generate(
                input_ids=torch.tensor([prompt_ids], device=self.model.device),
                attention_mask=torch.ones(
                    1, len(prompt_ids), dtype=torch.long, device=self.model.device
                ),
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([_CancelCriteria(cancel)]),
                streamer=decoder,
                cache=hit.cache if hit else None,
            )
            generated = output.sequences[0, len(prompt_ids) :].tolist()
            cache = output.cache
            covered = len(prompt_ids) + len(generated) - 1
            if reuse_prefixes and cache is not None and cache.get_seq_length() == covered:
                self.prefix_cache.store(
                    prompt_ids + generated[:-1], cache, prompt_tokens=len(prompt_ids)
                )
        tokens = _until_stop(generated, self.stop_token_ids)
        hit_stop = len(tokens) < len(generated) or decoder.stopped
        finish: FinishReason = "stop" if hit_stop or len(generated) < max_new_tokens else "length"
        return GenerationResult(
            "", finish, len(prompt_ids), len(generated), hit.reused_tokens if hit else 0
        )

    @contextmanager
    def _model_turn(self, cancel: threading.Event) -> Iterator[bool]:
        """Hold the model for one generation; ``False`` if ``cancel`` came first.

        A caller queued behind another generation can give up without ever running.
        """
        while not self._generate_lock.acquire(timeout=0.02):
            if cancel.is_set():
                yield False
                return
        try:
            yield True
        finally:
            self._generate_lock.release()

    def _generation_config(self, sampling: SamplingParams, pad_id: int) -> GenerationConfig:
        sample = bool(sampling.temperature)
        return GenerationConfig(
            max_new_tokens=sampling.max_new_tokens,
            do_sample=sample,
            temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None,
            top_k=None,
            eos_token_id=list(self.stop_token_ids),
            pad_token_id=pad_id,
            return_dict_in_generate=True,
            cache_implementation=sampling.cache_implementation,
        )

    def _logits_processors(self, requests: Sequence[GenerationRequest]) -> LogitsProcessorList:
        constrained = [(r.tools, r.grammar_choice) for r in requests if r.grammar_choice]
        if not constrained:
            return LogitsProcessorList()
        if len(constrained) != len(requests):
            raise ValueError("a batch must be constrained for every row or for none")
        grammar = self._grammar_constraint()
        if len(requests) == 1:
            tools, choice = constrained[0]
            return LogitsProcessorList([grammar.logits_processor(tools, choice)])
        return LogitsProcessorList([grammar.batch_logits_processor(constrained)])

    def _grammar_constraint(self) -> Any:
        with self._grammar_lock:
            if self._grammar is None:
                from toolace_integrations.grammar import GrammarConstraint

                vocab_size = self.model.get_output_embeddings().weight.shape[0]
                self._grammar = GrammarConstraint(self.tokenizer, vocab_size, self.stop_token_ids)
            return self._grammar


class _IncrementalDecoder(BaseStreamer):
    """Turns token ids from ``generate`` into text deltas and watches for stop strings."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], cancel: threading.Event) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.cancel = cancel
        self.events: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.stopped = False
        self._prompt_seen = False
        self._ids: list[int] = []
        self._sent = 0

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._ids += value.reshape(-1).tolist()
        self._emit(final=False)

    def end(self) -> None:
        """Called by ``generate`` at the end; :meth:`flush` sends what is left."""

    def flush(self) -> str:
        """The text not yet sent as a delta."""
        return self._emit(final=True, to_queue=False)

    def final_text(self) -> str:
        """The whole answer, cut at the first stop string."""
        return _cut_at_stop(self._decoded(), self.stop)[0]

    def _decoded(self) -> str:
        text: str = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        return text

    def _emit(self, *, final: bool, to_queue: bool = True) -> str:
        text = self._decoded()
        if self.stop:
            text, found = _cut_at_stop(text, self.stop)
            if found:
                self.stopped = True
                self.cancel.set()
                final = True
        if not final:
            text = text.rstrip("\ufffd")
            held = max((len(s) - 1 for s in self.stop), default=0)
            text = text[: max(self._sent, len(text) - held)]
        delta, self._sent = text[self._sent :], max(self._sent, len(text))
        if delta and to_queue:
            self.events.put(delta)
        return delta


class _Halt(threading.Event):
    """One generation's stop flag: set by its own consumer, or by the caller's ``cancel``.

    Setting it never sets ``cancel``, which a batch may share among several callers.
    """

    def __init__(self, cancel: threading.Event | None) -> None:
        super().__init__()
        self._cancel = cancel

    def is_set(self) -> bool:
        return super().is_set() or (self._cancel is not None and self._cancel.is_set())


class _CancelCriteria(StoppingCriteria):
    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> Any:
        done = self.cancel.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _until_stop(tokens: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    for index, token in enumerate(tokens):
        if token in stop_ids:
            return list(tokens[:index])
    return list(tokens)


def _stop_token_ids(tokenizer: Any, model: PreTrainedModel) -> tuple[int, ...]:
    ids: list[int] = []
    eos = model.generation_config.eos_token_id
    ids += eos if isinstance(eos, list) else [eos] if eos is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in _END_TOKENS if token in vocab]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(int(i) for i in ids))


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


def _load_model(spec: ModelSpec) -> PreTrainedModel:
    cuda = torch.cuda.is_available()
    known_dtype = isinstance(getattr(torch, spec.dtype or "", None), torch.dtype)
    if spec.dtype not in (None, "auto") and not known_dtype:
        raise ModelLoadError(
            f"dtype={spec.dtype!r} is not a torch dtype; use 'bfloat16' (GPU), 'float16', "
            "'float32' (CPU) or 'auto' (the checkpoint's own)."
        )
    if not cuda and "cuda" in json.dumps(spec.device_map, default=str):
        raise ModelLoadError(
            f"device_map={spec.device_map!r} asks for CUDA, but this torch build sees no CUDA GPU "
            f"(torch {torch.__version__}). Install a CUDA build of torch, or leave device_map "
            "unset to run on the CPU."
        )
    options: dict[str, Any] = {
        "dtype": spec.dtype or ("bfloat16" if cuda else "float32"),
        "device_map": spec.device_map or ("auto" if cuda else None),
        "trust_remote_code": False,
        **spec.model_kwargs,
    }
    for name in ("revision", "attn_implementation", "quantization_config"):
        if getattr(spec, name) is not None:
            options[name] = getattr(spec, name)
    try:
        with _quiet_progress():
            model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(spec.model, **options)
    except torch.OutOfMemoryError as error:
        raise GenerationError(_OOM_ADVICE) from error
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{offline_advice(spec.model)} Cause: {error}") from error
    except (TypeError, ImportError) as error:  # a load option nothing accepts; a missing extra
        raise ModelLoadError(
            f"Loading {spec.model!r} failed on its options ({type(error).__name__}: {error}). "
            "Check model_kwargs (and quantization_config), and install any package named here."
        ) from error
    except Exception as error:  # e.g. safetensors' SafetensorError on corrupt weights
        raise ModelLoadError(
            f"Could not load the weights of {spec.model!r} ({type(error).__name__}: {error}). "
            "The files may be corrupt or incomplete: download them again."
        ) from error
    return model


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """No "Loading weights" bar unless the user made transformers' logging INFO or chattier."""
    quiet = hf_logging.get_verbosity() > logging.INFO and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet:
            hf_logging.enable_progress_bar()


_OOM_ADVICE = (
    "The GPU ran out of memory. Load the model 4-bit or 8-bit "
    "(model_kwargs={'quantization_config': BitsAndBytesConfig(load_in_4bit=True)}), lower "
    "max_new_tokens, shorten the conversation, or set device_map='auto' to spread layers."
)
