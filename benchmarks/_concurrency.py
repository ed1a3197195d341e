"""(e) Concurrent agent steps against sequential ones, and (f) the stream decoder's cost.

(e) mirrors the concurrency issue: a random Llama behind ``ChatToolACE.ainvoke``, 40 tools in
one shared tool prompt, 8 new tokens per step. Each mix runs its steps one after another
(``await`` each) and all at once (``asyncio.gather``) in the same process, interleaved; then 1,
8 and 16 agents run 5 steps each on the shared tool prompt, streaming, for total time and time
to first token. (f) streams a 2,000-token prose answer through the old decoder (decode all ids
again on every token) and the incremental one, without a model.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

from _harness import Row, Section, interleaved, median, no_stop_tokens, seconds, tool_catalogue
from langchain_core.messages import AIMessage

from toolace_integrations.core import chat
from toolace_integrations.core.generation import SamplingParams
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.stops import StopScanner, cut_at_stop
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.local.decoding import IncrementalDetokenizer
from toolace_integrations.local.engine import TransformersEngine

_TASKS = (
    "Weather in Paris?",
    "Find flights from Lyon to Berlin on Friday.",
    "Which hotels near the station are free tonight?",
    "Update customer 4411 with the new address.",
    "Track parcel 1Z999.",
    "Recent news about renewable energy?",
    "Create a calendar event tomorrow at ten.",
    "A vegetarian lasagne recipe, please.",
)


def _run(coroutine: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coroutine

    return asyncio.run(main())


def _mix(name: str, llm: ChatToolACE, tools: list[Any]) -> list[tuple[Any, str, int]]:
    """(runnable, prompt, max_tokens) for the 8 steps of one mix."""
    bound = llm.bind_tools(tools[:40])
    if name == "same tool prompt":
        return [(bound, task, 8) for task in _TASKS]
    if name == "4 different tool sets":
        sets = [llm.bind_tools(tools[i * 5 : i * 5 + 36]) for i in range(4)]
        return [(sets[i % 4], task, 8) for i, task in enumerate(_TASKS)]
    if name == "lengths 2-32 tokens, long and short questions":
        return [
            (bound, task * (1 + 6 * (i % 2)), 2 + 30 * (i % 3 == 0))
            for i, task in enumerate(_TASKS)
        ]
    forced = llm.bind_tools(tools[:40], tool_choice="any")
    return [(forced if i % 2 else bound, task, 8) for i, task in enumerate(_TASKS)]


def agent_steps(folder: str, *, repeats: int, agents: tuple[int, ...], steps: int) -> Section:
    """(e) 8 steps alone vs sequential vs gathered for several mixes; then N concurrent agents."""
    llm = ChatToolACE(model=folder, max_tokens=8, constrained_decoding=False)
    constrained = ChatToolACE(model=folder, max_tokens=8)
    engine = llm._backend()
    specs = tool_catalogue(60)
    tools = [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in specs
    ]
    section = Section()
    with no_stop_tokens(engine.model, engine.stop_token_ids):
        for name in (
            "same tool prompt",
            "4 different tool sets",
            "lengths 2-32 tokens, long and short questions",
            "half constrained (tool_choice=any), half free",
        ):
            mix = _mix(name, constrained if "constrained" in name else llm, tools)
            section.rows += _mix_rows(name, mix, repeats)
        section.details.append(_agents_table(engine, specs[:40], agents, steps, repeats))
    return section


def _mix_rows(name: str, mix: list[tuple[Any, str, int]], repeats: int) -> list[Row]:
    async def one() -> float:
        runnable, prompt, tokens = mix[0]
        start = time.perf_counter()
        await runnable.ainvoke(prompt, max_tokens=tokens)
        return time.perf_counter() - start

    async def sequential() -> tuple[float, list[Any]]:
        start = time.perf_counter()
        answers = [await r.ainvoke(p, max_tokens=t) for r, p, t in mix]
        return time.perf_counter() - start, answers

    async def gathered() -> tuple[float, list[Any]]:
        start = time.perf_counter()
        answers = await asyncio.gather(*(r.ainvoke(p, max_tokens=t) for r, p, t in mix))
        return time.perf_counter() - start, answers

    runs = interleaved(
        {
            "one": lambda: _run(one()),
            "seq": lambda: _run(sequential()),
            "gather": lambda: _run(gathered()),
        },
        repeats,
    )
    alone = median(runs["one"])
    seq, gather = (median([r[0] for r in runs[k]]) for k in ("seq", "gather"))
    same = sum(
        _observable(a) == _observable(b)
        for a, b in zip(runs["seq"][-1][1], runs["gather"][-1][1], strict=True)
    )
    ratio = seq / gather
    main = name == "same tool prompt"
    return [
        Row(
            "e",
            f"8 agent steps, {name}: gathered vs sequential (time; one alone {seconds(alone)})",
            seconds(gather),
            seconds(seq),
            f"{ratio:.2f}× faster",
            "≥ 1.3×" if main else "≥ 1.0× (never slower)",
            "yes" if ratio >= (1.3 if main else 1.0) else "**no**",
            f"gathered = sequential answers: {same}/8",
        )
    ]


def _observable(message: AIMessage) -> tuple[Any, ...]:
    return (message.content, [(c["name"], c["args"]) for c in message.tool_calls])


def _agents_table(
    engine: TransformersEngine, tools: list[Any], agents: tuple[int, ...], steps: int, repeats: int
) -> str:
    lines = [
        f"(e) {', '.join(map(str, agents))} concurrent agents, {steps} steps each, one shared "
        f"tool prompt ({len(tools)} tools), 8 new tokens a step, streamed; after a warm-up run "
        f"of each, medians of {repeats} interleaved runs (time to first token pooled):",
        "",
        "| Agents | Total | Per agent step (total / steps) | TTFT p50 | TTFT p95 |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    def agents_run(count: int) -> tuple[float, list[float]]:
        return _run(_agents(engine, tools, count, steps))  # type: ignore[no-any-return]

    runs = interleaved({str(n): partial(agents_run, n) for n in agents}, repeats)
    for count in agents:
        total = median([run[0] for run in runs[str(count)]])
        ordered = sorted(t for run in runs[str(count)] for t in run[1])
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        lines.append(
            f"| {count} | {seconds(total)} | {seconds(total / (count * steps))} | "
            f"{seconds(statistics.median(ordered))} | {seconds(p95)} |"
        )
    return "\n".join(lines)


async def _agents(
    engine: TransformersEngine, tools: list[Any], count: int, steps: int
) -> tuple[float, list[float]]:
    """``count`` agents taking ``steps`` streamed steps each; total time and every step's TTFT."""
    sampling = SamplingParams(max_new_tokens=8)
    first_tokens: list[float] = []

    async def agent(index: int) -> None:
        history = [Message("user", _TASKS[index % len(_TASKS)] + f" (agent {index})")]
        for step in range(steps):
            request = chat.build_request(history, tools, sampling=sampling, constrained=False)
            start = time.perf_counter()
            text = ""
            async for event in chat.iterate_in_thread(partial(engine.stream, request)):
                if start:
                    first_tokens.append(time.perf_counter() - start)
                    start = 0.0
                if event.result is not None:
                    text = event.result.text
            history += [Message("assistant", text), Message("user", f"Go on, step {step}.")]

    start = time.perf_counter()
    await asyncio.gather(*(agent(i) for i in range(count)))
    return time.perf_counter() - start, first_tokens


