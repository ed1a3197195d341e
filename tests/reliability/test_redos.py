"""Checking the model's arguments against a schema is bounded in time and off the event loop.

The grammar does not enforce ``pattern``, so the model may write any string there. With a
schema's catastrophic pattern ``^(a+)+$``, Python's backtracking ``re`` needs about a minute
and a half for the 31 characters below (the time doubles with each ``a``) and holds the GIL all
along. The model is steered (a logits hook writes the answer token by token) so the real
tokenizer, ``generate``, decoding and parsing run. ``BOUND_S`` is not a speed target: the check
takes milliseconds, or at most the 1 s validation budget; the bound only tells "bounded" from
"exponential" without hanging the test run.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _hooks import DTYPE, steer
from langchain_core.messages import AIMessage
from llama_index.core.base.llms.types import ChatMessage, ChatResponse

from toolace_integrations.core import chat
from toolace_integrations.errors import ToolSpecError
from toolace_integrations.format.parsing import parse_tool_calls
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine

BOUND_S = 10.0
CATASTROPHIC = "^(a+)+$"
ADVERSARIAL = "a" * 30 + "!"  # does not match, so a backtracking engine tries every split


def _echo(schema: dict[str, Any]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": {"text": schema}, "required": ["text"]}
    return {"type": "function", "function": {"name": "echo", "description": "Echo a word.",
                                             "parameters": parameters}}  # fmt: skip


ECHO = _echo({"type": "string", "pattern": CATASTROPHIC})
ANSWER = f'[echo(text="{ADVERSARIAL}")]'
NO_MATCH = f"'{ADVERSARIAL}' does not match '{CATASTROPHIC}'"


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(
        model=tiny_model_path, dtype=DTYPE, max_tokens=64, constrained_decoding=False
    )


@pytest.fixture(scope="module")
def li(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(
        model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=64, constrained_decoding=False
    )


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


@pytest.mark.parametrize("path", ["invoke", "stream"])
def test_catastrophic_pattern_gives_an_invalid_call_in_bounded_time(
    lc: ChatToolACE, engine: TransformersEngine, path: str
) -> None:
    bound = lc.bind_tools([ECHO])
    with steer(engine, ANSWER) as pending:
        if path == "invoke":
            message, elapsed = _timed(lambda: bound.invoke("Echo."))
        else:
            chunks, elapsed = _timed(lambda: list(bound.stream("Echo.")))
            message = chunks[0]
            for chunk in chunks[1:]:
                message += chunk
    assert not pending
    assert elapsed < BOUND_S
    assert message.tool_calls == []
    [invalid] = message.invalid_tool_calls
    assert invalid["name"] == "echo"
    if path == "invoke":  # LangChain chunks cannot carry the error text
        assert NO_MATCH in str(invalid["error"])


def test_matching_string_under_a_catastrophic_pattern_is_a_valid_call(
    lc: ChatToolACE, engine: TransformersEngine
) -> None:
    with steer(engine, f'[echo(text="{"a" * 40}")]'):
        message = lc.bind_tools([ECHO]).invoke("Echo.")
    assert [call["args"] for call in message.tool_calls] == [{"text": "a" * 40}]


class _Ticker:
    """Counts event-loop turns every 10 ms and records the longest gap between two."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            self.longest, last = max(self.longest, now - last), now

    async def __aenter__(self) -> "_Ticker":
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
def parse_threads(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The threads the adapters' turns parse model output in."""
    threads: list[threading.Thread] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return parse_tool_calls(*args, **kwargs)

    monkeypatch.setattr(chat, "parse_tool_calls", spy)
    return threads


async def test_langchain_ainvoke_checks_arguments_off_the_event_loop(
    lc: ChatToolACE, engine: TransformersEngine, parse_threads: list[threading.Thread]
) -> None:
    bound = lc.bind_tools([ECHO])
    with steer(engine, ANSWER) as pending:
        async with _Ticker() as ticker:
            message: AIMessage = await bound.ainvoke("Echo.")
    assert not pending
    assert parse_threads and threading.current_thread() not in parse_threads
    assert ticker.longest < BOUND_S / 4
    [invalid] = message.invalid_tool_calls
    assert NO_MATCH in str(invalid["error"])


async def test_llama_index_achat_checks_arguments_off_the_event_loop(
    li: ToolACELLM, engine: TransformersEngine, parse_threads: list[threading.Thread]
) -> None:
    messages = [ChatMessage(role="user", content="Echo.")]
    with steer(engine, ANSWER) as pending:
        async with _Ticker() as ticker:
            response: ChatResponse = await li.achat(messages, tools=[ECHO])
    assert not pending
    assert parse_threads and threading.current_thread() not in parse_threads
    assert ticker.longest < BOUND_S / 4
    [invalid] = response.message.additional_kwargs["invalid_tool_calls"]
    assert NO_MATCH in invalid["error"]


def _deep_any_of() -> dict[str, Any]:
    """Two array branches at every level: a failing leaf is tried 2**depth times."""
    branch = {"type": "array", "items": {"$ref": "#/$defs/node"}}
    node = {"anyOf": [branch, {**branch, "minItems": 0}, {"type": "integer"}]}
    return {
        "type": "object",
        "$defs": {"node": node},
        "properties": {"x": {"$ref": "#/$defs/node"}},
    }


# (tool schema, model answer, what the invalid call's error says)
BOUNDED = [
    pytest.param(
        _echo({"type": "string", "pattern": CATASTROPHIC})["function"]["parameters"],
        ANSWER,
        NO_MATCH,
        id="catastrophic-pattern",
    ),
    pytest.param(
        _echo({"type": "string", "pattern": "^(?=a)(a|aa)+$"})["function"]["parameters"],
        f'[echo(text="{"a" * 45}!")]',
        "ran past the time budget for schema checks",
        id="look-ahead-pattern",  # no RE2 form: a timed backtracking match
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {
                "tags": {
                    "type": "object",
                    "patternProperties": {CATASTROPHIC: {"type": "integer"}},
                    "additionalProperties": False,
                }
            },
        },
        f'[echo(tags={{"{ADVERSARIAL}": 1}})]',
        "match none of the regexes",
        id="pattern-properties-key",
    ),
    pytest.param(
        {"type": "object", "properties": {"rows": {"type": "array", "uniqueItems": True}}},
        "[echo(rows=[" + ", ".join(f'{{"id": {i}}}' for i in [*range(8000), 0]) + "])]",
        "has non-unique elements",
        id="unique-items-of-dicts",  # jsonschema compares every pair of unsortable items
    ),
    pytest.param(
        _deep_any_of(),
        "[echo(x=" + "[" * 20 + '"leaf"' + "]" * 20 + ")]",
        "time budget for schema checks",
        id="exponential-any-of",
    ),
]


