"""One model runner for single and batched generation: prefill, padding, the ``generate`` call.

Every row is first brought to "all but its last token cached", alone (batch size 1): its
longest cached prefix is taken from the
:class:`~toolace_integrations.local.prefix_cache.PrefixCache` and only the rest is prefilled. In a
batch each row is built directly in its slot of the batch cache (left-padded to the longest row),
and a prompt a row mostly computed is stored before the next row looks up, so a prefix several rows
share (the system prompt and tool list) is prefilled once and copied. The rows then decode together
in one ``generate`` call, each fed only its last token: the uncached parts all have length one, so
no row is padded in the middle and every row computes what it computes alone.

A segment may end before its rows are done (the scheduler asks it to yield so that newcomers
can join, or to drop finished rows): each unfinished row keeps its own cache, covering all but
its last token, and the next segment continues it exactly where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    DynamicCache,
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from toolace_integrations.core.generation import GenerationResult, SamplingParams
from toolace_integrations.local.decoding import RowDecoder
from toolace_integrations.local.prefix_cache import BatchMemory, PrefixCache, RoomyLayer, copy_rows

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Row:
    """One request's generation state, carried from segment to segment.

    Attributes:
        prompt_ids: The prompt's token ids.
        sampling: Decoding settings.
        decoder: The answer so far and the finish rules.
        matcher: The row's xgrammar ``GrammarMatcher`` (``None`` for free decoding).
        cache: Keys and values for the first ``covered`` tokens of :attr:`ids`.
        covered: How many tokens ``cache`` holds (``len(ids) - 1`` once prefilled).
        cached_prompt_tokens: Prompt tokens taken from the prefix cache instead of computed.
        continues: The prefix-cache entry this row's conversation continues (copied, in a batch),
            superseded by the row's own entry when it is done.
    """

    prompt_ids: list[int]
    sampling: SamplingParams
    decoder: RowDecoder
    matcher: Any = None
    cache: DynamicCache | None = None
    covered: int = 0
    cached_prompt_tokens: int = 0
    continues: tuple[int, ...] | None = None
    _accepted: int = 0
    _reported: bool = False

    @property
    def ids(self) -> list[int]:
        """Prompt and generated tokens."""
        return self.prompt_ids + self.decoder.tokens

    @property
    def static(self) -> bool:
        """A fixed-size (compiled) cache: generated in one ``generate`` call, no reuse."""
        return self.sampling.cache_implementation is not None

    def result(self) -> GenerationResult:
        """The row's result (call once it is done)."""
        closed = self.decoder.closed_early
        finish = "length" if closed else self.decoder.finish or "stop"
        tokens = len(self.decoder.tokens)
        return GenerationResult(
            self.decoder.answer,
            finish,
            len(self.prompt_ids),
            tokens,
            self.cached_prompt_tokens,
            closed_early=closed,
        )


