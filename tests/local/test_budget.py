"""Forced calls finish inside ``max_new_tokens``: the engine closes them when tokens run out.

The BFCL sweep runs the real tiny model with random weights under the grammar: whatever the
weights write, every forced answer must come back as calls that parse and validate, whenever
the budget can hold the shortest possible call at all.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from bfcl_data import CATEGORIES, load_entries
from reliability._hooks import DTYPE, steer
from toolace_integrations.core import chat
from toolace_integrations.core.generation import SamplingParams
from toolace_integrations.format.closing import Closer
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.schema import to_json_schema
from toolace_integrations.format.tools import ToolChoice, normalize_tools
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import ModelSpec, TransformersEngine, load_engine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


@pytest.fixture(scope="module")
def engine(tiny_model_path: str) -> TransformersEngine:
    return load_engine(ModelSpec(model=tiny_model_path, dtype=DTYPE))


def _choices(tools: list[Any]) -> list[ToolChoice]:
    return [
        ToolChoice("required"),
        ToolChoice("named", name=tools[-1].name),
        ToolChoice("required", parallel=False),
    ]


def test_forced_calls_on_bfcl_tool_sets_always_parse_and_validate(
    engine: TransformersEngine,
) -> None:
    sets = [
        (entry.id, entry.question, normalize_tools(entry.functions))
        for category in CATEGORIES
        for entry in load_entries((category,))[:8]
    ]
    assert len(sets) == 32
    answers = skipped = 0
    for number, (ident, question, tools) in enumerate(sets):
        for budget in (48, 96, 256):
            choice = _choices(tools)[(number + budget) % 3]  # each set meets several choices
            shortest = Closer(tools, choice).closing()
            assert shortest is not None
            if len(engine.tokenizer.encode(shortest, add_special_tokens=False)) > budget:
                skipped += 1  # no call of these tools fits this budget
                continue
            request = chat.build_request(
                [Message("user", question)],
                tools,
                tool_choice=choice,
                sampling=SamplingParams(max_new_tokens=budget),
            )
            turn = chat.run_chat(engine, request)
            parsed = turn.parsed
            assert parsed.calls and not parsed.invalid and not parsed.content, (ident, turn.text)
            assert turn.completion_tokens <= budget
            if turn.closed_early:
                assert turn.finish_reason == "length"
            if choice.mode == "named":
                assert {call.name for call in parsed.calls} == {choice.name}
            if not choice.parallel:
                assert len(parsed.calls) == 1
            specs = {tool.name: tool for tool in tools}
            for call in parsed.calls:
                schema = to_json_schema(dict(specs[call.name].parameters))
                jsonschema.validate(call.arguments, schema)
            answers += 1
    assert skipped <= len(sets) // 10  # only the longest tool names outgrow 48 tokens


LONG = '[get_weather(city="' + "x" * 400 + '", days=1)]'


def test_langchain_says_a_call_was_closed_early(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=60)
    bound = llm.bind_tools([WEATHER], tool_choice="get_weather")
    with steer(engine, LONG):  # the model would write a 400-character city
        message = bound.invoke("Weather?")
    [call] = message.tool_calls
    assert call["args"]["city"].startswith("x") and call["args"]["days"] == 0
    assert message.response_metadata["finish_reason"] == "length"
    assert message.response_metadata["closed_early"] is True
    assert message.usage_metadata and message.usage_metadata["output_tokens"] <= 60


def test_llama_index_says_a_call_was_closed_early(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=60)
    from llama_index.core.tools import FunctionTool

    def get_weather(city: str, days: int) -> str:
        """Weather in a city."""
        return city

    with steer(engine, LONG):
        response = llm.chat_with_tools(
            [FunctionTool.from_defaults(get_weather)], user_msg="Weather?", tool_required=True
        )
    [selection] = llm.get_tool_calls_from_response(response)
    assert selection.tool_kwargs["city"].startswith("x")
    assert response.raw["finish_reason"] == "length" and response.raw["closed_early"] is True


def test_a_runaway_list_of_parallel_calls_is_closed(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=120)
    bound = llm.bind_tools([WEATHER], tool_choice="any")
    loop = "[" + ", ".join(['get_weather(city="a", days=1)'] * 30) + "]"
    with steer(engine, loop):
        message = bound.invoke("Weather?")
    assert len(message.tool_calls) > 1 and not message.invalid_tool_calls
    assert all(call["args"] == {"city": "a", "days": 1} for call in message.tool_calls[:-1])
    assert message.response_metadata.get("closed_early") is True


def test_an_answer_that_ends_in_time_is_not_marked(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=64)
    with steer(engine, '[get_weather(city="a", days=1)]'):
        message = llm.bind_tools([WEATHER], tool_choice="any").invoke("Weather?")
    assert message.response_metadata["finish_reason"] == "stop"
    assert "closed_early" not in message.response_metadata


def test_a_batch_of_forced_calls_is_closed_row_by_row(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=60)
    bound = llm.bind_tools([WEATHER], tool_choice="get_weather")
    with steer(engine, LONG):  # one generate() for both rows
        messages = bound.batch(["Weather in Paris?", "Weather in Rome, please?"])
    for message in messages:
        [call] = message.tool_calls
        assert call["args"]["city"].startswith("x")
        assert message.response_metadata["finish_reason"] == "length"
        assert message.response_metadata["closed_early"] is True