@pytest.mark.parametrize(("parameters", "answer", "error"), BOUNDED)
def test_schema_checks_are_bounded_whatever_the_schema(
    parameters: dict[str, Any], answer: str, error: str
) -> None:
    tool = {"name": "echo", "parameters": parameters}
    out, elapsed = _timed(lambda: parse_tool_calls(answer, [tool]))
    assert elapsed < BOUND_S
    assert out.calls == []
    [invalid] = out.invalid
    assert invalid.name == "echo" and error in invalid.error


def test_many_slow_calls_share_one_budget() -> None:
    """A budget per call would let 1000 calls take 1000 budgets."""
    tool = {"name": "echo", "parameters": BOUNDED[1].values[0]}
    answer = "[" + ", ".join(f'echo(text="{"a" * 45}!")' for _ in range(20)) + "]"
    out, elapsed = _timed(lambda: parse_tool_calls(answer, [tool]))
    assert elapsed < BOUND_S
    assert len(out.invalid) == 20 and not out.calls


@pytest.mark.parametrize(
    ("rows", "unique"),
    [
        ("[1, True]", True),
        ("[None, False, 0]", True),
        ("[[1, 2], [2, 1]]", True),
        ("[1, 1.0]", False),
        ('[{"a": [1]}, {"a": [1.0]}]', False),
        ('[{"a": 1, "b": 2}, {"b": 2, "a": 1}]', False),
    ],
)
def test_unique_items_keeps_its_meaning(rows: str, unique: bool) -> None:
    parameters = {"type": "object", "properties": {"rows": {"type": "array", "uniqueItems": True}}}
    out = parse_tool_calls(f"[echo(rows={rows})]", [{"name": "echo", "parameters": parameters}])
    assert bool(out.calls) is unique


@pytest.mark.parametrize(
    ("pattern", "text", "valid"),
    [
        pytest.param("^[A-Z]{3}$", "CDG", True, id="anchored-match"),
        pytest.param("^[A-Z]{3}$", "cdg", False, id="anchored-mismatch"),
        pytest.param("[0-9]", "flight 7", True, id="unanchored-search"),
        pytest.param("^(?!tmp)", "tmp_file", False, id="look-ahead-mismatch"),
        pytest.param("^(?!tmp)", "report", True, id="look-ahead-match"),
        pytest.param("^é+$", "éé", True, id="non-ascii"),
    ],
)
def test_patterns_keep_their_meaning(pattern: str, text: str, valid: bool) -> None:
    tool = {
        "name": "echo",
        "parameters": _echo({"type": "string", "pattern": pattern})["function"]["parameters"],
    }
    out = parse_tool_calls(f'[echo(text="{text}")]', [tool])
    assert bool(out.calls) is valid and bool(out.invalid) is not valid


def test_pattern_properties_with_unevaluated_properties_is_refused() -> None:
    """jsonschema would match these patterns with ``re``, out of reach of any bound."""
    parameters = {
        "type": "object",
        "patternProperties": {"^x_": {"type": "integer"}},
        "unevaluatedProperties": False,
    }
    with pytest.raises(
        ToolSpecError, match="unevaluatedProperties together with patternProperties"
    ):
        parse_tool_calls("[echo(x_a=1)]", [{"name": "echo", "parameters": parameters}])