class Runner:
    """Runs segments of rows on one model.

    Args:
        model: The loaded causal LM.
        prefix_cache: Caches of earlier prompts.
        pad_id: The token that fills padding.
        stop_ids: End tokens.
        logits_processors: Extra processors for a segment's rows (the tool-call grammar).
    """

    def __init__(
        self,
        model: Any,
        prefix_cache: PrefixCache,
        pad_id: int,
        stop_ids: Sequence[int],
        logits_processors: Callable[[Sequence[Row]], LogitsProcessorList],
    ) -> None:
        self.model = model
        self.prefix_cache = prefix_cache
        self.pad_id = pad_id
        self.stop_ids = tuple(stop_ids)
        self.logits_processors = logits_processors
        self.batch_memory = BatchMemory(model.device, prefix_cache.max_bytes)
        _, heads, _, size = self._layer_shape(1, 1)
        token_bytes = 2 * model.config.num_hidden_layers * heads * size * model.dtype.itemsize
        self.copy_seconds_per_token = token_bytes / 2e9
        """Cost of re-arranging one cached token of a row (for yield decisions): a guess of
        2 GB/s until a batch measures it."""

    def prefill(self, row: Row, *, into: DynamicCache | None = None) -> None:
        """Cache all of ``row`` but its last token, reusing the longest cached prefix.

        Alone (``into`` is ``None``) a cached conversation the row continues is taken over;
        in a batch the row is built in ``into``, its slot of the batch cache.
        """
        ids = row.ids
        target = len(ids) - 1
        reuse = row.sampling.reuse_prefix
        room = target + row.decoder.remaining + 1  # decoding writes into this room in place
        hit = None
        if reuse:
            hit = self.prefix_cache.lookup(ids, take=into is None, room=room, into=into)
        cache = hit.cache if hit else into or self._empty_cache(room)
        start = hit.reused_tokens if hit else 0
        row.cached_prompt_tokens = start
        row.continues = hit.continues if hit else None
        if start < target:
            with torch.inference_mode():
                # The decoder alone: the keys and values are all a prefill needs, not logits.
                self.model.get_decoder()(
                    input_ids=torch.tensor([ids[start:target]], device=self.model.device),
                    cache=cache,
                    use_cache=True,
                )
        row.cache, row.covered = cache, target
        if reuse and into is not None and target - start > start:
            # Mostly computed here: the next rows of this batch may share it. A row that only
            # extended a cached prefix would store a near copy and evict something useful.
            own = copy_rows(cache, self.model.config, 0, 0, target)  # the slot is reused
            self.prefix_cache.store(ids[:target], own, prompt_tokens=target)

    def _empty_cache(self, room: int) -> DynamicCache:
        cache = DynamicCache(config=self.model.config)
        for layer in range(self.model.config.num_hidden_layers):
            keys = torch.empty(
                self._layer_shape(1, room), dtype=self.model.dtype, device=self.model.device
            )
            cache.layers[layer] = RoomyLayer(keys, torch.empty_like(keys), 0)
        return cache

    def _layer_shape(self, rows: int, room: int) -> tuple[int, int, int, int]:
        """The shape of one layer's keys (and values) for ``rows`` rows of ``room`` tokens."""
        config = self.model.config
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return rows, heads, room, size

    def run(
        self,
        rows: Sequence[Row],
        *,
        should_yield: Callable[[int, int], bool],
        on_done: Callable[[Row, bool], None],
    ) -> None:
        """Generate for ``rows`` until each is done or ``should_yield(live, remaining)`` says so.

        ``on_done(row, others_live)`` is called as each row finishes; rows still running when
        the segment yields keep their cache for the next segment.
        """
        rows = [row for row in rows if not self._report(row, rows, on_done)]
        if not rows:
            return
        try:
            alone = len(rows) == 1
            budget = max(row.decoder.remaining for row in rows)
            if rows[0].static:  # the whole prompt goes to ``generate``, into a fresh static cache
                for row in rows:
                    row.covered = len(row.ids) - 1
                cache = None
            elif alone:  # its own cache, with room from the prefill: nothing to copy
                if rows[0].cache is None:
                    self.prefill(rows[0])
                cache = rows[0].cache if rows[0].covered else None
            else:
                cache = self._batch_cache(rows, budget + 1)
            sampling = rows[0].sampling
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "decoding a batch of %d rows, up to %d new tokens; prompt tokens %s, "
                    "cached prompt tokens (prefix cache) %s", len(rows), budget,
                    [len(row.prompt_ids) for row in rows], [r.cached_prompt_tokens for r in rows],
                )  # fmt: skip
            width = max(row.covered for row in rows)
            input_ids = torch.tensor(
                [[self.pad_id] * (width - row.covered) + row.ids for row in rows],
                device=self.model.device,
            )
            attention = torch.tensor(
                [[0] * (width - row.covered) + [1] * (row.covered + 1) for row in rows],
                device=self.model.device,
            )
            report = lambda row: self._report(row, rows, on_done)  # noqa: E731
            criteria = _SegmentCriteria(rows, report, should_yield, self.copy_seconds_per_token)
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    generation_config=self._config(sampling, budget),
                    logits_processor=self.logits_processors(rows),
                    stopping_criteria=StoppingCriteriaList([criteria]),
                    streamer=criteria.streamer,
                    cache=cache,
                )
            for index, row in enumerate(rows):
                self._keep_cache(row, index, output.cache, width, alone)
                self._report(row, rows, on_done)
        except BaseException:
            self.batch_memory.release()  # rows may still hold slots of the batch cache
            raise

    def _batch_cache(self, rows: Sequence[Row], room: int) -> DynamicCache | None:
        """One cache for ``rows``, left-padded to the longest, with ``room`` more tokens.

        Each row is built in its own slot: prefilled there, or copied in once when it continues
        from the last segment. Copying is timed, for the yield decisions.
        """
        covered = [row.covered if row.cache is not None else len(row.ids) - 1 for row in rows]
        width = max(covered)
        if width == 0:
            for row in rows:
                row.covered = 0
            return None
        tensors = self.batch_memory.tensors(
            2 * self.model.config.num_hidden_layers,
            self._layer_shape(len(rows), width + room),
            self.model.dtype,
            self.model.device,
        )
        layers = list(zip(tensors[::2], tensors[1::2], strict=True))
        copied, copying = 0, 0.0
        for index, (row, length) in enumerate(zip(rows, covered, strict=True)):
            pad = width - length
            slot = DynamicCache(config=self.model.config)
            for number, (keys, values) in enumerate(layers):
                keys[index, :, :pad] = 0  # masked, but must not be NaN
                values[index, :, :pad] = 0
                slot.layers[number] = RoomyLayer(
                    keys[index : index + 1, :, pad:], values[index : index + 1, :, pad:], 0
                )
            if row.cache is None:
                self.prefill(row, into=slot)
                continue
            started = time.perf_counter()
            owned: list[Any] = list(row.cache.layers)
            into: list[Any] = list(slot.layers)
            for own, layer in zip(owned, into, strict=False):
                if own.is_initialized:
                    layer.update(own.keys[..., :length, :], own.values[..., :length, :])
            copying += time.perf_counter() - started
            copied += length
            row.cache = slot
        if copied:
            self.copy_seconds_per_token = copying / copied
        batch = DynamicCache(config=self.model.config)
        for number, (keys, values) in enumerate(layers):
            batch.layers[number] = RoomyLayer(keys, values, width)
        return batch

    def _keep_cache(
        self, row: Row, index: int, cache: DynamicCache | None, width: int, alone: bool
    ) -> None:
        """Give ``row`` its slice of the segment's cache; a finished row's goes to the store."""
        covered = len(row.ids) - 1
        if cache is None or row.static:
            row.cache = None
            return
        if alone:
            extra = cache.get_seq_length() - covered
            if extra > 0:
                cache.crop(-extra)
            own = cache
        else:
            own = copy_rows(cache, self.model.config, index, width - row.covered, covered)
        row.cache, row.covered = own, covered
        if row.decoder.done:
            if row.sampling.reuse_prefix and own.get_seq_length() == covered:
                self.prefix_cache.store(
                    row.ids[:covered],
                    own,
                    prompt_tokens=len(row.prompt_ids),
                    supersedes=row.continues,
                )
            row.cache = None

    def _report(self, row: Row, rows: Sequence[Row], on_done: Callable[[Row, bool], None]) -> bool:
        if row.decoder.done and not row._reported:
            row._reported = True
            closed = row.decoder.closed_early
            logger.debug(
                "row finished (%s) after %d new tokens%s",
                row.decoder.finish or "stop",
                len(row.decoder.tokens),
                "; its call list was closed early to fit max_new_tokens" if closed else "",
            )
            on_done(row, any(not other.decoder.done for other in rows))
        return row.decoder.done

    def _config(self, sampling: SamplingParams, max_new_tokens: int) -> GenerationConfig:
        sample = bool(sampling.temperature)
        return GenerationConfig(
            max_new_tokens=max(max_new_tokens, 1),
            do_sample=sample,
            temperature=sampling.temperature if sample else None,
            top_p=sampling.top_p if sample else None,
            top_k=None,
            eos_token_id=list(self.stop_ids),
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            cache_implementation=sampling.cache_implementation,
        )


