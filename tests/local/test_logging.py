"""The local path tells an operator at DEBUG why a call was slow or odd, and stays quiet at INFO.

Everything logs under ``toolace_integrations`` (one logger per module): batch sizes, cached
prompt tokens, grammar compile time, call lists closed early, prefix-cache evictions.
"""

from __future__ import annotations

import logging
import re

import pytest

from reliability._hooks import steer
from toolace_integrations.core.generation import GenerationRequest, ModelSpec, SamplingParams
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, ToolChoiceMode
from toolace_integrations.local.engine import TransformersEngine

SYSTEM = {"role": "system", "content": "You answer questions about the weather. " * 20}
LOGGER = "toolace_integrations"


@pytest.fixture
def engine(tiny_model_path: str) -> TransformersEngine:
    """An engine of its own (no grammar compiled yet) whose prefix cache holds one prompt."""
    return TransformersEngine(ModelSpec(model=tiny_model_path), prefix_cache_entries=1)


def _ask(
    question: str,
    tokens: int = 6,
    tools: tuple[FunctionSpec, ...] = (),
    choice: ToolChoiceMode | None = None,
) -> GenerationRequest:
    return GenerationRequest(
        (SYSTEM, {"role": "user", "content": question}),
        SamplingParams(max_new_tokens=tokens),
        tools,
        ToolChoice(choice) if choice else None,
        constrained=choice is not None,
    )


def _debug_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    records = [r for r in caplog.records if r.name.startswith(f"{LOGGER}.")]
    assert all(r.levelno == logging.DEBUG for r in records), "a normal call logs only at DEBUG"
    assert all(r.args for r in records), "messages are formatted lazily (%-style arguments)"
    return [r.getMessage() for r in records]


def test_a_batched_call_logs_batch_size_cached_tokens_grammar_and_evictions(
    engine: TransformersEngine, caplog: pytest.LogCaptureFixture
) -> None:
    optional = [f"p{i}" for i in range(8)]
    properties = {name: {"type": "string"} for name in ["city", *optional]}
    city = {"type": "object", "properties": properties, "required": ["city"]}
    lookup = FunctionSpec("weather_log_probe", "Weather.", city)  # a grammar no test compiled
    runaway = '[weather_log_probe(city="Oslo", ' + ", ".join(f'{p}="v"' for p in optional) + ")]"
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with steer(engine, runaway):  # more optional arguments than its budget holds
        first = engine.generate(_ask("Weather in Oslo?", 24, (lookup,), "required"))
    batch = engine.generate_batch([_ask("Weather in Paris?"), _ask("And in Rome, today?")])
    lines = _debug_lines(caplog)

    compiled = [line for line in lines if line.startswith("grammar compiled in ")]
    assert len(compiled) == 1 and re.match(r"grammar compiled in [\d.]+ s \(\d+ bytes", compiled[0])
    assert first.closed_early
    closed = "its call list was closed early to fit max_new_tokens"
    assert any(line.endswith(closed) for line in lines)
    batches = [line for line in lines if line.startswith("decoding a batch of 2 rows")]
    assert len(batches) == 1
    cached = re.search(r"cached prompt tokens \(prefix cache\) \[(\d+), (\d+)\]", batches[0])
    assert cached and [int(n) for n in cached.groups()] == [r.cached_prompt_tokens for r in batch]
    assert all(r.cached_prompt_tokens > 0 for r in batch)  # the system prompt came from the cache
    assert any(line.startswith("prefix cache full: evicted the ") for line in lines)


def test_a_normal_call_logs_nothing_at_info(
    engine: TransformersEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine.generate(_ask("Weather in Paris?"))
    engine.generate_batch([_ask("Weather in Paris?"), _ask("And in Rome?")])
    assert [r for r in caplog.records if r.name.startswith(LOGGER)] == []
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    engine.generate(_ask("Weather in Lima?"))
    assert _debug_lines(caplog)  # the same call does log, at DEBUG
