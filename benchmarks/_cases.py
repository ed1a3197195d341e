"""The timed comparisons (a) engine overhead, (b) agent loop with prefix cache, (c) batching.

Each takes one loaded :class:`TransformersEngine` whose stop tokens are suppressed (see
``_harness.no_stop_tokens``), so every run generates exactly the requested number of tokens, and
swaps its ``prefix_cache`` between an enabled and a disabled store: the same model object serves
every variant, and only the cache differs.
"""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from _harness import (
    Row,
    Section,
    Timing,
    interleaved,
    median,
    medians,
    seconds,
    timed,
    tool_catalogue,
    verdict,
)

from toolace_integrations.core import chat
from toolace_integrations.format.prompt import Message
from toolace_integrations.local.engine import GenerationRequest, SamplingParams, TransformersEngine
from toolace_integrations.local.prefix_cache import PrefixCache


def _caches(engine: TransformersEngine) -> tuple[PrefixCache, PrefixCache]:
    """A disabled store (like ``prefix_cache_entries=0``) and an enabled one (the default)."""
    config = engine.model.config
    return PrefixCache(config, max_entries=0), PrefixCache(config)


def _raw_generate(engine: TransformersEngine, conversations: list[Any], tokens: int) -> list[str]:
    """What a user writes without us: chat template, left padding, ``model.generate``."""
    tokenizer, model = engine.tokenizer, engine.model
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        encoded = tokenizer.apply_chat_template(
            conversations if len(conversations) > 1 else conversations[0],
            add_generation_prompt=True,
            padding=len(conversations) > 1,
            return_dict=True,
            return_tensors="pt",
        )
    finally:
        tokenizer.padding_side = side
    output = model.generate(**encoded, max_new_tokens=tokens, do_sample=False)
    new = output[:, encoded["input_ids"].shape[1] :]
    assert new.shape[1] == tokens, f"raw generate made {new.shape[1]} tokens, not {tokens}"
    texts: list[str] = tokenizer.batch_decode(new, skip_special_tokens=True)
    return texts


def overhead(engine: TransformersEngine, *, tokens: int, repeats: int) -> Section:
    """(a) ``chat.run_chat`` (what ``invoke`` runs) vs raw template + ``model.generate``."""
    off, on = _caches(engine)
    tools = tool_catalogue(2)
    question = "Find the three most recent weather reports for Paris and Lyon, in French."
    request = chat.build_request(
        [Message("user", question)],
        tools,
        sampling=SamplingParams(max_new_tokens=tokens),
        constrained=False,
    )
    conversation = [dict(m) for m in request.messages]
    engine_ids = engine.encode(conversation)
    template_ids = engine.tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, return_dict=True
    )["input_ids"]

    def ours(cache: PrefixCache) -> Any:
        def run() -> tuple[Timing, str]:
            engine.prefix_cache = cache
            elapsed, result = timed(lambda: chat.run_chat(engine, request))
            assert result.completion_tokens == tokens, result
            return elapsed, result.text

        return run

    def raw_template() -> tuple[Timing, str]:
        elapsed, texts = timed(lambda: _raw_generate(engine, [conversation], tokens))
        return elapsed, texts[0]

    def raw_same_ids() -> tuple[Timing, str]:
        def run() -> str:
            ids = torch.tensor([engine_ids])
            output = engine.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=tokens,
                do_sample=False,
            )
            text: str = engine.tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)
            return text

        return timed(run)

    runs = interleaved(
        {
            "ours": ours(off),
            "ours+cache": ours(on),
            "raw": raw_template,
            "raw-ids": raw_same_ids,
        },
        repeats,
    )
    timing = {name: medians([r[0] for r in values]) for name, values in runs.items()}
    time_of = {name: t.wall for name, t in timing.items()}
    text_of = {name: values[0][1] for name, values in runs.items()}
    stable = all(len({r[1] for r in values}) == 1 for values in runs.values())
    same_cache = text_of["ours"] == text_of["ours+cache"]
    same_raw = text_of["ours"] == text_of["raw-ids"]
    ratio = time_of["ours"] / time_of["raw"]
    cpu_ratio = timing["ours"].cpu / timing["raw"].cpu
    sanity = (
        f"cached = uncached: {verdict(same_cache)}; ours = raw on our ids: {verdict(same_raw)}"
        f"{'' if stable else '; repeats differ!'}"
    )
    what = f"run_chat vs apply_chat_template + generate, {len(engine_ids)}-token prompt"
    section = Section()
    section.rows.append(
        Row(
            "a",
            f"{what}, {tokens} new tokens, no prefix cache",
            seconds(time_of["ours"]),
            seconds(time_of["raw"]),
            f"{ratio:.3f} (cpu {cpu_ratio:.3f})",
            "≤ 1.03",
            verdict(ratio <= 1.03),
            sanity,
        )
    )
    cached = time_of["ours+cache"] / time_of["raw"]
    section.rows.append(
        Row(
            "a",
            "same, prefix cache on (the prompt repeats)",
            seconds(time_of["ours+cache"]),
            seconds(time_of["raw"]),
            f"{cached:.3f} (cpu {timing['ours+cache'].cpu / timing['raw'].cpu:.3f})",
            "—",
            "—",
            "",
        )
    )
    section.details.append(
        f"(a) per new token: ours {time_of['ours'] / tokens * 1000:.1f} ms, raw "
        f"{time_of['raw'] / tokens * 1000:.1f} ms; raw on our exact ids "
        f"{seconds(time_of['raw-ids'])} (ours/that {time_of['ours'] / time_of['raw-ids']:.3f}). "
        f"Prompt ids: ours {len(engine_ids)}, apply_chat_template {len(template_ids)} "
        f"({'identical' if list(template_ids) == engine_ids else 'differ'}; see notes)."
    )
    return section


