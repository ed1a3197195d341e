"""Tool calls stream as they are written, and the merged stream equals the invoked message.

The real tiny model is steered (``tests/reliability/_hooks.py``) to write given answers token by
token, with the grammar on: tokenizer, ``generate``, grammar masks, decoding and the adapters are
real, and the answers are ones the grammar allows.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from llama_index.core.agent.workflow import AgentStream, FunctionAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.tools import FunctionTool

from reliability._hooks import DTYPE, steer
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import ModelSpec, TransformersEngine, load_engine

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }
    for name, properties, required in [
        (
            "get_weather",
            {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 5}},
            ["city"],
        ),
        ("finance.npv", {"rate": {"type": "number"}}, ["rate"]),
        ("Market Trends API", {"country": {"type": "string"}}, []),
    ]
]
CITY = "Saint Petersburg on the Neva"  # several tokens, so the value streams in pieces
CASES = {  # answer -> (content, valid calls, invalid call names)
    "one-call": ('[get_weather(city="Paris")]', "", [("get_weather", {"city": "Paris"})], []),
    "parallel": (
        '[get_weather(city="Paris", days=2), finance.npv(rate=0.1)]',
        "",
        [("get_weather", {"city": "Paris", "days": 2}), ("finance.npv", {"rate": 0.1})],
        [],
    ),
    "dotted": ("[finance.npv(rate=-0.5)]", "", [("finance.npv", {"rate": -0.5})], []),
    "spaced": (
        '[Market Trends API(country="us")]',
        "",
        [("Market Trends API", {"country": "us"})],
        [],
    ),
    "prose": ("The weather is sunny.", "The weather is sunny.", [], []),
    "prose-then-call": (
        'Let me check. [get_weather(city="Paris")]',
        'Let me check. [get_weather(city="Paris")]',
        [],
        [],
    ),
    "invalid": ('[get_weather(city="Paris", days=9)]', "", [], ["get_weather"]),  # days > 5
}


@pytest.fixture(scope="module")
def engine(tiny_model_path: str) -> TransformersEngine:
    return load_engine(ModelSpec(model=tiny_model_path, dtype=DTYPE))


@pytest.fixture(scope="module")
def llm(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=64)


def _sum(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


def _calls(message: AIMessage) -> list[tuple[str, dict[str, Any]]]:
    return [(c["name"], c["args"]) for c in message.tool_calls]


@pytest.mark.parametrize("case", sorted(CASES))
def test_langchain_stream_merges_to_the_invoked_message(
    llm: ChatToolACE, engine: TransformersEngine, case: str
) -> None:
    answer, content, valid, invalid = CASES[case]
    bound = llm.bind_tools(TOOLS)
    with steer(engine, answer, answer) as pending:
        invoked = bound.invoke("Weather in Paris?")
        chunks = list(bound.stream("Weather in Paris?"))
    assert not pending
    total = _sum(chunks)
    for message in (invoked, total):
        assert message.content == content
        assert _calls(message) == valid
        assert [c["name"] for c in message.invalid_tool_calls] == invalid
    assert total.response_metadata == invoked.response_metadata
    assert [c["id"] for c in total.tool_calls] == [
        c["id"] for c in total.tool_call_chunks[: len(valid)]
    ]
    assert len({c["id"] for c in total.tool_calls + total.invalid_tool_calls}) == len(valid) + len(
        invalid
    )
    streamed = [chunk for chunk in chunks[:-1] if chunk.tool_call_chunks]
    if not (valid or invalid):
        assert not streamed and not total.tool_call_chunks
        return
    # Calls arrive while they are written: every call's name before the last chunk, each
    # name once, on the first piece of its call, and its arguments in several pieces after.
    pieces = [piece for chunk in streamed for piece in chunk.tool_call_chunks]
    for index, (name, arguments) in enumerate(valid + [(n, None) for n in invalid]):
        own = [piece for piece in pieces if piece["index"] == index]
        assert own[0]["name"] == name and own[0]["id"] and not own[0]["args"]
        assert all(piece["name"] is None and piece["id"] == own[0]["id"] for piece in own[1:])
        if arguments is not None:
            assert len(own) > 2
            written = "".join(piece["args"] or "" for piece in own)
            last = "".join(
                piece["args"] or ""
                for piece in chunks[-1].tool_call_chunks
                if piece["index"] == index
            )
            assert written + last == json.dumps(arguments)


def test_a_calls_name_arrives_with_the_token_that_completes_it(
    llm: ChatToolACE, engine: TransformersEngine
) -> None:
    answer = '[get_weather(city="Paris, the capital of France")]'
    with steer(engine, answer):
        chunks = list(llm.bind_tools(TOOLS).stream("Weather?"))
    tokens = engine.tokenizer(answer, add_special_tokens=False)["input_ids"]
    upto_name = next(
        i for i in range(len(tokens)) if "(" in engine.tokenizer.decode(tokens[: i + 1])
    )
    # One chunk per token with something to show: nothing before the name, which comes first.
    assert chunks[0].tool_call_chunks[0]["name"] == "get_weather"
    assert len(chunks) >= len(tokens) - upto_name - 4  # the arguments stream token by token


def test_langgraph_messages_stream_shows_partial_calls(
    llm: ChatToolACE, engine: TransformersEngine
) -> None:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        return f"sunny in {city}"

    agent = create_agent(llm, tools=[get_weather])
    seen: list[AIMessageChunk] = []
    with steer(engine, f'[get_weather(city="{CITY}")]', "It is sunny.") as pending:
        inputs = {"messages": [HumanMessage("Weather in Paris?")]}
        for chunk, _ in agent.stream(inputs, stream_mode="messages"):
            if isinstance(chunk, AIMessageChunk):
                seen.append(chunk)
    assert not pending
    first = [c for c in seen if c.id == seen[0].id]  # the chunks of the call's message
    assert first[0].tool_call_chunks[0]["name"] == "get_weather"
    merged = [_sum(first[: n + 1]) for n in range(len(first) - 1)]  # what a UI shows
    cities = [m.tool_calls[0]["args"].get("city") for m in merged if m.tool_calls]
    assert any(city and city != CITY and CITY.startswith(city) for city in cities)


@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
async def test_function_agent_event_stream_shows_partial_calls(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    def get_weather(city: str) -> str:
        """Get the weather in a city."""
        return f"sunny in {city}"

    llm = ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=64)
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(get_weather)], llm=llm)
    calls: list[dict[str, Any]] = []
    with steer(engine, f'[get_weather(city="{CITY}")]', "It is sunny.") as pending:
        handler = agent.run(user_msg="Weather in Paris?")
        async for event in handler.stream_events():
            if isinstance(event, AgentStream) and event.tool_calls:
                calls.append(event.tool_calls[0].tool_kwargs)
        await handler
    assert not pending
    assert calls[-1] == {"city": CITY}
    cities = [c.get("city") for c in calls[:-1]]
    assert any(city and city != CITY and CITY.startswith(city) for city in cities)


def test_llama_index_stream_carries_the_partial_call(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=64)
    tool = FunctionTool.from_defaults(lambda city: city, name="get_weather")
    with steer(engine, f'[get_weather(city="{CITY}")]'):
        responses = list(llm.stream_chat_with_tools([tool], user_msg="Weather?"))
    kwargs = [
        [b.tool_kwargs for b in r.message.blocks if isinstance(b, ToolCallBlock)] for r in responses
    ]
    assert kwargs[0] == [{}]  # the name is complete, no argument yet
    cities = [k[0].get("city") for k in kwargs[:-1]]
    assert any(city and city != CITY and CITY.startswith(city) for city in cities)
    assert kwargs[-1] == [{"city": CITY}]
    final = responses[-1].message
    assert isinstance(final, ChatMessage) and final.role == MessageRole.ASSISTANT
    assert llm.get_tool_calls_from_response(responses[-1])[0].tool_kwargs == {"city": CITY}


async def test_langchain_astream_streams_calls_like_stream(
    llm: ChatToolACE, engine: TransformersEngine
) -> None:
    answer, _, valid, _ = CASES["parallel"]
    with steer(engine, answer):
        chunks = [chunk async for chunk in llm.bind_tools(TOOLS).astream("Weather?")]
    assert [c.chunk_position for c in chunks].count("last") == 1
    assert any(chunk.tool_call_chunks for chunk in chunks[:-1])
    assert _calls(_sum(chunks)) == valid
