"""Prompt rendering: ToolACE's system prompt, tool schemas, replayed calls and tool results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from transformers import AutoTokenizer

from bfcl_data import llama31_chat_template
from toolace_integrations.format.parsing import ToolCall
from toolace_integrations.format.profiles import TOOLACE
from toolace_integrations.format.prompt import (
    Message,
    PromptError,
    render_messages,
)
from toolace_integrations.format.tools import normalize_tools
from toolace_integrations.local.engine import ModelSpec, load_engine

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "title": "GetWeather",
            "properties": {
                "city": {"type": "string", "title": "City"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}


def test_system_prompt_is_the_model_cards_text_with_toolace_shaped_json() -> None:
    text = TOOLACE.system_prompt(normalize_tools([WEATHER]))
    expected_tools = [
        {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "dict",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        }
    ]
    assert text.startswith("You are an expert in composing functions.")
    assert "[func_name1(params_name1=params_value1, params_name2=params_value2...)" in text
    assert text.endswith(
        "Here is a list of functions in JSON format that you can invoke.\n"
        + json.dumps(expected_tools)
        + "\n\n"
    )


def test_custom_system_template_replaces_only_the_functions_placeholder() -> None:
    text = TOOLACE.system_prompt(normalize_tools([WEATHER]), "Tools {x} here: {functions}")
    assert text.startswith('Tools {x} here: [{"name": "get_weather"')


def test_multi_turn_conversation_with_call_and_result_renders_exactly(
    tiny_model_path: str,
) -> None:
    call = ToolCall(name="get_weather", arguments={"city": "San Francisco"}, id="call_1")
    conversation = [
        Message("system", "Answer briefly."),
        Message("user", "  Weather in San Francisco?  "),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", '{"temperature": 18, "sky": "foggy"}', tool_call_id="call_1"),
        Message("assistant", "It is 18 degrees and foggy."),
        Message("user", "Thanks!"),
    ]
    tools = normalize_tools([WEATHER])
    rendered = render_messages(conversation, tools)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    text = tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)

    system = TOOLACE.system_prompt(tools).strip() + "\n\nAnswer briefly."
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        f"{system}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather in San Francisco?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '[get_weather(city="San Francisco")]<|eot_id|>'
        "<|start_header_id|>ipython<|end_header_id|>\n\n"
        '[{"name": "get_weather", "results": {"temperature": 18, "sky": "foggy"}}]<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt is 18 degrees and foggy.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nThanks!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_parallel_results_merge_into_one_ipython_turn_and_plain_text_stays_a_string() -> None:
    calls = (
        ToolCall("get_weather", {"city": "Paris"}, "a"),
        ToolCall("get_weather", {"city": "Rome"}, "b"),
    )
    rendered = render_messages(
        [
            Message("user", "Paris and Rome?"),
            Message("assistant", tool_calls=calls),
            Message("tool", "sunny", tool_call_id="a"),
            Message("tool", "[1, 2]", tool_call_id="b"),
        ]
    )
    assert rendered[-1] == {
        "role": "ipython",
        "content": '[{"name": "get_weather", "results": "sunny"}, '
        '{"name": "get_weather", "results": [1, 2]}]',
    }
    assert rendered[1]["content"] == '[get_weather(city="Paris"), get_weather(city="Rome")]'


def test_without_tools_there_is_no_toolace_instruction() -> None:
    rendered = render_messages([Message("system", "Be nice."), Message("user", "hi")])
    assert rendered == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "hi"},
    ]


def test_result_for_unknown_call_without_name_is_a_clear_error() -> None:
    with pytest.raises(PromptError, match="tool_call_id='nope'"):
        render_messages([Message("user", "x"), Message("tool", "1", tool_call_id="nope")])


def test_result_with_name_but_no_matching_call_uses_the_name() -> None:
    rendered = render_messages([Message("tool", "1", tool_call_id="x", name="calc")])
    assert rendered == [{"role": "ipython", "content": '[{"name": "calc", "results": 1}]'}]


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{{ messages[0]['content'] }}", id="non-llama3-template"),
        pytest.param(llama31_chat_template(), id="official-llama-3.1-template"),
    ],
)
def test_default_layout_is_bfcls_whatever_template_the_checkpoint_ships(
    tiny_model_path: str, tmp_path: Path, template: str
) -> None:
    folder = tmp_path / "other-template"
    shutil.copytree(tiny_model_path, folder)
    (folder / "chat_template.jinja").write_text(template)
    engine = load_engine(ModelSpec(model=str(folder)))
    rendered = render_messages(
        [
            Message("user", "Weather?"),
            Message("assistant", tool_calls=(ToolCall("get_weather", {"city": "Oslo"}, "c"),)),
            Message("tool", '{"t": 3}', tool_call_id="c"),
        ],
        normalize_tools([WEATHER]),
    )
    text = engine.prompt_text(rendered)
    assert "Cutting Knowledge Date" not in text
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    assert text.endswith(
        '<|start_header_id|>ipython<|end_header_id|>\n\n[{"name": "get_weather", "results": '
        '{"t": 3}}]<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'
    )
    assert engine.tokenizer.decode(engine.encode(rendered)) == text


# --- ToolACE's key order, whatever the framework produced ---------------------------------------


class Forecast(BaseModel):
    """Forecast for a city."""

    city: str = Field(description="City name.")
    days: int = 3
    places: list[Place] = Field(default_factory=list)


class Place(BaseModel):
    name: str = Field(description="Name.")


def _langchain_tool() -> dict[str, Any]:
    from langchain_core.tools import tool
    from langchain_core.utils.function_calling import convert_to_openai_tool

    @tool
    def forecast(city: str, days: int = 3) -> str:
        """Forecast for a city."""
        return city

    return convert_to_openai_tool(forecast)


def _pydantic_tool() -> dict[str, Any]:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    Forecast.model_rebuild()
    return convert_to_openai_tool(Forecast)


def _llama_index_tool() -> dict[str, Any]:
    from llama_index.core.tools import FunctionTool

    def forecast(city: str, days: int = 3) -> str:
        """Forecast for a city."""
        return city

    metadata = FunctionTool.from_defaults(fn=forecast).metadata
    return {"type": "function", "function": metadata.to_openai_tool()["function"]}


def _key_orders(schema: Any) -> list[list[str]]:
    """Key lists of every schema inside ``schema`` (properties maps excluded)."""
    if isinstance(schema, list):
        return [order for item in schema for order in _key_orders(item)]
    if not isinstance(schema, dict):
        return []
    orders = [list(schema)]
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            orders += [order for sub in value.values() for order in _key_orders(sub)]
        elif isinstance(value, dict | list):
            orders += _key_orders(value)
    return orders


@pytest.mark.parametrize(
    "make", [_langchain_tool, _pydantic_tool, _llama_index_tool], ids=["lc-tool", "pydantic", "li"]
)
def test_prompt_tool_json_has_toolaces_key_order(make: Any) -> None:
    (tool,) = normalize_tools([make()])
    text = TOOLACE.system_prompt([tool])
    (rendered,) = json.loads(text[text.index("\n[{") : text.rindex("}]") + 2])
    assert list(rendered) == ["name", "description", "parameters"]
    assert list(rendered["parameters"])[:3] == ["type", "properties", "required"]
    assert rendered["parameters"]["type"] == "dict"
    for order in _key_orders(rendered["parameters"]):
        if "type" in order:
            assert order[0] == "type", order


def test_a_system_message_mid_conversation_stays_where_it_was() -> None:  # issue 26.8
    rendered = render_messages(
        [
            Message("system", "Be brief."),
            Message("user", "hi"),
            Message("assistant", "hello"),
            Message("system", " Now answer in French. "),
            Message("user", "and now?"),
        ]
    )
    assert rendered == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "and now?"},
    ]
