"""Argument names that are Python reserved words (``from``, ``class``, ``True``), end to end.

Flight, school and math tools name arguments ``from``, ``class`` or ``lambda``, and the model
writes ``[search_flights(from="NYC", to="SFO", class="economy")]``. Each case runs through the
parser and, one character at a time, through the streaming parser; both must agree, and calls
of bound tools must stream their arguments as they are written.
"""

from __future__ import annotations

import json
from keyword import kwlist
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolace_integrations.format.closing import Closer
from toolace_integrations.format.incremental import CallDelta, CallStream
from toolace_integrations.format.parsing import ParsedOutput, format_tool_calls, parse_tool_calls
from toolace_integrations.format.prompt import Message, render_messages
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools

FLIGHTS = {
    "type": "function",
    "function": {
        "name": "search_flights",
        "description": "Find flights between two airports.",
        "parameters": {
            "type": "object",
            "properties": {
                "from": {"type": "string"},
                "to": {"type": "string"},
                "class": {"type": "string", "enum": ["economy", "business"]},
                "return": {"type": "boolean"},
            },
            "required": ["from", "to"],
        },
    },
}
EVERY_WORD = {  # BFCL's shape: a bare dict, "type": "dict"
    "name": "every_word",
    "parameters": {"type": "dict", "properties": {word: {"type": "integer"} for word in kwlist}},
}
DOTTED = {
    "name": "api.class.get",
    "parameters": {
        "type": "dict",
        "properties": {"lambda": {"type": "string"}, "import": {"type": "boolean"}},
    },
}
FLIGHT_CALL = '[search_flights(from="NYC", to="SFO", class="economy")]'
FLIGHT_ARGS = {"from": "NYC", "to": "SFO", "class": "economy"}


def _spec(tool: dict[str, Any]) -> FunctionSpec:
    function = tool.get("function", tool)
    return FunctionSpec(function["name"], function.get("description", ""), function["parameters"])


@pytest.fixture(scope="module")
def tools() -> list[FunctionSpec]:
    """The tools as records (binding is checked on its own, below)."""
    return [_spec(tool) for tool in (FLIGHTS, EVERY_WORD, DOTTED)]


def test_tools_with_reserved_word_arguments_bind(tools: list[FunctionSpec]) -> None:
    assert normalize_tools([FLIGHTS, EVERY_WORD, DOTTED]) == tools


CASES = [
    pytest.param(FLIGHT_CALL, [("search_flights", FLIGHT_ARGS)], "", id="from-to-class"),
    pytest.param(
        f"[every_word({', '.join(f'{word}={i}' for i, word in enumerate(kwlist))})]",
        [("every_word", {word: i for i, word in enumerate(kwlist)})],
        "",
        id="every-reserved-word-true-false-none-too",
    ),
    pytest.param(
        '[api.class.get(lambda="x", import=True)]',
        [("api.class.get", {"lambda": "x", "import": True})],
        "",
        id="dotted-tool-name-with-a-reserved-part",
    ),
    pytest.param(
        '[search_flights( from = "NYC" ,\n to="SFO", return=False)]',
        [("search_flights", {"from": "NYC", "to": "SFO", "return": False})],
        "",
        id="spaces-and-newlines",
    ),
    pytest.param(
        '[search_flights(from="a, class=b", to=\'to=1, from="x"\')]',
        [("search_flights", {"from": "a, class=b", "to": 'to=1, from="x"'})],
        "",
        id="reserved-words-inside-strings-stay-text",
    ),
    pytest.param(
        '[search_flights("NYC", "SFO", class="business")]',
        [("search_flights", {"from": "NYC", "to": "SFO", "class": "business"})],
        "",
        id="positional-arguments-fill-reserved-parameters",
    ),
    pytest.param(
        '[search_flights(from="NYC", to="SFO"), search_flights(from="SFO", to="NYC")]',
        [
            ("search_flights", {"from": "NYC", "to": "SFO"}),
            ("search_flights", {"from": "SFO", "to": "NYC"}),
        ],
        "",
        id="parallel-calls",
    ),
    pytest.param(
        '[search_flights(from="NYC", from="BOS", to="SFO")]',
        [],
        "argument 'from' is given twice",
        id="duplicate-reserved-argument",
    ),
    pytest.param(
        '[search_flights("NYC", from="BOS", to="SFO")]',
        [],
        "given by position and keyword",
        id="position-and-keyword-clash",
    ),
    pytest.param(
        '[search_flights(from="NYC", to="SFO", class="first")]',
        [],
        "arguments do not match the schema of 'search_flights'",
        id="schema-still-checked",
    ),
    pytest.param('[search_flights(from=to, to="SFO")]', [], "bare name 'to'", id="bare-name"),
    pytest.param('[search_flights(from, to="SFO")]', [], "invalid call syntax", id="no-value"),
    pytest.param("[search_flights(from == 1)]", [], "invalid call syntax", id="comparison"),
    pytest.param(
        '[search_flights(from=g(class=1), to="SFO")]',
        [],
        "invalid call syntax",
        id="reserved-word-in-a-nested-call",
    ),
    pytest.param(
        '[search_flights(from=lambda x, class=1: x, to="SFO")]',
        [],
        "the reserved word 'class' is not an argument name",
        id="reserved-word-as-a-lambda-parameter",
    ),
]


