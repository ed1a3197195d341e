"""LlamaIndex streamed structured output fills in as the call streams, ends as structured_predict.

The real tiny model is steered (``tests/reliability/_hooks.py``) to write the call token by
token with the grammar on, through llama-index's own ``FunctionCallingProgram`` streaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts import PromptTemplate
from pydantic import BaseModel

from reliability._hooks import DTYPE, steer
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import ModelSpec, TransformersEngine, load_engine


class Booking(BaseModel):
    """A room booking."""

    guest: str
    nights: int
    breakfast: bool


class Display(BaseModel):
    """Display settings."""

    unit: Literal["celsius", "fahrenheit"]
    loud: bool


GUEST = "Saint Petersburg on the Neva"  # several tokens, so the value streams in pieces
BOOKING = Booking(guest=GUEST, nights=3, breakfast=True)
ANSWER = f'[Booking(guest="{GUEST}", nights=3, breakfast=True)]'
PROMPT = PromptTemplate("Book a room for {who}.")
# llama-index's StructuredLLM.stream_chat writes each part with pydantic's deprecated ``.json()``.
LLAMA_INDEX_USES_JSON = pytest.mark.filterwarnings(
    "ignore:The `json` method is deprecated:pydantic.warnings.PydanticDeprecatedSince20"
)


@pytest.fixture(scope="module")
def engine(tiny_model_path: str) -> TransformersEngine:
    return load_engine(ModelSpec(model=tiny_model_path, dtype=DTYPE))


@pytest.fixture(scope="module")
def llm(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=96)


def assert_fills_in(parts: Sequence[Any]) -> None:
    """Fields only ever fill in, the guest shows part-written, and the last part is whole."""
    assert isinstance(parts[-1], Booking) and parts[-1] == BOOKING
    filled = [sum(value is not None for value in vars(part).values()) for part in parts]
    assert filled == sorted(filled) and filled[-1] == 3
    guests = [part.guest for part in parts[:-1]]
    assert any(g and g != GUEST and GUEST.startswith(g) for g in guests), guests
    assert any(part.guest == GUEST and part.breakfast is None for part in parts), parts


def test_stream_structured_predict_ends_as_structured_predict(
    llm: ToolACELLM, engine: TransformersEngine
) -> None:
    with steer(engine, ANSWER, ANSWER) as pending:
        predicted = llm.structured_predict(Booking, PROMPT, who="Ann")
        parts = list(llm.stream_structured_predict(Booking, PROMPT, who="Ann"))
    assert pending == [] and predicted == BOOKING
    assert_fills_in(parts)


async def test_astream_structured_predict_ends_as_structured_predict(
    llm: ToolACELLM, engine: TransformersEngine
) -> None:
    with steer(engine, ANSWER, ANSWER) as pending:
        predicted = await llm.astructured_predict(Booking, PROMPT, who="Ann")
        stream = await llm.astream_structured_predict(Booking, PROMPT, who="Ann")
        parts = [part async for part in stream]
    assert pending == [] and predicted == BOOKING
    assert_fills_in(parts)


@LLAMA_INDEX_USES_JSON
def test_structured_llm_stream_chat_ends_with_the_object(
    llm: ToolACELLM, engine: TransformersEngine
) -> None:
    structured = llm.as_structured_llm(Booking)
    message = ChatMessage(role=MessageRole.USER, content="Book a room for Ann.")
    with steer(engine, ANSWER, ANSWER) as pending:
        whole = structured.chat([message])
        responses = list(structured.stream_chat([message]))
    assert pending == [] and whole.raw == BOOKING
    assert_fills_in([response.raw for response in responses])
    assert Booking.model_validate_json(responses[-1].message.content or "") == BOOKING


@LLAMA_INDEX_USES_JSON
async def test_structured_llm_astream_chat_ends_with_the_object(
    llm: ToolACELLM, engine: TransformersEngine
) -> None:
    structured = llm.as_structured_llm(Booking)
    message = ChatMessage(role=MessageRole.USER, content="Book a room for Ann.")
    with steer(engine, ANSWER) as pending:
        responses = [response async for response in await structured.astream_chat([message])]
    assert pending == []
    assert_fills_in([response.raw for response in responses])


def test_the_streamed_call_is_forced_as_in_structured_predict(llm: ToolACELLM) -> None:
    """Unsteered: llama-index's streaming program asks for no forced call (it drops
    ``tool_required``), and the random model then answered text, every part empty."""
    predicted = llm.structured_predict(Display, PROMPT, who="Ann")
    parts = list(llm.stream_structured_predict(Display, PROMPT, who="Ann"))
    assert isinstance(parts[-1], Display) and parts[-1] == predicted
