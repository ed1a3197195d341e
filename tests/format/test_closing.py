"""The budget closer ends a forced answer only where nothing is cut or invented.

Random tools (unions with common prefixes, bounds the grammar does not enforce, ``$ref``,
``allOf``, enums, nested lists and dicts) and random calls of them: at every prefix of the call
text where the closer offers a closing, the closing only closes brackets, xgrammar's matcher on
the very grammar the engine and vLLM enforce accepts the result, and the calls it parses to hold
exactly the values the full answer holds (some optional arguments or later calls missing).
"""

from __future__ import annotations

import doctest
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolace_integrations.format.closing import Closer
from toolace_integrations.format.formatting import format_tool_calls
from toolace_integrations.format.grammar_text import tool_call_grammar
from toolace_integrations.format.parsing import parse_tool_calls
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools

xgrammar = pytest.importorskip("xgrammar")
accepts = xgrammar.testing._is_grammar_accept_string

_POINT = {
    "type": "object",
    "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
    "required": ["x"],
}
_TEXT = st.text(alphabet='ab "\\]),[=é\u3000', min_size=2, max_size=6)
_INTS = st.integers(-(10**6), 10**6)
_FLOATS = st.integers(-(10**6), 10**6).map(lambda n: n / 8)  # short, exact reprs

Pair = tuple[dict[str, Any], st.SearchStrategy[Any]]


def _ordered(
    keys: list[str], required: list[str], values: list[st.SearchStrategy[Any]]
) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with every required key and some optional ones, in schema order (as the grammar)."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        return {
            key: draw(value)
            for key, value in zip(keys, values, strict=True)
            if key in required or draw(st.booleans())
        }

    return build()


def _point_values() -> st.SearchStrategy[dict[str, Any]]:
    return _ordered(["x", "y"], ["x"], [_INTS, _INTS])


_LEAVES: list[Pair] = [
    ({"type": "string", "minLength": 2}, _TEXT),
    ({"type": "integer", "minimum": 18}, st.integers(18, 10**6)),
    ({"type": "number"}, _FLOATS),
    ({"type": "boolean"}, st.booleans()),
    ({"type": "null"}, st.none()),
    ({"enum": ["a", "ab", "b c"]}, st.sampled_from(["a", "ab", "b c"])),
    ({"enum": [1, 12, 123]}, st.sampled_from([1, 12, 123])),
    ({"anyOf": [{"type": "integer"}, {"type": "number"}]}, st.one_of(_INTS, _FLOATS)),
    ({"anyOf": [{"type": "string"}, {"enum": ["x", "y"]}]}, _TEXT | st.sampled_from("xy")),
    ({"type": ["integer", "null"]}, st.none() | _INTS),
    ({"$ref": "#/$defs/Point"}, _point_values()),
    ({"allOf": [{"$ref": "#/$defs/Point"}]}, _point_values()),
]


@st.composite
def _value_schema(draw: st.DrawFn, depth: int = 0) -> Pair:
    """A schema and a strategy for values the grammar (and the schema) accept."""
    shape = draw(st.sampled_from(["leaf", "leaf", "array", "object"] if depth < 2 else ["leaf"]))
    if shape == "leaf":
        return draw(st.sampled_from(_LEAVES))
    if shape == "array":
        schema, values = draw(_value_schema(depth + 1))
        low = draw(st.integers(0, 2))
        return (
            {"type": "array", "items": schema, "minItems": low},
            st.lists(values, min_size=low, max_size=3),
        )
    fields = draw(st.lists(_value_schema(depth + 1), min_size=1, max_size=3))
    keys = [f"k{i}" for i in range(len(fields))]
    required = [k for k in keys if draw(st.booleans())]
    schema = {
        "type": "object",
        "properties": {k: s for k, (s, _) in zip(keys, fields, strict=True)},
        "required": required,
    }
    return schema, _ordered(keys, required, [v for _, v in fields])


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[FunctionSpec], ToolChoice, str]:
    tools, makers = [], {}
    for number in range(draw(st.integers(1, 2))):
        fields = draw(st.lists(_value_schema(), min_size=0, max_size=4))
        keys = [f"a{i}" for i in range(len(fields))]
        required = [k for k in keys if draw(st.booleans())]
        name = f"tool_{number}"
        tools.append(
            {
                "name": name,
                "parameters": {
                    "type": "object",
                    "properties": {k: s for k, (s, _) in zip(keys, fields, strict=True)},
                    "required": required,
                    "$defs": {"Point": _POINT},
                },
            }
        )
        makers[name] = _ordered(keys, required, [v for _, v in fields])
    choice = draw(
        st.sampled_from(
            [ToolChoice("required"), ToolChoice("required", parallel=False)]
            + [ToolChoice("named", name=name) for name in makers]
        )
    )
    names = [choice.name] if choice.mode == "named" else list(makers)
    count = draw(st.integers(1, 3 if choice.parallel else 1))
    calls = [(name, draw(makers[name])) for name in draw(st.lists(st.sampled_from(names),
                                                                  min_size=count, max_size=count))]
    return normalize_tools(tools), choice, format_tool_calls(calls)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_case())
