"""The local engine on a tiny offline checkpoint: real from_pretrained, tokenizer and generate."""

from __future__ import annotations

import threading

import pytest
import torch

from toolace_integrations.errors import ModelLoadError, PromptTooLongError
from toolace_integrations.local.engine import (
    GenerationRequest,
    ModelSpec,
    SamplingParams,
    TransformersEngine,
    load_engine,
)


@pytest.fixture(scope="module")
def engine(tiny_model_path: str) -> TransformersEngine:
    return load_engine(ModelSpec(model=tiny_model_path))


def request(text: str = "Tell me a story.", **sampling: object) -> GenerationRequest:
    params = SamplingParams(**{"max_new_tokens": 24, **sampling})  # type: ignore[arg-type]
    return GenerationRequest(({"role": "user", "content": text},), params)


def test_same_spec_loads_once_and_context_window_comes_from_config(
    engine: TransformersEngine, tiny_model_path: str
) -> None:
    assert load_engine(ModelSpec(model=tiny_model_path)) is engine
    assert engine.context_window == 4096
    assert str(engine.model.dtype) == "torch.float32"


def test_generate_reports_text_finish_reason_and_usage(engine: TransformersEngine) -> None:
    result = engine.generate(request(max_new_tokens=7, temperature=1.0, seed=3))
    assert result.finish_reason == "length"
    assert result.completion_tokens == 7
    assert result.prompt_tokens == len(engine.encode(request().messages))
    assert result.text


def test_greedy_is_default_and_seeded_sampling_repeats(engine: TransformersEngine) -> None:
    assert engine.generate(request()).text == engine.generate(request()).text
    first = engine.generate(request(temperature=1.0, seed=11)).text
    assert engine.generate(request(temperature=1.0, seed=11)).text == first
    assert engine.generate(request(temperature=1.0, seed=12)).text != first


def test_stream_deltas_arrive_while_generation_is_still_running(
    engine: TransformersEngine,
) -> None:
    deltas = []
    running_when_first_delta_arrived = None
    stream = engine.stream(request(max_new_tokens=40, temperature=1.0, seed=5))
    for event in stream:
        if running_when_first_delta_arrived is None and event.delta:
            running_when_first_delta_arrived = engine._generate_lock.locked()
        deltas.append(event.delta)
        final = event.result
    assert running_when_first_delta_arrived is True
    assert final is not None
    assert len([d for d in deltas if d]) > 5
    assert "".join(deltas) == final.text


def test_stop_string_cuts_the_answer_and_ends_generation(engine: TransformersEngine) -> None:
    full = engine.generate(request(max_new_tokens=40, temperature=1.0, seed=5))
    stop = full.text[10:13]
    cut = engine.generate(request(max_new_tokens=40, temperature=1.0, seed=5, stop=(stop,)))
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens


def test_stops_on_llama_end_tokens(engine: TransformersEngine) -> None:
    vocab = engine.tokenizer.get_vocab()
    assert {vocab["<|eot_id|>"], vocab["<|eom_id|>"], vocab["<|end_of_text|>"]} <= set(
        engine.stop_token_ids
    )
    eot = vocab["<|eot_id|>"]

    def prefer_eot(module: object, inputs: object, logits: torch.Tensor) -> torch.Tensor:
        logits[..., eot] += 1e4
        return logits

    hook = engine.model.lm_head.register_forward_hook(prefer_eot)
    try:
        result = engine.generate(request(max_new_tokens=20))
    finally:
        hook.remove()
    assert (result.text, result.finish_reason, result.completion_tokens) == ("", "stop", 1)


def test_breaking_out_of_a_stream_frees_the_model(engine: TransformersEngine) -> None:
    stream = engine.stream(request(max_new_tokens=400, temperature=1.0, seed=1))
    next(stream)
    stream.close()
    assert not engine._generate_lock.locked()
    assert engine.generate(request(max_new_tokens=3)).completion_tokens == 3


def test_cancel_event_stops_generation_within_a_few_tokens(engine: TransformersEngine) -> None:
    cancel = threading.Event()
    produced = 0
    for event in engine.stream(request(max_new_tokens=400, temperature=1.0, seed=2), cancel):
        produced += 1
        if produced == 3:
            cancel.set()
        if event.result is not None:
            assert event.result.completion_tokens < 10


