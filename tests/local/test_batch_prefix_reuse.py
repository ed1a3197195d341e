"""Batched rows reuse cached prefixes and still answer exactly as each does alone.

An agent server sends the same system prompt and tool list with every request; a batch must
compute that shared prefix once and start every row from its longest cached prefix, and greedy
output must be the same row by row as running each request alone, with and without the cache.
"""

from __future__ import annotations

import pytest
import torch

from toolace_integrations.local.engine import (
    GenerationRequest,
    ModelSpec,
    SamplingParams,
    TransformersEngine,
)
from toolace_integrations.local.prefix_cache import BatchMemory

SYSTEM = {"role": "system", "content": "You call tools: get_weather(city), get_time(city). " * 30}
QUESTIONS = ["Weather in Paris?", "Time in Tokyo, please.", "Hi", "Tell me about the sea today."]


@pytest.fixture(scope="module")
def cached(tiny_model_path: str) -> TransformersEngine:
    return TransformersEngine(ModelSpec(model=tiny_model_path), prefix_cache_entries=16)


@pytest.fixture(scope="module")
def uncached(tiny_model_path: str) -> TransformersEngine:
    return TransformersEngine(ModelSpec(model=tiny_model_path), prefix_cache_entries=0)


def _request(question: str, tokens: int = 12, **sampling: object) -> GenerationRequest:
    params = SamplingParams(max_new_tokens=tokens, **sampling)  # type: ignore[arg-type]
    return GenerationRequest((SYSTEM, {"role": "user", "content": question}), params)


def _alone(engine: TransformersEngine, requests: list[GenerationRequest]) -> list[tuple[object]]:
    return [_observable(engine.generate(r)) for r in requests]


def _observable(result: object) -> tuple[object, ...]:
    return (result.text, result.finish_reason, result.prompt_tokens, result.completion_tokens)  # type: ignore[attr-defined]


def test_cold_batch_prefills_the_shared_prefix_once_and_equals_each_row_alone(
    cached: TransformersEngine, uncached: TransformersEngine
) -> None:
    requests = [_request(q) for q in QUESTIONS]
    reference = _alone(uncached, requests)
    cached.prefix_cache.clear()
    prefilled: list[int] = []
    hook = cached.model.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: prefilled.append(kwargs["input_ids"].shape[1]),
        with_kwargs=True,
    )
    try:
        batched = cached.generate_batch(requests)
    finally:
        hook.remove()
    assert [_observable(r) for r in batched] == reference
    shared = len(cached.encode([SYSTEM])) - 8  # the system turn, less its closing tokens
    reused = [r.cached_prompt_tokens for r in batched]
    assert reused[0] == 0 and min(reused[1:]) >= shared, reused
    prompt_tokens = sum(r.prompt_tokens for r in batched)
    # Every prompt token beyond the shared prefix is computed once; the prefix itself once.
    assert sum(n for n in prefilled if n > 1) <= prompt_tokens - 3 * shared


def test_warm_batch_starts_each_row_from_its_longest_cached_prefix(
    cached: TransformersEngine, uncached: TransformersEngine
) -> None:
    first = [_request(q) for q in QUESTIONS]
    answers = cached.generate_batch(first)
    follow_ups = [
        GenerationRequest(
            (
                *request.messages,
                {"role": "assistant", "content": answer.text},
                {"role": "user", "content": f"And step {i}?"},
            ),
            SamplingParams(max_new_tokens=10),
        )
        for i, (request, answer) in enumerate(zip(first, answers, strict=True))
    ]
    reference = _alone(uncached, follow_ups)
    batched = cached.generate_batch(follow_ups)
    assert [_observable(r) for r in batched] == reference
    for request, result in zip(first, batched, strict=True):
        own_turn = len(cached.encode(request.messages))
        assert result.cached_prompt_tokens >= own_turn - 1, "a row restarted its own conversation"