def test_every_closing_the_closer_offers_is_honest_and_accepted_by_the_grammar(
    case: tuple[list[FunctionSpec], ToolChoice, str],
) -> None:
    tools, choice, text = case
    grammar = tool_call_grammar(tools, choice)
    assert accepts(grammar, text), text  # the generated answer is one the model could write
    full = parse_tool_calls(text, tools)
    assert full.calls and not full.invalid, text
    closer, endings = Closer(tools, choice), 0
    for position in range(len(text) + 1):
        ending = closer.ending()
        if ending is not None and ending[1]:
            endings += 1
            at, closing = ending
            answer = text[:at] + closing
            assert set(text[at:position]) <= set(", "), answer  # only separators are dropped
            assert set(closing) <= set(")]"), answer  # it closes; it never writes a value
            assert accepts(grammar, answer), answer
            out = parse_tool_calls(answer, tools)
            assert out.calls and not out.invalid and not out.content, answer
            assert len(out.calls) <= len(full.calls)
            for written, model in zip(out.calls, full.calls, strict=False):
                assert written.name == model.name
                assert written.arguments.items() <= model.arguments.items(), answer
        if position < len(text):
            closer.feed(text[position])
    assert closer.ending() == (len(text), "") and closer.done
    assert endings >= len(full.calls)  # at least right after each call


def test_the_closer_ends_only_after_complete_values_with_required_arguments_written() -> None:
    tools = normalize_tools(
        [
            {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "n": {"anyOf": [{"type": "integer"}, {"type": "number"}]},
                        "s": {"type": "string", "minLength": 2},
                        "b": {"type": "boolean"},
                    },
                    "required": ["n"],
                },
            }
        ]
    )
    closer, text = Closer(tools, ToolChoice("named", name="f")), ""
    steps = [
        ("", None),  # no call written: nothing to close honestly
        ("[f(", None),  # n is required
        ("n=1", None),  # 1 may become 12 or 1.5
        ("2", None),
        (",", "[f(n=12)]"),  # now 12 is complete
        (" s=", None),
        ('"a', None),  # a string cut mid-way is not the model's value
        ('b"', '[f(n=12, s="ab")]'),
        (", ", '[f(n=12, s="ab")]'),
        ("b=Tr", None),
        ("ue", '[f(n=12, s="ab", b=True)]'),
        (")", '[f(n=12, s="ab", b=True)]'),
        ("]", '[f(n=12, s="ab", b=True)]'),
    ]
    for piece, answer in steps:
        closer.feed(piece)
        text += piece
        ending = closer.ending()
        assert (None if ending is None else text[: ending[0]] + ending[1]) == answer, text


def test_a_call_list_ends_after_its_last_complete_call() -> None:
    tools = normalize_tools([{"name": "g", "parameters": {"type": "object", "properties": {}}}])
    closer = Closer(tools, ToolChoice("required"))
    for piece, ending in [("[g(", (3, ")]")), (")", (4, "]")), (", ", (4, "]")), ("g", None)]:
        closer.feed(piece)
        assert closer.ending() == ending, piece


def test_docstring_example() -> None:
    from toolace_integrations.format import closing

    assert doctest.testmod(closing, raise_on_error=True).attempted > 0
