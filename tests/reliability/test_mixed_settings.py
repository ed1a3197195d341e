"""Concurrent async calls with different settings each get the answer they get alone.

Calls arriving together are coalesced into one batch, which the engine splits into groups of
equal settings. Each caller here differs in tools, ``tool_choice``, ``max_tokens`` or
temperature, so every group is small; a group that stops its neighbours (a shared cancel flag)
shows up as a 1-token answer that differs from the same call run alone.
"""

import asyncio
from typing import Any

import pytest
from _hooks import DTYPE
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.tools import FunctionTool

from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM

DEADLINE = 120.0
ROUNDS = 3


def get_weather(city: str) -> str:
    """Get the weather forecast for a city."""
    return "sunny"


def get_time(city: str, utc: bool) -> str:
    """Get the local time in a city."""
    return "12:00"


def _signature(message: AIMessage) -> tuple[Any, ...]:
    return (
        message.content,
        [(c["name"], c["args"]) for c in message.tool_calls],
        [(c["name"], c["args"]) for c in message.invalid_tool_calls],
        message.response_metadata["finish_reason"],
        (message.usage_metadata or {}).get("input_tokens"),
        (message.usage_metadata or {}).get("output_tokens"),
    )


def _mixed_callers(llm: ChatToolACE) -> list[tuple[Any, str]]:
    weather, clock = tool(get_weather), tool(get_time)
    return [
        (llm.bind_tools([weather, clock], tool_choice="any"), "Caller 0: weather in Paris?"),
        (llm, "Caller 1: tell me a story about the sea."),
        (llm.bind_tools([clock], tool_choice="get_time").bind(max_tokens=20), "Caller 2: time?"),
        (llm.bind(max_tokens=7), "Caller 3: what is rain?"),
        (llm.bind(temperature=0.8, seed=3), "Caller 4: say something about Tokyo."),
        (llm.bind_tools([weather]).bind(max_tokens=15), "Caller 5: anything new?"),
        (llm.bind_tools([weather, clock], parallel_tool_calls=False), "Caller 6: Tokyo?"),
    ]


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=12)


async def test_mixed_settings_gathered_equal_alone(lc: ChatToolACE) -> None:
    callers = _mixed_callers(lc)
    alone = [_signature(await runnable.ainvoke(prompt)) for runnable, prompt in callers]
    assert any(s[3] == "length" for s in alone), "some answers must run to their budget"
    for _ in range(ROUNDS):
        gathered = asyncio.gather(*(runnable.ainvoke(prompt) for runnable, prompt in callers))
        together = await asyncio.wait_for(gathered, DEADLINE)
        assert [_signature(m) for m in together] == alone


async def test_mixed_settings_llama_index_achats_equal_alone(tiny_model_path: str) -> None:
    llm = ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=12)
    tools = [FunctionTool.from_defaults(get_weather), FunctionTool.from_defaults(get_time)]

    def calls() -> list[Any]:
        return [
            llm.achat_with_tools(tools, user_msg="Weather in Paris?", tool_required=True),
            llm.achat([ChatMessage(role="user", content="A story about the sea.")]),
            llm.achat([ChatMessage(role="user", content="Rain?")], max_new_tokens=5),
        ]

    def seen(response: Any) -> tuple[Any, ...]:
        usage = response.raw["usage"]
        return response.message.content, response.raw["text"], usage["completion_tokens"]

    alone = [seen(await call) for call in calls()]
    for _ in range(ROUNDS):
        together = await asyncio.wait_for(asyncio.gather(*calls()), DEADLINE)
        assert [seen(r) for r in together] == alone
