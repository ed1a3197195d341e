"""End-to-end agent loops with ChatToolACE on the tiny offline checkpoint.

A random-weight model never decides by itself to call a tool or to stop, so each agent forces
the decision through the framework's own per-step hook: ``create_agent`` gets a middleware
that sets ``tool_choice`` per model call ("any" until a tool has answered in this user turn,
then "none"; one call at a time), and ``create_react_agent`` gets a dynamic model that binds
the tools with that ``tool_choice``. The grammar makes the forced call valid, so the tool runs.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel

from agent_forcing import CallToolThenAnswer, forced_choice
from toolace_integrations.langchain import ChatToolACE


class Forecast(BaseModel):
    """A weather forecast."""

    city: Literal["Paris", "Tokyo"]
    sunny: bool


@pytest.fixture
def weather_tool() -> tuple[BaseTool, list[str]]:
    calls: list[str] = []

    @tool
    def get_weather(city: Literal["Paris", "Tokyo"]) -> dict[str, Any]:
        """Get the current weather in a city."""
        calls.append(city)
        return {"city": city, "temperature": 21, "condition": "sunny"}

    return get_weather, calls


@pytest.fixture
def llm(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, max_tokens=48)


def _assert_tool_ran_and_finished(messages: list[Any], calls: list[str]) -> None:
    assert calls and calls[0] in ("Paris", "Tokyo")
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results and results[0].name == "get_weather" and '"temperature": 21' in results[0].text
    asked = next(m for m in messages if isinstance(m, AIMessage) and m.tool_calls)
    assert results[0].tool_call_id == asked.tool_calls[0]["id"]
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls


def test_create_agent_runs_the_tool(
    llm: ChatToolACE, weather_tool: tuple[BaseTool, list[str]]
) -> None:
    get_weather, calls = weather_tool
    agent = create_agent(llm, tools=[get_weather], middleware=[CallToolThenAnswer()])
    state = agent.invoke({"messages": [HumanMessage("What's the weather in Paris?")]})
    _assert_tool_ran_and_finished(state["messages"], calls)


async def test_create_agent_streams_messages_async(
    llm: ChatToolACE, weather_tool: tuple[BaseTool, list[str]]
) -> None:
    get_weather, calls = weather_tool
    agent = create_agent(llm, tools=[get_weather], middleware=[CallToolThenAnswer()])
    chunks = []
    state: dict[str, Any] = {}
    inputs = {"messages": [HumanMessage("Weather in Tokyo?")]}
    async for mode, data in agent.astream(inputs, stream_mode=["messages", "values"]):
        if mode == "messages":
            chunks.append(data[0])
        else:
            state = data
    _assert_tool_ran_and_finished(state["messages"], calls)
    assert any(isinstance(c, AIMessageChunk) and c.tool_call_chunks for c in chunks)


def test_create_agent_structured_response_via_provider_strategy(llm: ChatToolACE) -> None:
    """The profile says structured_output, so create_agent binds ``response_format``."""
    agent = create_agent(llm, tools=[], response_format=Forecast)
    state = agent.invoke({"messages": [HumanMessage("Forecast for Paris?")]})
    assert isinstance(state["structured_response"], Forecast)


def test_create_agent_structured_response_via_tool_strategy(
    llm: ChatToolACE, weather_tool: tuple[BaseTool, list[str]]
) -> None:
    get_weather, _ = weather_tool
    agent = create_agent(llm, tools=[get_weather], response_format=ToolStrategy(Forecast))
    state = agent.invoke({"messages": [HumanMessage("Forecast for Paris?")]})
    assert isinstance(state["structured_response"], Forecast)


def test_create_react_agent_runs_the_tool(
    llm: ChatToolACE, weather_tool: tuple[BaseTool, list[str]]
) -> None:
    from langgraph.prebuilt import create_react_agent
    from langgraph.warnings import LangGraphDeprecatedSinceV10

    get_weather, calls = weather_tool

    def model(state: dict[str, Any], runtime: Any) -> Any:
        """LangGraph's dynamic-model hook: rebind tool_choice for every step."""
        choice = forced_choice(state["messages"])
        return llm.bind_tools([get_weather], tool_choice=choice, parallel_tool_calls=False)

    with pytest.warns(LangGraphDeprecatedSinceV10, match="create_agent"):
        agent = create_react_agent(model, tools=[get_weather])
    state = agent.invoke({"messages": [HumanMessage("What's the weather in Tokyo?")]})
    _assert_tool_ran_and_finished(state["messages"], calls)