def _loop_tools(engine: TransformersEngine, target_tokens: int, min_tools: int) -> tuple[Any, int]:
    """The fewest catalogue tools (at least ``min_tools``, at most 60) filling the prompt."""
    for count in range(min_tools, 61):
        tools = tool_catalogue(count)
        request = chat.build_request([Message("user", "x")], tools, constrained=False)
        length = len(engine.encode(request.messages))
        if length >= target_tokens:
            break
    return tools, length


def agent_loop(
    engine: TransformersEngine,
    *,
    target_tokens: int,
    min_tools: int,
    steps: int,
    tokens: int,
    repeats: int,
) -> Section:
    """(b) A multi-step tool loop over a long tool prompt, prefix cache on vs off."""
    off, on = _caches(engine)
    tools, system_tokens = _loop_tools(engine, target_tokens, min_tools)
    sampling = SamplingParams(max_new_tokens=tokens)

    def loop(cache: PrefixCache) -> Any:
        def run() -> dict[str, Any]:
            engine.prefix_cache = cache
            cache.clear()
            messages = [Message("user", "Book me a trip to Lyon next week and tell my team.")]
            out: dict[str, Any] = {"ttft": [], "text": [], "reused": [], "prompt": []}
            start, cpu = time.perf_counter(), time.process_time()
            for step in range(steps):
                request = chat.build_request(messages, tools, sampling=sampling, constrained=False)
                out_step = _stream_once(engine, request)
                for key, value in out_step.items():
                    out[key].append(value)
                tool = tools[step % len(tools)]
                result = {"status": "ok", "step": step, "records": [f"{tool.name}-{step}"]}
                messages += [
                    Message("assistant", out_step["text"]),
                    Message("tool", json.dumps(result), name=tool.name),
                ]
                if step % 2:
                    messages.append(Message("user", "Good. Continue with the next item."))
            out["total"] = Timing(time.perf_counter() - start, time.process_time() - cpu)
            return out

        return run

    runs = interleaved({"off": loop(off), "on": loop(on)}, repeats, warmup=False)
    total = {name: medians([r["total"] for r in values]) for name, values in runs.items()}
    ttft = {
        name: [median([r["ttft"][s] for r in values]) for s in range(steps)]
        for name, values in runs.items()
    }
    later = [ttft["off"][s] / ttft["on"][s] for s in range(1, steps)]
    same = all(a["text"] == b["text"] for a, b in zip(runs["off"], runs["on"], strict=True))
    section = Section()
    what = f"{steps}-step agent loop, {len(tools)} tools, {system_tokens}-token first prompt"
    speedup = total["off"].wall / total["on"].wall
    section.rows.append(
        Row(
            "b",
            f"{what}: TTFT of steps 2..{steps}, cache on vs off (worst step)",
            seconds(max(ttft["on"][1:])),
            seconds(min(ttft["off"][1:])),
            f"{min(later):.1f}× faster",
            "≥ 10×",
            verdict(min(later) >= 10),
            f"cached = uncached text, every step: {verdict(same)}",
        )
    )
    section.rows.append(
        Row(
            "b",
            f"{what}: whole loop ({tokens} new tokens per step), cache on vs off",
            seconds(total["on"].wall),
            seconds(total["off"].wall),
            f"{speedup:.2f}× faster (cpu {total['off'].cpu / total['on'].cpu:.2f}×)",
            "≥ 2×",
            verdict(speedup >= 2),
            "",
        )
    )
    first = runs["on"][0]
    lines = [
        "(b) Per step, medians (reused = prompt tokens served from the prefix cache):",
        "",
        "| step | prompt tokens | reused | TTFT cache off | TTFT cache on | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in range(steps):
        lines.append(
            f"| {s + 1} | {first['prompt'][s]} | {first['reused'][s]} | "
            f"{seconds(ttft['off'][s])} | {seconds(ttft['on'][s])} | "
            f"{ttft['off'][s] / ttft['on'][s]:.1f}× |"
        )
    section.details.append("\n".join(lines))
    return section


def _stream_once(engine: TransformersEngine, request: GenerationRequest) -> dict[str, Any]:
    start = time.perf_counter()
    first = None
    result = None
    for event in engine.stream(request):
        if first is None and (event.delta or event.result is not None):
            first = time.perf_counter() - start
        result = event.result or result
    assert result is not None and first is not None
    return {
        "ttft": first,
        "text": result.text,
        "reused": result.cached_prompt_tokens,
        "prompt": result.prompt_tokens,
    }


_QUESTIONS = (
    "Weather in Paris?",
    "Find the flights from Lyon to Berlin on Friday morning, economy, two adults.",
    "Which hotels near the station have free rooms tonight?",
    "Update the customer record 4411 with the new address in Marseille, France, and confirm it.",
    "Track parcel 1Z999.",
    "List the recent news about renewable energy in Germany and Spain, in English, ten items.",
    "Create a calendar event tomorrow at ten with Anna.",
    "Search the recipe database for a vegetarian lasagne that takes under an hour to prepare.",
)


def batching(engine: TransformersEngine, *, tokens: int, repeats: int) -> Section:
    """(c) Eight prompts in one ``generate_batch`` vs one by one vs raw left-padded generate."""
    off, _ = _caches(engine)
    engine.prefix_cache = off
    tools = tool_catalogue(2)
    sampling = SamplingParams(max_new_tokens=tokens)
    requests = [
        chat.build_request([Message("user", q)], tools, sampling=sampling, constrained=False)
        for q in _QUESTIONS
    ]
    conversations = [[dict(m) for m in r.messages] for r in requests]
    count = len(requests) * tokens

    def batched() -> tuple[Timing, list[str]]:
        elapsed, results = timed(lambda: engine.generate_batch(requests))
        assert all(r.completion_tokens == tokens for r in results), results
        return elapsed, [r.text for r in results]

    def sequential() -> tuple[Timing, list[str]]:
        elapsed, results = timed(lambda: [engine.generate(r) for r in requests])
        assert all(r.completion_tokens == tokens for r in results), results
        return elapsed, [r.text for r in results]

    def raw() -> tuple[Timing, list[str]]:
        return timed(lambda: _raw_generate(engine, conversations, tokens))

    runs = interleaved({"batch": batched, "seq": sequential, "raw": raw}, repeats)
    timing = {name: medians([r[0] for r in values]) for name, values in runs.items()}
    time_of = {name: t.wall for name, t in timing.items()}
    rate = {name: count / value for name, value in time_of.items()}
    same = sum(a == b for a, b in zip(runs["batch"][0][1], runs["seq"][0][1], strict=True))
    versus_seq = rate["batch"] / rate["seq"]
    versus_raw = time_of["batch"] / time_of["raw"]
    lengths = [len(engine.encode(r.messages)) for r in requests]
    what = f"{len(requests)} prompts ({min(lengths)}-{max(lengths)} tokens), {tokens} new each"
    section = Section()
    section.rows.append(
        Row(
            "c",
            f"{what}: generate_batch vs sequential generate (tokens/s)",
            f"{rate['batch']:.0f} tok/s",
            f"{rate['seq']:.0f} tok/s",
            f"{versus_seq:.2f}× faster (cpu {timing['seq'].cpu / timing['batch'].cpu:.2f}×)",
            "≥ 1.4×",
            verdict(versus_seq >= 1.4),
            f"batched = sequential text: {same}/{len(requests)}",
        )
    )
    section.rows.append(
        Row(
            "c",
            f"{what}: generate_batch vs raw left-padded model.generate (time)",
            seconds(time_of["batch"]),
            seconds(time_of["raw"]),
            f"{versus_raw:.3f} (cpu {timing['batch'].cpu / timing['raw'].cpu:.3f})",
            "≤ 1.05",
            verdict(versus_raw <= 1.05),
            "",
        )
    )
    return section
