"""Truncated, malformed and out-of-schema model output becomes invalid calls, never exceptions.

Truncation is real: the grammar forces a call and ``max_new_tokens`` cuts it at every length.
Calls of unbound tools and arguments that break the schema cannot come out of the grammar, so
those are made by steering the real model (a logits hook writes a fixed answer token by token)
with ``constrained_decoding=False``; the tokenizer, ``generate``, decoding and parsing are real.
"""

import json
from typing import Any, Literal

import pytest
from _hooks import DTYPE, lock_free, steer
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from llama_index.core.base.llms.types import ChatResponse
from llama_index.core.tools import FunctionTool

from toolace_integrations.errors import NoToolCallError, TruncatedOutputError
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine

TRUNCATED = "truncated by max_new_tokens"


def get_weather(city: Literal["Paris", "Tokyo"]) -> str:
    """Get the weather forecast for a city."""
    return f"sunny in {city}"


lc_weather = tool(get_weather)
li_weather = FunctionTool.from_defaults(get_weather)


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=64)


@pytest.fixture(scope="module")
def li(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=64)


@pytest.fixture(scope="module")
def full_call(lc: ChatToolACE) -> tuple[str, int]:
    """The forced call the model writes when nothing cuts it: its text and token count."""
    message = lc.bind_tools([lc_weather], tool_choice="get_weather").invoke("Weather?")
    assert message.response_metadata["finish_reason"] == "stop"
    [call] = message.tool_calls
    text = f'[get_weather(city="{call["args"]["city"]}")]'
    assert message.usage_metadata is not None
    return text, message.usage_metadata["output_tokens"]  # the call's tokens and <|eot_id|>


