"""ToolACELLM on a tiny offline checkpoint: real tokenizer, real generate, real grammar."""

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import pytest
from llama_index.core.agent.workflow import AgentStream, FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel

from toolace_integrations.errors import NoToolCallError
from toolace_integrations.format.prompt import PromptError
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import (
    GenerationRequest,
    GenerationResult,
    ModelSpec,
    StreamEvent,
    load_engine,
)


class Settings(BaseModel):
    """Display settings."""

    unit: Literal["celsius", "fahrenheit"]
    loud: bool


def user(text: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.USER, content=text)


@pytest.fixture
def llm(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, max_new_tokens=48)


@pytest.fixture
def recorded() -> list[tuple[str, Any]]:
    return []


@pytest.fixture
def tools(recorded: list[tuple[str, Any]]) -> list[FunctionTool]:
    """Tools whose arguments a random model finishes quickly under the grammar."""

    def set_unit(unit: Literal["celsius", "fahrenheit"], loud: bool) -> str:
        """Set the temperature unit."""
        recorded.append(("set_unit", {"unit": unit, "loud": loud}))
        return "unit set"

    def toggle_alarm(on: bool) -> str:
        """Switch the alarm."""
        recorded.append(("toggle_alarm", {"on": on}))
        return "alarm toggled"

    return [FunctionTool.from_defaults(set_unit), FunctionTool.from_defaults(toggle_alarm)]


def test_construction_loads_nothing_and_metadata_describes_a_function_calling_chat_model(
    tiny_model_path: str,
) -> None:
    llm = ToolACELLM(model=tiny_model_path)
    assert not llm._slot.backends
    meta = llm.metadata
    assert meta.is_function_calling_model and meta.is_chat_model
    assert meta.context_window == 4096 and meta.num_output == 512  # config.json, no weights
    assert llm.model_name == tiny_model_path
    llm.complete("hello", max_new_tokens=2)
    assert llm.metadata.context_window == 4096  # read from the loaded config
    assert ToolACELLM(model=tiny_model_path, context_window=2048).metadata.context_window == 2048


def test_chat_answers_with_text_and_usage(llm: ToolACELLM) -> None:
    response = llm.chat([user("Tell me a story.")])
    assert response.message.role == MessageRole.ASSISTANT
    assert response.message.content
    assert not llm.get_tool_calls_from_response(response, error_on_no_tool_call=False)
    usage = response.additional_kwargs
    assert usage["completion_tokens"] == 48
    assert usage["total_tokens"] == usage["prompt_tokens"] + 48
    assert response.raw["finish_reason"] == "length"


def test_chat_with_required_tools_returns_bound_calls_with_unique_ids(
    llm: ToolACELLM, tools: list[FunctionTool]
) -> None:
    response = llm.chat_with_tools(
        tools, user_msg="Set the unit.", tool_required=True, allow_parallel_tool_calls=True
    )
    selections = llm.get_tool_calls_from_response(response)
    assert selections
    assert {s.tool_name for s in selections} <= {"set_unit", "toggle_alarm"}
    ids = [s.tool_id for s in selections]
    assert len(set(ids)) == len(ids) and all(i.startswith("call_") for i in ids)
    blocks = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
    assert [b.tool_call_id for b in blocks] == ids
    mirrored = response.message.additional_kwargs["tool_calls"]
    assert [c["id"] for c in mirrored] == ids
    assert [c["function"]["name"] for c in mirrored] == [s.tool_name for s in selections]


def test_tool_choice_by_name_and_no_parallel_calls(
    llm: ToolACELLM, tools: list[FunctionTool]
) -> None:
    response = llm.chat_with_tools(tools, user_msg="Alarm!", tool_choice="toggle_alarm")
    selections = llm.get_tool_calls_from_response(response)
    assert [s.tool_name for s in selections] == ["toggle_alarm"]
    assert isinstance(selections[0].tool_kwargs["on"], bool)


def test_validate_keeps_only_the_first_call_unless_parallel_is_allowed(llm: ToolACELLM) -> None:
    def response() -> ChatResponse:
        blocks: list[Any] = [TextBlock(text="")]
        blocks += [ToolCallBlock(tool_call_id=f"c{i}", tool_name="f") for i in range(3)]
        calls = [{"id": f"c{i}", "function": {"name": "f", "arguments": "{}"}} for i in range(3)]
        message = ChatMessage(
            role="assistant", blocks=blocks, additional_kwargs={"tool_calls": calls}
        )
        return ChatResponse(message=message)

    single = llm._validate_chat_with_tools_response(response(), [])
    assert [s.tool_id for s in llm.get_tool_calls_from_response(single)] == ["c0"]
    assert len(single.message.additional_kwargs["tool_calls"]) == 1
    parallel = llm._validate_chat_with_tools_response(response(), [], True)
    assert len(llm.get_tool_calls_from_response(parallel)) == 3


