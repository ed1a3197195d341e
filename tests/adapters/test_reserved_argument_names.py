"""Tools whose arguments are named ``from``, ``to`` and ``class``, through both adapters.

The tiny random-weight model is forced onto the tool (``tool_choice`` names it); the grammar has
it write ``[search_flights(from=..., to=..., class=...)]``, and each framework gets a valid call
with those argument names, streamed as it is written. Past calls replay in the same spelling.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel, ConfigDict, Field

from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM

AIRPORT = {"type": "string", "enum": ["NYC", "SFO", "BOS"]}
PARAMETERS = {
    "type": "object",
    "properties": {
        "from": AIRPORT,
        "to": AIRPORT,
        "class": {"type": "string", "enum": ["economy", "business"]},
    },
    "required": ["from", "to", "class"],
}
FLIGHTS = {
    "type": "function",
    "function": {
        "name": "search_flights",
        "description": "Find flights between two airports.",
        "parameters": PARAMETERS,
    },
}
ARGUMENTS = {"from", "to", "class"}
PAST_CALL = '[search_flights(from="NYC", to="SFO", class="economy")]'


class FlightQuery(BaseModel):
    """Find flights between two airports."""

    model_config = ConfigDict(populate_by_name=True)
    origin: Literal["NYC", "SFO", "BOS"] = Field(alias="from")
    to: Literal["NYC", "SFO", "BOS"]
    cabin: Literal["economy", "business"] = Field(alias="class")


def _valid(arguments: dict[str, Any]) -> None:
    assert set(arguments) == ARGUMENTS, arguments
    jsonschema.validate(arguments, PARAMETERS)
    FlightQuery.model_validate(arguments)  # the pydantic tool reads them by alias


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, max_tokens=48)


@pytest.fixture(scope="module")
def li(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, max_new_tokens=48)


@pytest.mark.parametrize("tool", [FLIGHTS, FlightQuery], ids=["openai-dict", "pydantic-alias"])
def test_langchain_forced_call_has_the_reserved_argument_names(lc: ChatToolACE, tool: Any) -> None:
    bound = lc.bind_tools(
        [tool], tool_choice="search_flights" if tool is FLIGHTS else "FlightQuery"
    )
    invoked = bound.invoke("Flights from New York to San Francisco?")
    chunks = list(bound.stream("Flights from New York to San Francisco?"))
    assert isinstance(invoked, AIMessage) and not invoked.invalid_tool_calls
    [call] = invoked.tool_calls
    _valid(call["args"])
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [(call["name"], call["args"])]
    pieces = [p for chunk in chunks[:-1] for p in chunk.tool_call_chunks if p["args"]]
    assert len(pieces) > 2 and "".join(p["args"] or "" for p in pieces).startswith('{"from": ')


def test_llama_index_forced_call_runs_the_tool(li: ToolACELLM) -> None:
    received: list[dict[str, Any]] = []

    def search(**arguments: Any) -> str:
        received.append(arguments)
        return "3 flights"

    tool = FunctionTool.from_defaults(fn=search, name="search_flights", fn_schema=FlightQuery)
    selections = []
    for tools in ([tool], [FLIGHTS]):  # a pydantic schema with aliases, an OpenAI dict
        response = li.chat_with_tools(
            tools, user_msg="Flights from New York?", tool_choice="search_flights"
        )
        selections += li.get_tool_calls_from_response(response)
    assert [selection.tool_name for selection in selections] == ["search_flights"] * 2
    for selection in selections:
        _valid(selection.tool_kwargs)
    assert tool(**selections[0].tool_kwargs).content == "3 flights"
    assert received == [selections[0].tool_kwargs]


def test_llama_index_streams_the_reserved_argument_names(li: ToolACELLM) -> None:
    responses = list(
        li.stream_chat_with_tools(
            [FLIGHTS], user_msg="Flights from New York?", tool_choice="search_flights"
        )
    )
    [selection] = li.get_tool_calls_from_response(responses[-1])
    _valid(selection.tool_kwargs)
    early = [li.get_tool_calls_from_response(r, error_on_no_tool_call=False) for r in responses]
    assert any(calls and "from" in calls[0].tool_kwargs for calls in early[:-1])


def test_past_calls_replay_with_reserved_argument_names(lc: ChatToolACE, li: ToolACELLM) -> None:
    arguments = {"from": "NYC", "to": "SFO", "class": "economy"}
    langchain_prompt = lc.get_prompt_text(
        [
            HumanMessage("Flights from New York?"),
            AIMessage("", tool_calls=[{"name": "search_flights", "args": arguments, "id": "c1"}]),
            ToolMessage("3 flights", tool_call_id="c1"),
        ],
        tools=[FLIGHTS],
    )
    call = {"id": "c1", "type": "function",
            "function": {"name": "search_flights", "arguments": json.dumps(arguments)}}  # fmt: skip
    llama_index_prompt = li.get_prompt_text(
        [
            ChatMessage(role=MessageRole.USER, content="Flights from New York?"),
            ChatMessage(role=MessageRole.ASSISTANT, additional_kwargs={"tool_calls": [call]}),
            ChatMessage(
                role=MessageRole.TOOL, content="3", additional_kwargs={"tool_call_id": "c1"}
            ),
        ],
        tools=[
            FunctionTool.from_defaults(
                fn=lambda **_: "", name="search_flights", fn_schema=FlightQuery
            )
        ],
    )
    for prompt in (langchain_prompt, llama_index_prompt):
        assert f"<|start_header_id|>assistant<|end_header_id|>\n\n{PAST_CALL}<|eot_id|>" in prompt