def _sum(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


def _limits(tokens: int, *, every: bool) -> list[int]:
    """Every cut short of the end token, or (streams, to save time) a spread of them."""
    return list(range(1, tokens)) if every else sorted({1, 2, *range(3, tokens, 3), tokens - 1})


def _check_cut(
    finish: str, content: str, calls: list[str], invalid: list[tuple[str, str | None]], full: str
) -> None:
    """A cut answer is either the complete call or one invalid call saying it was truncated."""
    assert finish == "length"
    assert content == "", "call text must never leak into the answer text"
    if calls:  # cut after the closing bracket, before <|eot_id|>
        assert calls == ["get_weather"] and not invalid
        return
    [(text, error)] = invalid
    if error is None and text.startswith("{"):  # a LangChain stream: no error text (documented)
        city = full.split('"')[1]  # its argument JSON so far, then a suffix that breaks it
        assert any(json.dumps({"city": city}).startswith(text[:cut]) for cut in (-1, -2)), text
        return
    assert text and text in full, (text, full)  # the partial call as the model wrote it
    if error is not None:
        assert TRUNCATED in error, error


@pytest.mark.parametrize("path", ["invoke", "stream"])
def test_langchain_call_cut_at_every_length(
    lc: ChatToolACE, full_call: tuple[str, int], path: str, engine: TransformersEngine
) -> None:
    full, tokens = full_call
    bound = lc.bind_tools([lc_weather], tool_choice="get_weather")
    seen_invalid = seen_closed = 0
    limits = _limits(tokens, every=path == "invoke")
    for limit in limits:
        if path == "invoke":
            message: AIMessage = bound.invoke("Weather?", max_tokens=limit)
        else:
            chunks = list(bound.stream("Weather?", max_tokens=limit))
            assert all(not c.content for c in chunks), "call syntax was streamed as content"
            message = _sum(chunks)
        invalid = [(c["args"] or "", c["error"]) for c in message.invalid_tool_calls]
        calls = [c["name"] for c in message.tool_calls]
        _check_cut(
            message.response_metadata["finish_reason"], str(message.content), calls, invalid, full
        )
        closed = message.response_metadata.get("closed_early", False)
        assert message.usage_metadata
        used = message.usage_metadata["output_tokens"]
        assert (used <= limit) if closed else (used == limit)
        seen_invalid += bool(invalid)
        seen_closed += closed
    # Each cut is a truncated call, or a call the engine closed early where nothing was cut.
    assert seen_invalid + seen_closed >= len(limits) - 1
    assert lock_free(engine)


@pytest.mark.parametrize("path", ["chat", "stream_chat"])
def test_llama_index_call_cut_at_every_length(
    li: ToolACELLM, full_call: tuple[str, int], path: str
) -> None:
    full, tokens = full_call
    seen_invalid = seen_closed = 0
    limits = _limits(tokens, every=path == "chat")
    for limit in limits:
        options: dict[str, Any] = {"tool_choice": "get_weather", "max_new_tokens": limit}
        if path == "chat":
            response = li.chat_with_tools([li_weather], user_msg="Weather?", **options)
        else:
            streamed = list(li.stream_chat_with_tools([li_weather], user_msg="Weather?", **options))
            assert all(not r.message.content for r in streamed)
            response = streamed[-1]
        extra = response.message.additional_kwargs
        invalid = [(c["text"], c["error"]) for c in extra.get("invalid_tool_calls", [])]
        try:
            calls = [c.tool_name for c in li.get_tool_calls_from_response(response, False)]
        except TruncatedOutputError:  # a cut call is an error even to a lenient caller
            assert invalid
            calls = []
        _check_cut(
            response.raw["finish_reason"], response.message.content or "", calls, invalid, full
        )
        closed = response.raw.get("closed_early", False)
        used = response.additional_kwargs["completion_tokens"]
        assert (used <= limit) if closed else (used == limit)
        seen_closed += closed
        if invalid:
            seen_invalid += 1
            with pytest.raises(NoToolCallError, match=r"cut at \d+ tokens.*Raise max_tokens"):
                li.get_tool_calls_from_response(response)
    assert seen_invalid + seen_closed >= len(limits) - 1


# (answer the model is steered to write, valid call names, [(invalid call name, error part)])
STEERED = [
    pytest.param(
        '[get_forecast(city="Paris")]',
        [],
        [("get_forecast", "unknown tool 'get_forecast'; bound tools are ['get_weather']")],
        id="unbound-tool",
    ),
    pytest.param(
        '[get_weather(city="Rome")]',
        [],
        [("get_weather", "do not match the schema of 'get_weather': at $.city: 'Rome' is not")],
        id="enum-violation",
    ),
    pytest.param(
        "[get_weather()]",
        [],
        [("get_weather", "'city' is a required property")],
        id="missing-argument",
    ),
    pytest.param(
        "[get_weather(city=3)]",
        [],
        [("get_weather", "do not match the schema of 'get_weather': at $.city")],
        id="wrong-type",
    ),
    pytest.param(
        "[get_weather(city=Paris)]",
        [],
        [("get_weather", "")],
        id="bare-name-argument",
    ),
    pytest.param(
        '[get_weather(city="Paris"), get_forecast(days=2)]',
        ["get_weather"],
        [("get_forecast", "unknown tool 'get_forecast'")],
        id="valid-and-unbound",
    ),
]


@pytest.mark.parametrize(("answer", "valid", "invalid"), STEERED)
@pytest.mark.parametrize("path", ["invoke", "stream"])
def test_langchain_reports_bad_calls_as_invalid_tool_calls(
    tiny_model_path: str,
    engine: TransformersEngine,
    path: str,
    answer: str,
    valid: list[str],
    invalid: list[tuple[str, str]],
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, constrained_decoding=False)
    bound = llm.bind_tools([lc_weather])
    with steer(engine, answer) as pending:
        if path == "invoke":
            message: AIMessage = bound.invoke("Weather in Paris?")
        else:
            message = _sum(list(bound.stream("Weather in Paris?")))
    assert not pending
    assert message.response_metadata["finish_reason"] == "stop" and message.content == ""
    assert [c["name"] for c in message.tool_calls] == valid
    got = message.invalid_tool_calls
    assert [c["name"] for c in got] == [name for name, _ in invalid]
    assert all(c["args"] and c["args"] in answer for c in got)
    ids = [c["id"] for c in [*message.tool_calls, *got]]
    assert all(ids) and len(set(ids)) == len(ids)
    if path == "invoke":  # a stream rebuilds invalid calls from chunks, without error text
        for call, (_, part) in zip(got, invalid, strict=True):
            assert call["error"] and part in call["error"], call["error"]


@pytest.mark.parametrize(("answer", "valid", "invalid"), STEERED)
@pytest.mark.parametrize("path", ["chat", "stream_chat"])
def test_llama_index_reports_bad_calls_as_invalid_tool_calls(
    tiny_model_path: str,
    engine: TransformersEngine,
    path: str,
    answer: str,
    valid: list[str],
    invalid: list[tuple[str, str]],
) -> None:
    llm = ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, constrained_decoding=False)
    with steer(engine, answer) as pending:
        if path == "chat":
            response: ChatResponse = llm.chat_with_tools([li_weather], user_msg="Weather?")
        else:
            response = list(llm.stream_chat_with_tools([li_weather], user_msg="Weather?"))[-1]
    assert not pending
    assert response.raw["text"] == answer and response.raw["finish_reason"] == "stop"
    calls = llm.get_tool_calls_from_response(response, error_on_no_tool_call=False)
    assert [c.tool_name for c in calls] == valid
    got = response.message.additional_kwargs["invalid_tool_calls"]
    assert [c["name"] for c in got] == [name for name, _ in invalid]
    for call, (_, part) in zip(got, invalid, strict=True):
        assert call["text"] in answer and call["error"] and part in call["error"]
    if not valid:
        with pytest.raises(NoToolCallError, match="invalid call attempts"):
            llm.get_tool_calls_from_response(response)


