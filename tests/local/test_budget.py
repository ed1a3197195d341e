"""Forced answers at the budget edge: the model's own answer, closed honestly, or truncated.

The engine may end a forced call list early only where nothing is cut or invented (after a
complete call, or after a complete argument value once every required argument is written),
adding nothing but ``)``/``]``. Every other answer cut by ``max_tokens`` is reported truncated.
Each answer is compared with the model's own answer to the same request (same seed) generated
without the closer: a closed answer must be a prefix of it plus the closing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage
from pydantic import BaseModel, Field, ValidationError

from bfcl_data import CATEGORIES, load_entries
from reliability._hooks import DTYPE, steer
from toolace_integrations.core import chat
from toolace_integrations.core.budget import budget_closer
from toolace_integrations.core.chat import ChatTurn
from toolace_integrations.core.generation import SamplingParams
from toolace_integrations.errors import NoToolCallError, TruncatedOutputError
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.tools import ToolChoice, normalize_tools
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local import engine as engine_module
from toolace_integrations.local.engine import ModelSpec, TransformersEngine, load_engine

OPTIONAL = [f"p{i}" for i in range(8)]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string"},
                **{name: {"type": "string"} for name in OPTIONAL},
            },
            "required": ["city", "unit"],
        },
    },
}
RUNAWAY = '[get_weather(city="Paris", unit="c", ' + ", ".join(f'{p}="v"' for p in OPTIONAL) + ")]"
CUT = "truncated by max_new_tokens"


class Summary(BaseModel):
    """A summary."""

    title: str
    summary: str


class Person(BaseModel):
    """A person; the grammar cannot enforce these bounds, so no closing may invent values."""

    name: str = Field(min_length=2)
    age: int = Field(ge=18)


class Measure(BaseModel):
    """Unions whose branches start alike."""

    value: int | float
    unit: Literal["kg", "lb"] | str


@pytest.fixture(scope="module")
def engine(tiny_model_path: str) -> TransformersEngine:
    return load_engine(ModelSpec(model=tiny_model_path, dtype=DTYPE))


@contextmanager
def turns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ChatTurn]]:
    """Every turn the adapters produce, as the neutral chat turn saw it."""
    seen: list[ChatTurn] = []
    original = chat._chat_result

    def record(*args: Any) -> ChatTurn:
        seen.append(original(*args))
        return seen[-1]

    with monkeypatch.context() as patch:
        patch.setattr(chat, "_chat_result", record)
        yield seen


@contextmanager
def without_closer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Generate the model's own answer: nothing is forced near the budget."""
    with monkeypatch.context() as patch:
        patch.setattr(engine_module, "budget_closer", lambda tokenizer, request: None)
        yield


def assert_honest(turn: ChatTurn, own: Callable[[], ChatTurn]) -> str:
    """``turn`` is the model's own answer, a prefix of it closed, or reported cut.

    ``own`` generates the model's answer to the same request without the closer (it is only
    needed, and only called, when the closer forced something).
    """
    if turn.closed_early:
        written = turn.text.removesuffix(")]") if turn.text.endswith(")]") else turn.text[:-1]
        model = own().text
        assert model.startswith(written), (turn.text, model)  # the model wrote all of it
        errors = [call.error for call in turn.parsed.invalid]  # the model's values may be wrong
        assert turn.finish_reason == "length" and not any(CUT in error for error in errors)
        assert len(turn.parsed.calls) + len(errors) and not turn.parsed.content
        return "closed"
    errors = [call.error for call in turn.parsed.invalid]
    if turn.finish_reason == "length" and (errors or not turn.parsed.calls):
        assert errors and CUT in errors[-1], (turn.text, errors)  # earlier: the model's own
        return "truncated"
    assert not any(CUT in error for error in errors), turn.text
    return "complete"  # the model ended the list itself (its values may break the schema)


Ask = Callable[[int, int], Any]
CASES = [(budget, seed) for seed in range(3) for budget in (25, 40, 55)]


def _sweep(
    monkeypatch: pytest.MonkeyPatch, ask: Ask, check: Callable[[Any, ChatTurn], None], seeds: int
) -> None:
    """Ask at 25/40/55 tokens with ``seeds`` sampling seeds; check each answer is honest."""
    for budget, seed in CASES[: 3 * seeds]:  # every budget with each seed
        with turns(monkeypatch) as seen:
            try:
                answer: Any = ask(budget, seed)
            except (NoToolCallError, ValidationError) as error:
                answer = error
        [turn] = seen

        def own(budget: int = budget, seed: int = seed) -> ChatTurn:
            with turns(monkeypatch) as again, without_closer(monkeypatch):
                with suppress(NoToolCallError, ValidationError):
                    ask(budget, seed)
            return again[-1]

        assert_honest(turn, own)
        check(answer, turn)


