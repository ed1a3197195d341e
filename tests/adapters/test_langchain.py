"""ChatToolACE on the tiny offline checkpoint: real tokenizer, real generate, real grammar."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from toolace_integrations.core import chat
from toolace_integrations.core.chat import ChatTurn
from toolace_integrations.errors import ToolChoiceError, ToolSpecError
from toolace_integrations.format.parsing import InvalidCall, ParsedOutput, ToolCall
from toolace_integrations.format.prompt import PromptError
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.langchain.messages import to_ai_message as _to_ai_message
from toolace_integrations.langchain.stream import to_chunk
from toolace_integrations.local.engine import GenerationRequest, GenerationResult, StreamEvent


@tool
def get_weather(city: Literal["Paris", "Tokyo"]) -> str:
    """Get the weather forecast for a city."""
    return f"sunny in {city}"


@tool
def get_time(city: Literal["Paris", "Tokyo"]) -> str:
    """Get the local time in a city."""
    return "12:00"


class Forecast(BaseModel):
    """A weather forecast."""

    city: Literal["Paris", "Tokyo"] = Field(description="The city.")
    sunny: bool = Field(description="Whether it will be sunny.")


class ForecastDict(TypedDict):
    """A weather forecast."""

    city: Literal["Paris", "Tokyo"]
    sunny: bool


@pytest.fixture
def llm(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, max_tokens=12)


def _calls(message: BaseMessage) -> list[tuple[str, dict[str, Any]]]:
    assert isinstance(message, AIMessage)
    return [(call["name"], call["args"]) for call in message.tool_calls]


def test_construction_loads_nothing() -> None:
    llm = ChatToolACE(model="no/such-model", torch_dtype="float16", max_tokens=5, api_key="x")
    assert not llm._slot.backends
    assert (llm.dtype, llm.max_new_tokens) == ("float16", 5)
    assert llm.profile is not None
    assert llm.profile.get("tool_calling") and llm.profile.get("structured_output")
    params = llm._get_ls_params(stop=["x"])
    assert params["ls_provider"] == "toolace" and params["ls_model_name"] == "no/such-model"
    assert params["ls_max_tokens"] == 5 and params["ls_stop"] == ["x"]


def test_docstring_example(tiny_model_path: str) -> None:
    """The class docstring's example, with the tiny checkpoint in place of the 8B one."""
    llm = ChatToolACE(model=tiny_model_path, max_tokens=48)
    message = llm.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"


def test_invoke_text(llm: ChatToolACE, tiny_model_path: str) -> None:
    message = llm.invoke([SystemMessage("Be brief."), HumanMessage("Hello!")])
    assert isinstance(message, AIMessage) and isinstance(message.content, str)
    assert not message.tool_calls and not message.invalid_tool_calls
    usage = message.usage_metadata
    assert usage is not None and usage["input_tokens"] > 0
    assert 0 < usage["output_tokens"] <= 12
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert message.response_metadata == {
        "model_name": tiny_model_path,
        "finish_reason": message.response_metadata["finish_reason"],
        "model_provider": "toolace",
        "raw_output": message.response_metadata["raw_output"],
    }
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    assert message.content == message.response_metadata["raw_output"].strip()


