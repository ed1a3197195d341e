"""The prefix cache's memory limit holds for the memory its entries really keep.

A generation's cache has room for its whole token budget, and an answer often uses a few tokens
of it. What the cache counts must be what its tensors keep alive (their storages, which a view
keeps whole), and that must stay within ``prefix_cache_bytes``; the same for the batch memory.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from toolace_integrations.local.engine import (
    GenerationRequest,
    ModelSpec,
    SamplingParams,
    TransformersEngine,
)
from toolace_integrations.local.prefix_cache import PrefixCache

LIMIT = 256 * 1024
BUDGET = 512  # max_new_tokens: room reserved for each answer


@pytest.fixture(scope="module")
def engine(tiny_model_path: str) -> TransformersEngine:
    return TransformersEngine(
        ModelSpec(model=tiny_model_path), prefix_cache_entries=64, prefix_cache_bytes=LIMIT
    )


def _storage(tensors: list[torch.Tensor]) -> int:
    """Bytes the tensors keep alive: each distinct storage's full size, once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def _entry_tensors(cache: PrefixCache) -> list[torch.Tensor]:
    entries: list[Any] = list(cache._entries.values())
    return [
        tensor
        for entry in entries
        for layer in entry.cache.layers
        if layer.is_initialized
        for tensor in (layer.keys, layer.values)
    ]


def _request(number: int, budget: int = BUDGET) -> GenerationRequest:
    question = f"Question number {number}: what is the weather like in city {number}?"
    sampling = SamplingParams(max_new_tokens=budget, stop=(" ",))  # short answers, big room
    return GenerationRequest(({"role": "user", "content": question},), sampling)


def test_counted_bytes_are_the_storage_held_and_stay_within_the_limit(
    engine: TransformersEngine,
) -> None:
    cache = engine.prefix_cache
    cache.clear()
    for number in range(24):
        result = engine.generate(_request(number))
        assert result.completion_tokens < BUDGET // 4  # most of the reserved room went unused
        with engine.scheduler.model_lock:  # the worker has stored the answer's cache
            held = _storage(_entry_tensors(cache))
            assert held == cache.size_bytes
            assert held <= LIMIT
    assert len(cache) >= 8, "the limit should evict old entries, not keep almost none"


def test_batched_rows_are_counted_as_held_and_the_batch_memory_too(
    engine: TransformersEngine,
) -> None:
    cache = engine.prefix_cache
    cache.clear()
    memory = engine._runner.batch_memory
    for budget in (BUDGET, 16):  # a batch cache over the limit is not kept; one under it is
        engine.generate_batch([_request(number, budget) for number in range(100, 106)])
        with engine.scheduler.model_lock:
            assert _storage(_entry_tensors(cache)) == cache.size_bytes <= LIMIT
            assert len(cache) > 0
            assert _storage(memory._flat) == memory.size_bytes <= LIMIT
    assert memory.size_bytes > 0