def stream_decoder(engine: TransformersEngine, *, tokens: int, repeats: int) -> Section:
    """(f) Old (re-decode everything per token) vs incremental decoding of a long answer."""
    prose = " ".join(
        "The river ran past the old mill and the children counted boats until dusk."
        for _ in range(tokens // 10)
    )
    ids = engine.tokenizer(prose, add_special_tokens=False)["input_ids"][:tokens]
    tokenizer = engine.tokenizer
    stop = ("\nUser:",)

    def old() -> float:
        start = time.perf_counter()
        for end in range(1, len(ids) + 1):
            text = tokenizer.decode(ids[:end], skip_special_tokens=True)
            cut_at_stop(text, stop)
        return time.perf_counter() - start

    def new() -> float:
        start = time.perf_counter()
        detokenizer = IncrementalDetokenizer(tokenizer)
        scanner = StopScanner(stop)
        for token in ids:
            scanner.feed(detokenizer.push(token))
        return time.perf_counter() - start

    runs = interleaved({"old": old, "new": new}, repeats)
    before, after = median(runs["old"]), median(runs["new"])
    section = Section()
    section.rows.append(
        Row(
            "f",
            f"stream decoder on a {len(ids)}-token prose answer, with a stop string: "
            "incremental vs re-decoding all ids each token",
            seconds(after),
            seconds(before),
            f"{before / after:.0f}× faster ({after / len(ids) * 1e6:.0f} µs/token)",
            "linear",
            "yes" if before / after > 5 else "**no**",
            "",
        )
    )
    return section