def _stream(text: str, tools: list[FunctionSpec]) -> tuple[ParsedOutput, list[CallDelta], int]:
    """Feed ``text`` one character at a time; also count the pieces sent before the final parse."""
    stream = CallStream(tools, ToolChoice())
    pieces: list[CallDelta] = []
    for char in text:
        pieces += stream.feed(char)
    early = len(pieces)
    final, last = stream.finish(parse_tool_calls(text, tools))
    return final, pieces + last, early


def _streamed_arguments(pieces: list[CallDelta]) -> dict[str, str]:
    arguments: dict[str, str] = {}
    for piece in pieces:
        arguments[piece.id] = arguments.get(piece.id, "") + piece.arguments
    return arguments


@pytest.mark.parametrize(("text", "calls", "error"), CASES)
def test_parse_and_stream(
    tools: list[FunctionSpec], text: str, calls: list[tuple[str, Any]], error: str
) -> None:
    for out in (parse_tool_calls(text, tools), _stream(text, tools)[0]):
        assert [(call.name, call.arguments) for call in out.calls] == calls
        assert [error in bad.error for bad in out.invalid] == ([True] if error else [])
        assert not any("_reserved" in bad.error for bad in out.invalid)  # no internal spelling
        assert out.content == ""


@pytest.mark.parametrize(("text", "calls", "error"), [case for case in CASES if not case.values[2]])
def test_streamed_pieces_sum_to_each_call(
    tools: list[FunctionSpec], text: str, calls: list[tuple[str, Any]], error: str
) -> None:
    final, pieces, _ = _stream(text, tools)
    streamed = _streamed_arguments(pieces)
    assert [streamed[call.id] for call in final.calls] == [
        json.dumps(arguments) for _, arguments in calls
    ]


def test_reserved_word_arguments_stream_as_they_are_written(tools: list[FunctionSpec]) -> None:
    final, pieces, early = _stream(FLIGHT_CALL, tools)
    written = [piece.arguments for piece in pieces[:early] if piece.arguments]
    assert "".join(written) == '{"from": "NYC", "to": "SFO", "class": "economy"}'
    assert len(written) > 3  # piece by piece, not whole at the end
    assert pieces[0].name == "search_flights" and final.calls[0].id == pieces[0].id


@pytest.mark.parametrize(
    "text",
    [
        '[f(_reserved_0="a", _reserved__0="b", from="c")]',
        '[f(from="_reserved_0", _reserved_="_reserved__")]',
    ],
    ids=["names", "values"],
)
def test_names_that_look_like_internal_spellings_are_kept(text: str) -> None:
    (call,) = parse_tool_calls(text).calls
    assert format_tool_calls([call]) == text


def test_comments_hiding_quotes_do_not_change_string_values() -> None:
    text = "[f(# '\n q='x, from=1', # '\n b=2)]"  # Python reads q="x, from=1"
    assert parse_tool_calls(text).calls[0].arguments == {"q": "x, from=1", "b": 2}


_KEYS = st.sampled_from(kwlist) | st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-999, 999) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, min_size=1, max_size=5))
def test_formatted_calls_parse_and_stream_back(arguments: dict[str, Any]) -> None:
    tool = FunctionSpec("f", "", {"type": "object", "properties": dict.fromkeys(arguments, {})})
    text = format_tool_calls([("f", arguments)])
    for out in (parse_tool_calls(text, [tool]), _stream(text, [tool])[0]):
        assert json.dumps(out.calls[0].arguments) == json.dumps(arguments), text
    final, pieces, _ = _stream(text, [tool])
    assert _streamed_arguments(pieces)[final.calls[0].id] == json.dumps(arguments)


def test_a_past_call_replays_in_the_models_own_spelling(tools: list[FunctionSpec]) -> None:
    (call,) = parse_tool_calls(FLIGHT_CALL, tools).calls
    conversation = [
        Message("user", "Flights from New York to San Francisco?"),
        Message("assistant", tool_calls=(call,)),
        Message("tool", '{"flights": 3}', tool_call_id=call.id),
    ]
    rendered = render_messages(conversation, tools)
    assert {"role": "assistant", "content": FLIGHT_CALL} in rendered


def test_every_honest_end_of_a_prefix_is_a_valid_call_of_the_models_values(
    tools: list[FunctionSpec],
) -> None:
    """The budget closer reads reserved names: where it may end the call, what it keeps parses."""
    closer = Closer(tools, ToolChoice("named", name="search_flights"))
    text = '[search_flights(from="NYC", to="SFO", class="economy", return=True)]'
    written = {"from": "NYC", "to": "SFO", "class": "economy", "return": True}
    ends = 0
    for position in range(len(text) + 1):
        ending = closer.ending()
        if ending is not None:
            at, closing = ending
            out = parse_tool_calls(text[:at] + closing, tools)
            assert not out.invalid and not out.content, (text[:position], ending)
            [call] = out.calls
            assert call.name == "search_flights"
            assert call.arguments == {k: written[k] for k in call.arguments}  # the model's own
            ends += 1
        closer.feed(text[position : position + 1])
    assert closer.ending() == (len(text), "")
    assert ends >= 4  # after each complete value once the required ones are written