@pytest.fixture
def agent_tool() -> tuple[Any, list[str]]:
    ran: list[str] = []

    @tool
    def get_weather(city: Literal["Paris", "Tokyo"]) -> str:
        """Get the weather forecast for a city."""
        ran.append(city)
        return f"sunny in {city}"

    return get_weather, ran


def test_agent_finishes_on_an_invalid_call(
    tiny_model_path: str, engine: TransformersEngine, agent_tool: tuple[Any, list[str]]
) -> None:
    get_weather_tool, ran = agent_tool
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, constrained_decoding=False)
    agent = create_agent(llm, tools=[get_weather_tool])
    with steer(engine, '[get_weather(city="Rome")]') as pending:
        state = agent.invoke({"messages": [HumanMessage("Weather in Rome?")]})
    assert not pending and not ran
    final = state["messages"][-1]
    assert isinstance(final, AIMessage) and not final.tool_calls
    [bad] = final.invalid_tool_calls
    assert bad["name"] == "get_weather" and "'Rome' is not one of" in (bad["error"] or "")


async def test_agent_runs_the_valid_call_answers_the_invalid_one_and_finishes(
    tiny_model_path: str, engine: TransformersEngine, agent_tool: tuple[Any, list[str]]
) -> None:
    """create_agent answers an invalid call with an error ToolMessage; that renders and runs."""
    get_weather_tool, ran = agent_tool
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, constrained_decoding=False)
    agent = create_agent(llm, tools=[get_weather_tool])
    first = '[get_weather(city="Paris"), get_weather(town="Rome")]'
    with steer(engine, first, "It is sunny in Paris.") as pending:
        state = await agent.ainvoke({"messages": [HumanMessage("Weather in Paris and Rome?")]})
    assert not pending and ran == ["Paris"]
    messages = state["messages"]
    asked = next(m for m in messages if isinstance(m, AIMessage))
    assert [c["name"] for c in asked.tool_calls] == ["get_weather"]
    assert [c["name"] for c in asked.invalid_tool_calls] == ["get_weather"]
    results = {m.tool_call_id: m.status for m in messages if isinstance(m, ToolMessage)}
    valid_id, invalid_id = asked.tool_calls[0]["id"], asked.invalid_tool_calls[0]["id"]
    assert results == {valid_id: "success", invalid_id: "error"}  # the model saw both
    final = messages[-1]
    assert isinstance(final, AIMessage) and final.content == "It is sunny in Paris."
    assert not final.tool_calls and not final.invalid_tool_calls