def test_predict_and_call_runs_the_tool(
    llm: ToolACELLM, tools: list[FunctionTool], recorded: list[tuple[str, Any]]
) -> None:
    output = llm.predict_and_call(tools[:1], "Use celsius.", tool_required=True)
    assert recorded and recorded[0][0] == "set_unit"
    assert output.response == "unit set"
    assert output.sources[0].tool_name == "set_unit"


@pytest.mark.parametrize(
    ("return_direct", "streaming"),
    [(True, True), (False, False)],
    ids=["return-direct-streaming", "answer-non-streaming"],
)
# llama-index-workflows collects steps with inspect.getmembers() on the pydantic agent, which
# touches pydantic's deprecated __fields__ / model_computed_fields accessors (not our code).
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
async def test_function_agent_forced_first_step_runs_the_tool_and_finishes(
    llm: ToolACELLM, recorded: list[tuple[str, Any]], streaming: bool, return_direct: bool
) -> None:
    def set_unit(unit: Literal["celsius", "fahrenheit"], loud: bool) -> str:
        """Set the temperature unit."""
        recorded.append(("set_unit", {"unit": unit, "loud": loud}))
        return "unit set"

    tool = FunctionTool.from_defaults(set_unit, return_direct=return_direct)
    # FunctionAgent passes initial_tool_choice as tool_choice on the first step only; the
    # grammar then makes even random weights call; later steps are free (auto).
    agent = FunctionAgent(
        tools=[tool], llm=llm, initial_tool_choice="set_unit", streaming=streaming
    )
    handler = agent.run(user_msg="Use celsius, loudly.")
    results, streamed = [], []
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            results.append(event)
        elif isinstance(event, AgentStream):
            streamed.append(event)
    output = await handler
    assert recorded and recorded[0][0] == "set_unit"
    assert results[0].tool_output.content == "unit set"
    assert bool(streamed) == streaming
    if return_direct:
        assert output.response.content == "unit set"
    else:  # later, unforced steps may call again; the run ends on a text answer
        assert output.response.role == MessageRole.ASSISTANT
        assert not [b for b in output.response.blocks if isinstance(b, ToolCallBlock)]


def test_stream_chat_yields_deltas_before_the_end(llm: ToolACELLM) -> None:
    responses = list(llm.stream_chat([user("Tell me a story.")], temperature=1.0, seed=3))
    deltas = [r.delta for r in responses if r.delta]
    assert len(deltas) > 1
    assert responses[-1].raw["finish_reason"] == "length"
    assert "".join(r.delta or "" for r in responses).strip() == responses[-1].message.content
    assert responses[-2].message.content == "".join(r.delta or "" for r in responses[:-1])


def test_stream_complete_and_complete(llm: ToolACELLM) -> None:
    options = {"temperature": 1.0, "seed": 4, "max_new_tokens": 16}
    chunks = list(llm.stream_complete("Hello", **options))
    assert len(chunks) > 1
    assert llm.complete("Hello", **options).text == chunks[-1].text


def test_closing_a_stream_stops_generation(llm: ToolACELLM) -> None:
    stream = llm.stream_chat([user("Go on.")], max_new_tokens=2000, temperature=1.0, seed=2)
    next(stream)
    started = time.monotonic()
    stream.close()
    engine: Any = llm._backend()
    while engine._generate_lock.locked() and time.monotonic() - started < 5:
        time.sleep(0.01)
    assert not engine._generate_lock.locked()
    assert time.monotonic() - started < 5


async def test_async_variants_run_without_blocking_the_loop(llm: ToolACELLM) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        answer = await llm.achat([user("Tell me a story.")], max_new_tokens=48)
        assert answer.message.content and ticks > 0
        stream = await llm.astream_chat([user("Hi")], temperature=1.0, seed=3)
        deltas = [r.delta async for r in stream if r.delta]
        assert len(deltas) > 1
        completion = await llm.acomplete("Hello")
        assert completion.text
        chunks = [c async for c in await llm.astream_complete("Hello")]
        assert chunks[-1].text == completion.text
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_cancelling_an_async_chat_stops_generation(llm: ToolACELLM) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        stream = await llm.astream_chat([user("Go on.")], max_new_tokens=2000, temperature=1.0)
        async for _ in stream:
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    engine: Any = llm._backend()
    started = time.monotonic()
    while engine._generate_lock.locked() and time.monotonic() - started < 5:
        await asyncio.sleep(0.01)
    assert not engine._generate_lock.locked()
    assert (await llm.achat([user("Hi")], max_new_tokens=2)).message.role == "assistant"


