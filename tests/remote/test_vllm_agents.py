"""Both adapters and both agent loops on the vLLM server, the grammar enforced server-side.

The agents force their decisions through the frameworks' own hooks (as in the local agent tests)
and the tools take only enum and boolean arguments, so the server's grammar lets any weights
finish a valid call; nothing here depends on how well the random model answers. (No
``from __future__ import annotations``: LlamaIndex reads the tool function's real annotations.)
"""

from typing import Any, Literal

import pytest
from _servers import Proxy
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from agent_forcing import CallToolThenAnswer
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine


class Forecast(BaseModel):
    """A weather forecast."""

    city: Literal["Paris", "Tokyo"]
    sunny: bool


@tool
def get_weather(city: Literal["Paris", "Tokyo"]) -> dict[str, Any]:
    """Get the current weather in a city."""
    return {"city": city, "temperature": 21, "condition": "sunny"}


recorded: list[dict[str, Any]] = []


def set_unit(unit: Literal["celsius", "fahrenheit"], loud: bool) -> str:
    """Set the temperature unit."""
    recorded.append({"unit": unit, "loud": loud})
    return "unit set"


@pytest.fixture
def chat_model(proxy: Proxy, vllm_model: str) -> ChatToolACE:
    return ChatToolACE(model=vllm_model, base_url=proxy.url, max_tokens=40)


def test_chat_model_prompt_is_the_local_engines_ids(
    chat_model: ChatToolACE, proxy: Proxy, vllm_engine: TransformersEngine
) -> None:
    answer = chat_model.invoke("Weather in Paris?")
    assert isinstance(answer, AIMessage)
    assert answer.usage_metadata and answer.usage_metadata["output_tokens"] > 0
    ids = vllm_engine.encode([{"role": "user", "content": "Weather in Paris?"}])
    assert proxy.bodies[-1]["prompt"] == ids
    assert answer.usage_metadata["input_tokens"] == len(ids)


@pytest.mark.parametrize("choice", ["any", "get_weather"], ids=["any", "named"])
def test_forced_calls_through_the_chat_model(
    chat_model: ChatToolACE, proxy: Proxy, choice: str
) -> None:
    """One call of an enum argument fits in 40 tokens whatever the weights.

    A list of parallel calls can outgrow any budget on vLLM, which cannot close it early (see
    docs/vllm.md), so the forced choices here allow one call.
    """
    bound = chat_model.bind_tools([get_weather], tool_choice=choice, parallel_tool_calls=False)
    answer = bound.invoke("Weather?")
    assert "grammar" in proxy.bodies[-1]["structured_outputs"]
    assert answer.tool_calls and not answer.invalid_tool_calls
    assert all(c["name"] == "get_weather" and c["args"]["city"] in ("Paris", "Tokyo")
               for c in answer.tool_calls)  # fmt: skip
    assert len(answer.tool_calls) == 1


def test_tool_choice_none_answers_in_text(chat_model: ChatToolACE, proxy: Proxy) -> None:
    answer = chat_model.bind_tools([get_weather], tool_choice="none").invoke("Weather?")
    assert not answer.tool_calls and not answer.invalid_tool_calls
    assert not str(answer.response_metadata["raw_output"]).startswith("[")
    assert "structured_outputs" in proxy.bodies[-1]


def test_structured_output_is_always_the_schema(chat_model: ChatToolACE) -> None:
    forecast = chat_model.with_structured_output(Forecast).invoke("Forecast for Paris?")
    assert isinstance(forecast, Forecast)


async def test_ainvoke_and_astream_through_the_server(chat_model: ChatToolACE) -> None:
    answer = await chat_model.ainvoke("Hello")
    chunks = [chunk async for chunk in chat_model.astream("Hello")]
    assert answer.response_metadata["finish_reason"] in ("stop", "length")
    assert chunks[-1].chunk_position == "last"
    assert "".join(str(c.content) for c in chunks) == answer.content


def test_create_agent_runs_the_tool_on_the_server(chat_model: ChatToolACE) -> None:
    agent = create_agent(chat_model, tools=[get_weather], middleware=[CallToolThenAnswer()])
    state = agent.invoke({"messages": [HumanMessage("What's the weather in Paris?")]})
    messages = state["messages"]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results and results[0].name == "get_weather" and '"temperature": 21' in results[0].text
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls


def test_create_agent_structured_response_on_the_server(chat_model: ChatToolACE) -> None:
    agent = create_agent(chat_model, tools=[], response_format=Forecast)
    state = agent.invoke({"messages": [HumanMessage("Forecast for Paris?")]})
    assert isinstance(state["structured_response"], Forecast)


# llama-index-workflows touches pydantic's deprecated accessors on the agent (not our code).
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
async def test_function_agent_runs_the_tool_on_the_server(proxy: Proxy, vllm_model: str) -> None:
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.base.llms.types import MessageRole, ToolCallBlock
    from llama_index.core.tools import FunctionTool

    recorded.clear()
    llm = ToolACELLM(model=vllm_model, base_url=proxy.url, max_new_tokens=40)
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(set_unit)], llm=llm, initial_tool_choice="set_unit"
    )
    handler = agent.run(user_msg="Use celsius, loudly.")
    results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
    output = await handler
    assert recorded and recorded[0]["unit"] in ("celsius", "fahrenheit")
    assert results[0].tool_output.content == "unit set"
    assert "structured_outputs" in proxy.bodies[0]
    assert output.response.role == MessageRole.ASSISTANT
    assert not [b for b in output.response.blocks if isinstance(b, ToolCallBlock)]