class _SegmentCriteria(StoppingCriteria):
    """Per-row stop flags for ``generate``, the rows' streamer, and the scheduler's yield.

    Yielding costs a re-arrangement of the live rows' caches (twice: out and back in); it is
    offered to the scheduler only when waiting for the rest of the segment costs more.
    """

    def __init__(
        self,
        rows: Sequence[Row],
        report: Callable[[Row], bool],
        should_yield: Callable[[int, int], bool],
        copy_seconds_per_token: float,
    ) -> None:
        self.rows = rows
        self.report = report
        self.should_yield = should_yield
        self.copy_seconds_per_token = copy_seconds_per_token
        self.streamer = _RowsStreamer(rows, report)
        self._last = time.perf_counter()

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> Any:
        now = time.perf_counter()
        step, self._last = now - self._last, now
        done = [self.report(row) for row in self.rows]
        live = [row for row, finished in zip(self.rows, done, strict=True) if not finished]
        if live:
            remaining = max(row.decoder.remaining for row in live)
            rearranging = 2 * self.copy_seconds_per_token * sum(len(row.ids) for row in live)
            if remaining * step > rearranging and self.should_yield(len(live), remaining):
                done = [True] * len(done)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _RowsStreamer(BaseStreamer):
    """Hands each new token of ``generate`` to its row's decoder."""

    def __init__(self, rows: Sequence[Row], report: Callable[[Row], bool]) -> None:
        self.rows = rows
        self.report = report
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(-1).tolist(), strict=True):
            if not row.decoder.done:
                row.decoder.push(int(token))
                self.report(row)

    def end(self) -> None:
        """Nothing to flush: each row's decoder releases its own text."""