def test_prompt_longer_than_context_window_is_refused_with_both_counts(
    engine: TransformersEngine,
) -> None:
    with pytest.raises(PromptTooLongError, match=r"prompt is \d+ tokens .* window is 4096"):
        engine.generate(request("word " * 5000))


def test_missing_model_path_says_how_to_use_a_local_copy(tmp_path: object) -> None:
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1"):
        load_engine(ModelSpec(model=f"{tmp_path}/does-not-exist"))


def test_batched_greedy_equals_sequential(engine: TransformersEngine) -> None:
    requests = [request(text, max_new_tokens=12) for text in ("Hi", "A longer question here?", "x")]
    sequential = [engine.generate(r) for r in requests]
    engine.prefix_cache.clear()
    batched = engine.generate_batch(requests)
    assert [r.text for r in batched] == [r.text for r in sequential]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in sequential]
    assert [r.finish_reason for r in batched] == [r.finish_reason for r in sequential]


def test_prefix_cache_reuses_the_previous_turn_and_keeps_greedy_output(
    tiny_model_path: str,
) -> None:
    cached = TransformersEngine(ModelSpec(model=tiny_model_path))
    uncached = TransformersEngine(ModelSpec(model=tiny_model_path), prefix_cache_entries=0)
    system = {"role": "system", "content": "You call tools. " * 40}
    first = (system, {"role": "user", "content": "Step one?"})
    answer = cached.generate(GenerationRequest(first, SamplingParams(max_new_tokens=8)))
    second = (
        *first,
        {"role": "assistant", "content": answer.text},
        {"role": "user", "content": "2"},
    )
    with_cache = cached.generate(GenerationRequest(second, SamplingParams(max_new_tokens=16)))
    without = uncached.generate(GenerationRequest(second, SamplingParams(max_new_tokens=16)))
    assert with_cache.cached_prompt_tokens > 150
    assert without.cached_prompt_tokens == 0
    assert with_cache.text == without.text


def test_static_cache_gives_the_same_greedy_text_and_skips_prefix_reuse(
    tiny_model_path: str,
) -> None:
    engine = TransformersEngine(ModelSpec(model=tiny_model_path))
    dynamic = engine.generate(request(max_new_tokens=16))
    static = engine.generate(request(max_new_tokens=16, cache_implementation="static"))
    again = engine.generate(request(max_new_tokens=16, cache_implementation="static"))
    assert static.text == dynamic.text
    assert again.cached_prompt_tokens == 0
    assert engine.prefix_cache.size_bytes > 0  # only the dynamic-cache run stored its cache


def test_chat_model_passes_the_static_cache_through(tiny_model_path: str) -> None:
    from toolace_integrations.langchain import ChatToolACE

    default = ChatToolACE(model=tiny_model_path, max_tokens=12).invoke("Hi")
    static = ChatToolACE(model=tiny_model_path, max_tokens=12, cache_implementation="static")
    model = load_engine(ModelSpec(model=tiny_model_path)).model
    caches: list[str] = []

    def record(module: object, args: object, kwargs: dict[str, object]) -> None:
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        caches.append(type(cache).__name__)

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        answer = static.invoke("Hi")
    finally:
        hook.remove()
    assert answer.content == default.content
    assert set(caches) == {"StaticCache"}


def test_prefix_reuse_can_be_switched_off_per_call_and_bounded_by_environment(
    tiny_model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLACE_PREFIX_CACHE_ENTRIES", "1")
    engine = TransformersEngine(ModelSpec(model=tiny_model_path))
    long = "You call tools. " * 20
    first = engine.generate(request(long + "one", reuse_prefix=False))
    second = engine.generate(request(long + "two", reuse_prefix=False))
    assert (first.cached_prompt_tokens, second.cached_prompt_tokens) == (0, 0)
    assert engine.prefix_cache.size_bytes == 0
    engine.generate(request(long + "three"))
    engine.generate(request("Something else entirely, with no shared opening at all."))
    assert engine.generate(request(long + "four")).cached_prompt_tokens == 0  # only 1 entry kept
