"""Run by test_thin_client.py with the thin venv's Python: both agent loops against vLLM.

Usage: ``python thin_agents.py BASE_URL MODEL TESTS_DIR``. Prints the agents' transcripts and,
last, ``thin client ok``. The agents force their decisions through the frameworks' own hooks
(``tests/agent_forcing.py``) and the tools take only enum and boolean arguments, so the server's
grammar lets the random weights finish a valid call. (No ``from __future__ import annotations``:
LlamaIndex reads the tool function's real annotations.)
"""

import asyncio
import sys
from typing import Any, Literal

base_url, model, tests_dir = sys.argv[1:4]
sys.path.insert(0, tests_dir)

from langchain.agents import create_agent  # noqa: E402
from langchain_core.messages import HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from llama_index.core.agent.workflow import FunctionAgent, ToolCall, ToolCallResult  # noqa: E402
from llama_index.core.tools import FunctionTool  # noqa: E402

from agent_forcing import CallToolThenAnswer  # noqa: E402
from toolace_integrations import ChatToolACE  # noqa: E402
from toolace_integrations.llama_index import ToolACELLM  # noqa: E402


@tool
def get_weather(city: Literal["Paris", "Tokyo"]) -> dict[str, Any]:
    """Get the current weather in a city."""
    return {"city": city, "temperature": 21, "condition": "sunny"}


def set_unit(unit: Literal["celsius", "fahrenheit"], loud: bool) -> str:
    """Set the temperature unit."""
    return "unit set"


def langchain_agent() -> None:
    chat = ChatToolACE(model=model, base_url=base_url, max_tokens=40)
    print("LangChain profile max_input_tokens:", chat.profile["max_input_tokens"])
    agent = create_agent(chat, tools=[get_weather], middleware=[CallToolThenAnswer()])
    state = agent.invoke({"messages": [HumanMessage("What's the weather in Paris?")]})
    for message in state["messages"]:
        calls = getattr(message, "tool_calls", None)
        print(f"  {message.type}: {message.text[:60]!r}" + (f" calls={calls}" if calls else ""))
    results = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert results and '"temperature": 21' in results[0].text, state["messages"]
    assert not state["messages"][-1].tool_calls


async def llama_index_agent() -> None:
    llm = ToolACELLM(model=model, base_url=base_url, max_new_tokens=40)
    print("LlamaIndex metadata.context_window:", llm.metadata.context_window)
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(set_unit)], llm=llm, initial_tool_choice="set_unit"
    )
    handler = agent.run(user_msg="Use celsius, loudly.")
    outputs = []
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            outputs.append(event.tool_output.content)
            print(f"  tool {event.tool_name}({event.tool_kwargs}) -> {outputs[-1]!r}")
        elif isinstance(event, ToolCall):
            print(f"  call {event.tool_name}({event.tool_kwargs})")
    output = await handler
    print(f"  assistant: {str(output.response.content)[:60]!r}")
    assert outputs == ["unit set"], outputs


print("LangChain create_agent:")
langchain_agent()
print("LlamaIndex FunctionAgent:")
asyncio.run(llama_index_agent())
print("thin client ok")
