"""Issue 26.7: without xgrammar, binding tools to a constrained local model fails at once.

The error names both ways out (install the ``grammar`` extra, or ``constrained_decoding=False``)
and comes where the adapter learns it will need the grammar: ``bind_tools`` /
``with_structured_output`` (LangChain), ``chat_with_tools`` (LlamaIndex), before any weights
load. xgrammar is hidden by a ``None`` entry in ``sys.modules``, as for a missing package.
"""

from __future__ import annotations

import sys

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel

from toolace_integrations.errors import GrammarUnavailableError
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.grammar import GrammarConstraint

NOT_LOADABLE = "/nonexistent/toolace-checkpoint"  # loading it would raise ModelLoadError
BOTH_WAYS_OUT = r"(?s)toolace-integrations\[grammar\].*constrained_decoding=False"


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"Sunny in {city}."


class Forecast(BaseModel):
    """A forecast."""

    city: str


@pytest.fixture(autouse=True)
def no_xgrammar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xgrammar", None)


def test_the_message_says_both_ways_out() -> None:
    with pytest.raises(GrammarUnavailableError, match=BOTH_WAYS_OUT):
        GrammarConstraint(object(), 10, [0])


def test_bind_tools_fails_before_any_model_work() -> None:
    with pytest.raises(GrammarUnavailableError, match=BOTH_WAYS_OUT):
        ChatToolACE(model=NOT_LOADABLE).bind_tools([get_weather])


def test_with_structured_output_fails_at_once() -> None:
    with pytest.raises(GrammarUnavailableError, match=BOTH_WAYS_OUT):
        ChatToolACE(model=NOT_LOADABLE).with_structured_output(Forecast)


def test_tools_passed_per_call_fail_before_the_weights_load() -> None:
    with pytest.raises(GrammarUnavailableError, match=BOTH_WAYS_OUT):
        tools = [convert_to_openai_tool(get_weather)]
        ChatToolACE(model=NOT_LOADABLE).invoke("Weather in Paris?", tools=tools)


def test_llama_index_chat_with_tools_fails_before_any_model_work() -> None:
    llm = ToolACELLM(model=NOT_LOADABLE)
    weather = FunctionTool.from_defaults(fn=get_weather.func)
    with pytest.raises(GrammarUnavailableError, match=BOTH_WAYS_OUT):
        llm.chat_with_tools([weather], user_msg="Weather in Paris?")


async def test_llama_index_agent_path_fails_before_any_model_work() -> None:
    llm = ToolACELLM(model=NOT_LOADABLE)
    weather = FunctionTool.from_defaults(fn=get_weather.func)
    history = [ChatMessage(role=MessageRole.USER, content="Weather in Paris?")]
    with pytest.raises(GrammarUnavailableError, match=BOTH_WAYS_OUT):
        await llm.astream_chat_with_tools([weather], chat_history=history)  # FunctionAgent's call


def test_without_tools_or_with_a_server_nothing_needs_the_grammar() -> None:
    ChatToolACE(model=NOT_LOADABLE).bind_tools([])
    ChatToolACE(model=NOT_LOADABLE, base_url="http://127.0.0.1:9/v1").bind_tools([get_weather])
    ChatToolACE(model=NOT_LOADABLE, constrained_decoding=False).with_structured_output(Forecast)


def test_constrained_decoding_false_is_a_way_out(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, constrained_decoding=False, max_tokens=8)
    message = llm.bind_tools([get_weather]).invoke("Weather in Paris?")
    assert isinstance(message, AIMessage)  # generated freely; calls parsed, not constrained
    answer = ToolACELLM(model=tiny_model_path, constrained_decoding=False, max_new_tokens=8)
    weather = FunctionTool.from_defaults(fn=get_weather.func)
    response = answer.chat_with_tools([weather], user_msg="Weather in Paris?")
    assert response.message.role == "assistant"