def test_caches_kept_from_a_batch_survive_the_next_batch_on_the_same_memory(
    cached: TransformersEngine, uncached: TransformersEngine
) -> None:
    """The next batch reuses the last one's memory; what the store kept of it must not change."""
    cached.prefix_cache.clear()
    first = [_request(q, tokens=6) for q in QUESTIONS[:2]]
    answers = cached.generate_batch(first)
    cached.generate_batch([_request("Other question.", tokens=4), _request("Another.", tokens=4)])
    follow_ups = [
        GenerationRequest(
            (*request.messages, {"role": "assistant", "content": answer.text}),
            SamplingParams(max_new_tokens=8),
        )
        for request, answer in zip(first, answers, strict=True)
    ]
    results = [cached.generate(request) for request in follow_ups]
    assert [_observable(r) for r in results] == _alone(uncached, follow_ups)
    for request, result in zip(first, results, strict=True):
        assert result.cached_prompt_tokens >= len(cached.encode(request.messages)) - 1


def test_mixed_lengths_constraints_and_budgets_equal_alone(
    cached: TransformersEngine, uncached: TransformersEngine
) -> None:
    from toolace_integrations.format.tools import FunctionSpec, ToolChoice

    weather = FunctionSpec(
        "get_weather", "Weather.", {"type": "object", "properties": {"city": {"type": "string"}}}
    )
    forced = GenerationRequest(
        (SYSTEM, {"role": "user", "content": "Weather in Paris?"}),
        SamplingParams(max_new_tokens=30),
        (weather,),
        ToolChoice("required"),
        constrained=True,
    )
    requests = [
        forced,
        _request("Hi", tokens=3),
        _request("A long question " * 20, tokens=20),
        _request("Stop early", tokens=20, stop=("e",)),
    ]
    reference = _alone(uncached, requests)
    assert [_observable(r) for r in cached.generate_batch(requests)] == reference
    assert reference[0][0].startswith("[get_weather(")  # type: ignore[union-attr]


def test_batch_clamps_new_tokens_to_the_context_window(cached: TransformersEngine) -> None:
    window = cached.context_window

    def prompt(words: int) -> GenerationRequest:
        return GenerationRequest(
            ({"role": "user", "content": "word " * words},), SamplingParams(max_new_tokens=500)
        )

    base = len(cached.encode(prompt(0).messages))
    per_word = len(cached.encode(prompt(100).messages)) - base
    long = prompt((window - 30 - base) * 100 // per_word)
    tokens = len(cached.encode(long.messages))
    assert window - 60 < tokens < window - 10
    results = cached.generate_batch([long, _request("Hi", tokens=500)])  # one batch
    assert results[0].prompt_tokens + results[0].completion_tokens <= window
    assert results[0].finish_reason == "length" or results[0].completion_tokens < window - tokens


def test_batch_memory_is_reused_on_cpu_and_bounded() -> None:
    """Batch caches reuse the last batch's memory; beyond the bound a batch gets its own."""
    cpu = torch.device("cpu")
    memory = BatchMemory(cpu, max_bytes=32_000)
    first = memory.tensors(2, (1, 2, 100, 4), torch.float32, cpu)  # 2 x 3,200 bytes
    smaller = memory.tensors(2, (2, 2, 20, 4), torch.float32, cpu)
    assert [t.data_ptr() for t in smaller] == [t.data_ptr() for t in first]
    assert smaller[0].shape == (2, 2, 20, 4) and smaller[0].is_contiguous()
    large = memory.tensors(2, (1, 2, 1000, 4), torch.float32, cpu)  # 2 x 32,000 bytes
    assert all(t.untyped_storage().nbytes() == 32_000 for t in large)
    again = memory.tensors(2, (1, 2, 100, 4), torch.float32, cpu)
    assert [t.data_ptr() for t in again] == [t.data_ptr() for t in first]


def test_batched_follow_ups_replace_the_conversation_they_continue(
    cached: TransformersEngine,
) -> None:
    """A conversation continued in a batch leaves one cache, even when the answer sent back is
    not the tokens generated (a re-tokenized answer is no prefix of the new conversation)."""
    cached.prefix_cache.clear()
    first = _request("Weather in Paris?", tokens=6)
    cached.generate(first)
    assert len(cached.prefix_cache) == 1
    follow_ups = [
        GenerationRequest(
            (
                *first.messages,
                {"role": "assistant", "content": "Some other answer."},
                {"role": "user", "content": question},
            ),
            SamplingParams(max_new_tokens=6),
        )
        for question in ("And Lyon?", "And Rome?")
    ]
    results = cached.generate_batch(follow_ups)
    assert all(r.cached_prompt_tokens >= len(cached.encode(first.messages)) - 1 for r in results)
    assert len(cached.prefix_cache) == 2  # the two new conversations, not the one they continued