async def test_achat_with_tools_and_errors_surface_in_the_loop(
    llm: ToolACELLM, tools: list[FunctionTool]
) -> None:
    response = await llm.achat_with_tools(tools, user_msg="Alarm", tool_choice="toggle_alarm")
    assert llm.get_tool_calls_from_response(response)[0].tool_name == "toggle_alarm"
    image = ChatMessage(role="user", blocks=[ImageBlock(url="https://example.com/a.png")])
    with pytest.raises(PromptError, match="text only"):
        await llm.achat([image])


@pytest.mark.parametrize("form", ["blocks", "additional_kwargs"])
def test_tool_result_round_trip_renders_toolace_format(
    llm: ToolACELLM, tools: list[FunctionTool], tiny_model_path: str, form: str
) -> None:
    if form == "blocks":
        call = ChatMessage(
            role="assistant",
            blocks=[
                ToolCallBlock(
                    tool_call_id="call_1", tool_name="set_unit", tool_kwargs={"unit": "celsius"}
                )
            ],
        )
    else:
        openai_call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "set_unit", "arguments": '{"unit": "celsius"}'},
        }
        call = ChatMessage(
            role="assistant", content="", additional_kwargs={"tool_calls": [openai_call]}
        )
    result = ChatMessage(
        role=MessageRole.TOOL, content='{"ok": true}', additional_kwargs={"tool_call_id": "call_1"}
    )
    history = [user("Use celsius."), call, result]
    kwargs = llm._prepare_chat_with_tools(tools, chat_history=history)
    assert kwargs["messages"] == history and kwargs["messages"] is not history
    request = llm._build_request(kwargs.pop("messages"), kwargs)
    text = load_engine(ModelSpec(model=tiny_model_path)).prompt_text(request.messages)
    assert '<|start_header_id|>assistant<|end_header_id|>\n\n[set_unit(unit="celsius")]' in text
    assert (
        "<|start_header_id|>ipython<|end_header_id|>\n\n"
        '[{"name": "set_unit", "results": {"ok": true}}]<|eot_id|>'
    ) in text
    assert llm.chat(**llm._prepare_chat_with_tools(tools, chat_history=history)).message


class _ScriptedBackend:
    """A backend that 'generates' fixed text, to map exact model outputs."""

    model_name = "scripted"
    context_window = 0

    def __init__(self, text: str) -> None:
        self.text = text

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        yield StreamEvent(self.text)
        yield StreamEvent("", GenerationResult(self.text, "stop", 3, 5))

    def generate_batch(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event | None = None
    ) -> list[GenerationResult]:
        return [GenerationResult(self.text, "stop", 3, 5) for _ in requests]


@pytest.mark.parametrize(
    "text", ['[set_unit(unit="kelvin", loud=True)]', "[set_unit(unit=", "[nope()]"]
)
def test_malformed_calls_never_raise_and_are_reported(
    tiny_model_path: str, tools: list[FunctionTool], text: str
) -> None:
    llm = ToolACELLM(model=tiny_model_path)
    llm._slot.backends[llm._backend_key()] = _ScriptedBackend(text)
    response = llm.chat_with_tools(tools, user_msg="Set it.", tool_required=True)
    invalid = response.message.additional_kwargs["invalid_tool_calls"]
    assert invalid and invalid[0]["error"] and invalid[0]["text"]
    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    with pytest.raises(NoToolCallError, match="invalid call attempts"):
        llm.get_tool_calls_from_response(response)
    streamed = list(llm.stream_chat_with_tools(tools, user_msg="Set it."))
    # Partial responses show a call as it is written; the last one has no invalid call.
    assert llm.get_tool_calls_from_response(streamed[-1], error_on_no_tool_call=False) == []


def test_structured_predict_and_structured_llm_return_instances(llm: ToolACELLM) -> None:
    settings = llm.structured_predict(Settings, PromptTemplate("Settings for {city}?"), city="Oslo")
    assert isinstance(settings, Settings)
    structured = llm.as_structured_llm(Settings)
    response = structured.chat([user("Settings for Oslo?")])
    assert isinstance(response.raw, Settings)