@pytest.mark.parametrize(
    "choice",
    ["get_weather", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["name", "openai-dict"],
)
def test_named_tool_choice_makes_one_valid_call(llm: ChatToolACE, choice: Any) -> None:
    bound = llm.bind_tools([get_weather, get_time], tool_choice=choice, parallel_tool_calls=False)
    message = bound.invoke("What's the weather in Paris?", max_tokens=48)
    assert isinstance(message, AIMessage)
    assert len(message.tool_calls) == 1, message
    call = message.tool_calls[0]
    assert call["name"] == "get_weather" and call["args"]["city"] in ("Paris", "Tokyo")
    assert call["id"] and call["id"].startswith("call_")
    assert get_weather.invoke(call).content.startswith("sunny")  # the tool accepts the call


def test_any_tool_choice_calls_bound_tools_with_unique_ids(llm: ChatToolACE) -> None:
    bound = llm.bind_tools([get_weather, get_time], tool_choice="any")
    message = bound.invoke("Weather and time in Tokyo?", max_tokens=48)
    assert isinstance(message, AIMessage) and message.tool_calls, message
    assert {name for name, _ in _calls(message)} <= {"get_weather", "get_time"}
    ids = [call["id"] for call in message.tool_calls + message.invalid_tool_calls]
    assert len(set(ids)) == len(ids)


def test_tool_choice_none_answers_in_text(llm: ChatToolACE) -> None:
    message = llm.bind_tools([get_weather], tool_choice="none").invoke("Weather in Paris?")
    assert isinstance(message, AIMessage)
    assert not message.tool_calls and not message.invalid_tool_calls


def test_truncated_call_is_invalid_not_an_exception(llm: ChatToolACE) -> None:
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")
    message = bound.invoke("Weather in Paris?", max_tokens=3)
    assert isinstance(message, AIMessage) and not message.tool_calls
    [invalid] = message.invalid_tool_calls
    assert "truncated" in (invalid["error"] or "")
    assert invalid["args"] and invalid["args"].startswith("get")  # how far 3 tokens reach varies


def _sum(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    return total


@pytest.mark.parametrize("with_tools", [False, True], ids=["text", "tool-call"])
def test_stream_sums_to_invoke(llm: ChatToolACE, with_tools: bool) -> None:
    model: Any = llm.bind_tools([get_weather], tool_choice="get_weather") if with_tools else llm
    invoked = model.invoke("Weather in Paris?", max_tokens=48)
    chunks = list(model.stream("Weather in Paris?", max_tokens=48))
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert [c.chunk_position for c in chunks].count("last") == 1
    assert chunks[-1].chunk_position == "last"
    assert sum(chunk.usage_metadata is not None for chunk in chunks) == 1
    total = _sum(chunks)
    assert total.content == invoked.content
    assert _calls(total) == _calls(invoked)
    assert total.usage_metadata and invoked.usage_metadata
    total.usage_metadata.pop("input_token_details")  # the second call reuses the first's prefix
    invoked.usage_metadata.pop("input_token_details")
    assert total.usage_metadata == invoked.usage_metadata
    assert total.response_metadata == invoked.response_metadata
    if with_tools:
        assert total.tool_calls and total.tool_call_chunks[0]["index"] == 0


def test_text_streams_in_several_chunks(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, max_tokens=16, temperature=1.0, seed=7)
    chunks = list(llm.stream("Tell me a story."))
    assert sum(bool(chunk.content) for chunk in chunks) > 1
    assert _sum(chunks).content == llm.invoke("Tell me a story.").content  # seeded sampling


def test_streaming_field_routes_invoke_through_stream(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, max_tokens=48, streaming=True)
    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("Paris?")
    assert isinstance(message, AIMessage) and message.tool_calls
    assert message.usage_metadata and message.response_metadata["model_provider"] == "toolace"


def test_tool_result_renders_in_toolace_format(llm: ChatToolACE) -> None:
    conversation = [
        HumanMessage("Weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage('{"temperature": 21, "condition": "sunny"}', tool_call_id="c1"),
        ToolMessage([{"type": "text", "text": "12:00"}], tool_call_id="c2", name="get_time"),
    ]
    prompt = llm.get_prompt_text(conversation, tools=[get_weather, get_time])
    assert (
        '<|start_header_id|>assistant<|end_header_id|>\n\n[get_weather(city="Paris")]<|eot_id|>'
        in prompt
    )
    assert (
        "<|start_header_id|>ipython<|end_header_id|>\n\n"
        '[{"name": "get_weather", "results": {"temperature": 21, "condition": "sunny"}}, '
        '{"name": "get_time", "results": "12:00"}]<|eot_id|>'
    ) in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert '"name": "get_weather"' in prompt.split("<|eot_id|>")[0]  # tools in the system turn


def test_tool_result_with_structured_list_content_is_json(llm: ChatToolACE) -> None:
    conversation = [
        HumanMessage("Hi"),
        ToolMessage([{"a": 1}], tool_call_id="x", name="get_time"),  # type: ignore[list-item]
    ]
    prompt = llm.get_prompt_text(conversation)
    assert '[{"name": "get_time", "results": [{"a": 1}]}]' in prompt


def test_image_content_is_rejected(llm: ChatToolACE) -> None:
    image = {"type": "image", "url": "https://example.com/cat.png"}
    with pytest.raises(PromptError, match="text only"):
        llm.invoke([HumanMessage([{"type": "text", "text": "What is this?"}, image])])


def test_tool_round_trip_answers(llm: ChatToolACE) -> None:
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")
    first = bound.invoke("Weather in Paris?", max_tokens=48)
    assert isinstance(first, AIMessage) and first.tool_calls
    result = get_weather.invoke(first.tool_calls[0])
    final = llm.bind_tools([get_weather], tool_choice="none").invoke(
        [HumanMessage("Weather in Paris?"), first, result]
    )
    assert isinstance(final, AIMessage) and not final.tool_calls


@pytest.mark.parametrize(
    "schema",
    [Forecast, ForecastDict, Forecast.model_json_schema()],
    ids=["pydantic", "typeddict", "json-schema"],
)
def test_with_structured_output(llm: ChatToolACE, schema: Any) -> None:
    result = llm.with_structured_output(schema).invoke("Forecast for Tokyo?", max_tokens=48)
    record = result.model_dump() if isinstance(result, BaseModel) else result
    assert isinstance(record, dict) and set(record) == {"city", "sunny"}
    assert Forecast.model_validate(record)


def test_with_structured_output_include_raw(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, max_tokens=48)
    structured = llm.with_structured_output(Forecast, include_raw=True, method="json_schema")
    result = structured.invoke("Forecast for Tokyo?")
    assert isinstance(result, dict) and result["parsing_error"] is None
    assert isinstance(result["parsed"], Forecast)
    assert isinstance(result["raw"], AIMessage) and len(result["raw"].tool_calls) == 1


def test_response_format_answers_json_text(llm: ChatToolACE) -> None:
    schema = {"name": "Forecast", "schema": Forecast.model_json_schema()}
    bound = llm.bind(response_format={"type": "json_schema", "json_schema": schema})
    message = bound.invoke("Forecast for Tokyo?", max_tokens=48)
    assert isinstance(message, AIMessage) and not message.tool_calls
    assert Forecast.model_validate_json(str(message.content))
    answer = llm.bind_tools([get_weather], tool_choice="none").invoke(
        "Forecast for Tokyo?", max_tokens=48, response_format=bound.kwargs["response_format"]
    )
    assert not answer.tool_calls and Forecast.model_validate_json(str(answer.content))
    with pytest.raises(ToolSpecError, match="response_format"):
        llm.invoke("hi", response_format={"type": "json_object"})


async def test_ainvoke_and_astream(llm: ChatToolACE) -> None:
    bound = llm.bind_tools([get_weather], tool_choice="get_weather")
    invoked = await bound.ainvoke("Weather in Tokyo?", max_tokens=48)
    chunks = [chunk async for chunk in bound.astream("Weather in Tokyo?", max_tokens=48)]
    assert chunks[-1].chunk_position == "last"
    assert _calls(_sum(chunks)) == _calls(invoked) and invoked.tool_calls


class EndlessBackend:
    """A backend that streams until cancelled and records how its stream ended."""

    model_name = "endless"
    context_window = 0

    def __init__(self) -> None:
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.closed = threading.Event()

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        assert cancel is not None
        try:
            while not cancel.is_set():
                self.started.set()
                time.sleep(0.002)
                yield StreamEvent("word ")
            self.cancelled.set()
            yield StreamEvent("", GenerationResult("", "stop", 1, 1))
        finally:
            self.closed.set()

    def generate_batch(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event | None = None
    ) -> list[GenerationResult]:
        return [list(self.stream(request, cancel))[-1].result for request in requests]


@pytest.fixture
def endless(monkeypatch: pytest.MonkeyPatch) -> EndlessBackend:
    backend = EndlessBackend()
    monkeypatch.setattr(ChatToolACE, "_backend", lambda self, model=None: backend)
    return backend


async def test_async_cancel_stops_generation(endless: EndlessBackend) -> None:
    task = asyncio.ensure_future(ChatToolACE().ainvoke("Tell me a long story."))
    while not endless.started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert endless.cancelled.is_set() and endless.closed.is_set()


async def test_async_stream_close_stops_generation(endless: EndlessBackend) -> None:
    stream = ChatToolACE()._astream([HumanMessage("Tell me a long story.")])
    assert (await stream.__anext__()).text == "word"
    await stream.aclose()
    assert endless.cancelled.is_set() and endless.closed.is_set()


def test_sync_stream_close_stops_generation(endless: EndlessBackend) -> None:
    stream = ChatToolACE().stream("Tell me a long story.")
    assert next(stream).content == "word"
    stream.close()
    assert endless.closed.is_set()  # closing the engine's stream stops its generation


def test_sync_stream_break_frees_the_engine(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, max_tokens=3000, temperature=1.0, seed=1).load()
    stream = llm.stream("Tell me a long story.")
    assert next(stream).content
    stream.close()
    engine: Any = llm._backend()
    assert not engine._generate_lock.locked()


def test_batch_runs_one_padded_batch(llm: ChatToolACE, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    run_chat_batch = chat.run_chat_batch

    def spy(backend: Any, requests: Any) -> list[ChatTurn]:
        batches.append(len(requests))
        return run_chat_batch(backend, requests)

    monkeypatch.setattr(chat, "run_chat_batch", spy)
    bound = llm.bind_tools([get_weather], tool_choice="get_weather", parallel_tool_calls=False)
    messages = bound.batch(["Weather in Paris?", "Weather in Tokyo?"], max_tokens=48)
    assert batches == [2]
    assert all(isinstance(m, AIMessage) and len(m.tool_calls) == 1 for m in messages)
    assert all(m.id and m.usage_metadata for m in messages)
    assert messages[0].tool_calls[0]["id"] != messages[1].tool_calls[0]["id"]


async def test_abatch_and_per_input_config_fallback(llm: ChatToolACE) -> None:
    messages = await llm.abatch(["Hi", "Hello there"])
    assert len(messages) == 2 and all(isinstance(m, AIMessage) for m in messages)
    configs: Any = [{"tags": ["a"]}, {"tags": ["b"]}]
    assert len(llm.batch(["Hi", "Hello"], configs)) == 2


def test_bind_time_validation(llm: ChatToolACE) -> None:
    with pytest.raises(ToolChoiceError, match="get_time"):
        llm.bind_tools([get_weather], tool_choice="get_time")
    with pytest.raises(ToolChoiceError):
        llm.bind_tools([get_weather], tool_choice="sometimes")
    with pytest.raises(ToolChoiceError):
        llm.bind_tools([], tool_choice="any")
    bad = {"name": "bad name!", "description": "", "parameters": {"type": "object"}}
    with pytest.raises(ToolSpecError):
        llm.bind_tools([bad])
    with pytest.raises(TypeError, match="unknown call argument"):
        llm.invoke("hi", frequency_penalty=1.0)


def test_same_tool_in_two_spellings_binds_once(llm: ChatToolACE) -> None:
    bound: Any = llm.bind_tools([Forecast, Forecast.model_json_schema()])
    assert [t["function"]["name"] for t in bound.kwargs["tools"]] == ["Forecast"]
    other = {"name": "Forecast", "description": "Another tool.", "parameters": {}}
    with pytest.raises(ToolSpecError, match="unique"):
        llm.bind_tools([Forecast, other])


def _result(parsed: ParsedOutput) -> ChatTurn:
    return ChatTurn(parsed, "raw", "stop", 10, 5, "tiny")


def test_invalid_calls_map_to_invalid_tool_calls() -> None:
    parsed = ParsedOutput(
        "",
        [ToolCall("get_weather", {"city": "Paris"}, "call_a")],
        [
            InvalidCall('get_time(city="Rome")', "not in enum", "get_time", "call_b"),
            InvalidCall('{"name": "get_time"}', "expected a call", None, "call_c"),
        ],
    )
    message = _to_ai_message(_result(parsed), None)
    assert _calls(message) == [("get_weather", {"city": "Paris"})]
    assert [(c["name"], c["args"], c["id"], c["error"]) for c in message.invalid_tool_calls] == [
        ("get_time", 'get_time(city="Rome")', "call_b", "not in enum"),
        (None, '{"name": "get_time"}', "call_c", "expected a call"),
    ]
    last = to_chunk("", message)
    assert last is not None and isinstance(last.message, AIMessageChunk)
    streamed = last.message
    assert _calls(streamed) == _calls(message)  # the JSON-looking invalid call stays invalid
    assert [c["id"] for c in streamed.invalid_tool_calls] == ["call_b", "call_c"]


def test_answer_tool_becomes_json_content() -> None:
    parsed = ParsedOutput("", [ToolCall("Forecast", {"city": "Paris", "sunny": True})])
    message = _to_ai_message(_result(parsed), "Forecast")
    assert not message.tool_calls and json.loads(str(message.content))["city"] == "Paris"