def _structured_check(schema: type[BaseModel]) -> Callable[[Any, ChatTurn], None]:
    def check(answer: Any, turn: ChatTurn) -> None:
        if not turn.parsed.calls:
            assert turn.finish_reason == "length" and isinstance(answer, TruncatedOutputError)
        elif isinstance(answer, (ValidationError, NoToolCallError)):  # the model's own values
            assert turn.parsed.invalid and not isinstance(answer, TruncatedOutputError)
        else:
            assert isinstance(answer, schema)
            assert answer.model_dump() == turn.parsed.calls[0].arguments  # as the model wrote

    return check


@pytest.mark.parametrize("schema", [Summary, Person, Measure])
def test_langchain_structured_output_at_the_budget_edge_never_invents(
    tiny_model_path: str, engine: TransformersEngine, schema: type[BaseModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def ask(budget: int, seed: int) -> Any:
        llm = ChatToolACE(
            model=tiny_model_path, dtype=DTYPE, max_tokens=budget, temperature=1.0, seed=seed
        )
        out = llm.with_structured_output(schema, include_raw=True).invoke("Fill it in.")
        if out["parsing_error"] is not None:
            raise out["parsing_error"]
        return out["parsed"]

    _sweep(monkeypatch, ask, _structured_check(schema), seeds=3)


@pytest.mark.parametrize("schema", [Summary, Person, Measure])
def test_llama_index_structured_predict_at_the_budget_edge_never_invents(
    tiny_model_path: str, engine: TransformersEngine, schema: type[BaseModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from llama_index.core.prompts import PromptTemplate

    def ask(budget: int, seed: int) -> Any:
        llm = ToolACELLM(
            model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=budget, temperature=1.0,
            seed=seed,
        )  # fmt: skip
        return llm.structured_predict(schema, PromptTemplate("Fill it in."))

    _sweep(monkeypatch, ask, _structured_check(schema), seeds=3)


@pytest.mark.parametrize("schema", [Person, Measure])
def test_forced_calls_at_the_budget_edge_are_the_models_or_reported_cut(
    tiny_model_path: str, engine: TransformersEngine, schema: type[BaseModel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def ask(budget: int, seed: int) -> AIMessage:
        llm = ChatToolACE(
            model=tiny_model_path, dtype=DTYPE, max_tokens=budget, temperature=1.0, seed=seed
        )
        return llm.bind_tools([schema], tool_choice=schema.__name__).invoke("Call it.")

    def check(message: Any, turn: ChatTurn) -> None:
        assert isinstance(message, AIMessage)
        assert [c["args"] for c in message.tool_calls] == [c.arguments for c in turn.parsed.calls]
        assert len(message.invalid_tool_calls) == len(turn.parsed.invalid)
        assert message.response_metadata.get("closed_early", False) is turn.closed_early

    _sweep(monkeypatch, ask, check, seeds=3)


def test_forced_calls_on_bfcl_tool_sets_are_closed_honestly_or_reported_cut(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sets = [
        (entry.question, normalize_tools(entry.functions))
        for category in CATEGORIES
        for entry in load_entries((category,))[:2]
    ]
    choices = [ToolChoice("required"), ToolChoice("required", parallel=False)]
    for number, (question, tools) in enumerate(sets):
        for budget in (48, 96):
            request = chat.build_request(
                [Message("user", question)],
                tools,
                tool_choice=choices[(number + budget) % 2],
                sampling=SamplingParams(max_new_tokens=budget),
            )
            turn = chat.run_chat(engine, request)

            def own(request: Any = request) -> ChatTurn:
                with without_closer(monkeypatch):
                    return chat.run_chat(engine, request)

            assert_honest(turn, own)
            assert turn.completion_tokens <= budget


LONG = '[get_weather(city="' + "x" * 400 + '", unit="c")]'


def test_a_value_cut_by_the_budget_is_reported_never_finished(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=60)
    bound = llm.bind_tools([WEATHER], tool_choice="get_weather")
    with steer(engine, LONG):  # the model would write a 400-character city
        message = bound.invoke("Weather?")
    assert not message.tool_calls and "closed_early" not in message.response_metadata
    [invalid] = message.invalid_tool_calls
    assert CUT in str(invalid["error"]) and 'city="xxx' in str(invalid["args"])
    assert message.response_metadata["finish_reason"] == "length"
    with steer(engine, LONG), pytest.raises(TruncatedOutputError):
        llm.with_structured_output(WEATHER).invoke("Weather?")


def _written(args: dict[str, Any]) -> None:
    """``args`` are the first arguments of RUNAWAY, exactly as written."""
    names = ["city", "unit", *OPTIONAL]
    assert list(args) == names[: len(args)] and len(args) >= 2
    assert args == {"city": "Paris", "unit": "c", **{p: "v" for p in list(args)[2:]}}


def test_a_call_is_closed_after_its_last_complete_argument(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=30)
    bound = llm.bind_tools([WEATHER], tool_choice="get_weather")
    with steer(engine, RUNAWAY):
        message = bound.invoke("Weather?")
    [call] = message.tool_calls
    _written(call["args"])
    assert len(call["args"]) < 2 + len(OPTIONAL)  # it was ended early
    assert message.response_metadata["finish_reason"] == "length"
    assert message.response_metadata["closed_early"] is True
    assert message.usage_metadata and message.usage_metadata["output_tokens"] <= 30
    with steer(engine, RUNAWAY):  # streamed pieces sum to the closed call
        chunks = list(bound.stream("Weather?"))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.tool_calls == [{**call, "id": total.tool_calls[0]["id"]}]


def test_llama_index_says_a_call_was_closed_early(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    from llama_index.core.tools import FunctionTool

    def get_weather(
        city: str, unit: str, p0: str = "", p1: str = "", p2: str = "", p3: str = "",
        p4: str = "", p5: str = "", p6: str = "", p7: str = "",
    ) -> str:  # fmt: skip
        """Weather in a city."""
        return city

    llm = ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=30)
    with steer(engine, RUNAWAY):
        response = llm.chat_with_tools(
            [FunctionTool.from_defaults(get_weather)], user_msg="Weather?", tool_required=True
        )
    [selection] = llm.get_tool_calls_from_response(response)
    _written(selection.tool_kwargs)
    assert response.raw["finish_reason"] == "length" and response.raw["closed_early"] is True


LOOP = "[" + ", ".join(['get_weather(city="a", unit="c")'] * 30) + "]"


def test_a_runaway_list_of_parallel_calls_is_closed(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=120)
    bound = llm.bind_tools([WEATHER], tool_choice="any")
    with steer(engine, LOOP):
        message = bound.invoke("Weather?")
    assert len(message.tool_calls) > 1 and not message.invalid_tool_calls
    assert all(call["args"] == {"city": "a", "unit": "c"} for call in message.tool_calls)
    assert message.response_metadata.get("closed_early") is True


def test_an_answer_that_ends_in_time_is_not_marked(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=64)
    with steer(engine, '[get_weather(city="a", unit="c")]'):
        message = llm.bind_tools([WEATHER], tool_choice="any").invoke("Weather?")
    assert message.response_metadata["finish_reason"] == "stop"
    assert "closed_early" not in message.response_metadata


def test_a_batch_of_forced_calls_is_closed_row_by_row(
    tiny_model_path: str, engine: TransformersEngine
) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=60)
    bound = llm.bind_tools([WEATHER], tool_choice="any")
    with steer(engine, LOOP):  # one generate() for both rows
        messages = bound.batch(["Weather in Paris?", "Weather in Rome, please?"])
    for message in messages:
        assert message.tool_calls and not message.invalid_tool_calls
        assert all(call["args"] == {"city": "a", "unit": "c"} for call in message.tool_calls)
        assert message.response_metadata["finish_reason"] == "length"
        assert message.response_metadata["closed_early"] is True


@pytest.mark.parametrize("script", [RUNAWAY, LOOP, LONG], ids=["runaway-call", "loop", "long"])
def test_replaying_the_models_tokens_gives_the_engines_answer(
    tiny_model_path: str, engine: TransformersEngine, script: str
) -> None:
    """What the remote backend does with a server's tokens is what the engine does with its own."""
    tools = normalize_tools([WEATHER])
    ids = engine.tokenizer(script, add_special_tokens=False)["input_ids"]
    closed = 0
    for budget in (16, 24, 31, 40):
        request = chat.build_request(
            [Message("user", "Weather?")], tools, tool_choice=ToolChoice("required"),
            sampling=SamplingParams(budget),
        )  # fmt: skip
        with steer(engine, script):
            turn = chat.run_chat(engine, request)
        closer = budget_closer(engine.tokenizer, request)
        assert closer is not None
        end = closer.replay(ids[:budget], budget)
        assert closer.closed_early is turn.closed_early, budget
        if end is not None:
            assert (closer.answer, end) == (turn.text, turn.completion_tokens)
        closed += turn.closed_early
    assert closed if script != LONG else not closed  # a cut value is never closed
