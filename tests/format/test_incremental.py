"""The incremental call parser agrees with ``parse_tool_calls`` on every prefix of an answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolace_integrations.format.incremental import CallDelta, CallStream
from toolace_integrations.format.parsing import ParsedOutput, format_tool_calls, parse_tool_calls
from toolace_integrations.format.partial_json import breaking_suffix
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

_POINT = {
    "type": "dict",
    "properties": {"x": {"type": "float"}, "y": {"type": "float"}, "tag": {"type": "string"}},
    "required": ["x", "y"],
}
TOOLS = [
    FunctionSpec(
        "get_weather",
        "",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
            },
            "required": ["city"],
        },
    ),
    FunctionSpec(
        "finance.npv",
        "",
        {
            "type": "dict",
            "properties": {
                "rate": {"type": "float"},
                "cash_flows": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
                "point": _POINT,
                "flags": {"type": "array", "items": {"type": "boolean"}},
                "extra": {"type": "any"},
            },
            "required": ["rate", "cash_flows"],
        },
    ),
    FunctionSpec(
        "Market Trends API", "", {"type": "dict", "properties": {"q": {"type": "string"}}}
    ),
    FunctionSpec("ping", "", {"type": "object", "properties": {}}),
]
_SPECS = {tool.name: tool for tool in TOOLS}

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
_float = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-999, 999), _float, _text)
_any = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3), max_leaves=5)


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of ``schema`` as the grammar spells them (a small JSON-schema subset)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return _text
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), 10**6)
    if kind == "float":
        return _float
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_value(schema["items"]), min_size=schema.get("minItems", 0), max_size=4)
    if kind == "dict":
        return _arguments(schema)
    return _any


@st.composite
def _arguments(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    result = {}
    for key, sub in schema.get("properties", {}).items():  # schema order, as the grammar
        if key in required or draw(st.booleans()):
            result[key] = draw(_value(sub))
    return result


@st.composite
def _calls(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    names = draw(st.lists(st.sampled_from(sorted(_SPECS)), min_size=1, max_size=3))
    return [(name, draw(_arguments(dict(_SPECS[name].parameters)))) for name in names]


def _answer(draw: st.DrawFn) -> str:
    """A holdout-style answer: well-formed calls, then maybe cut short or followed by garbage."""
    text = format_tool_calls(draw(_calls()))
    shape = draw(st.sampled_from(["whole", "cut", "garbage", "positional", "prose", "lead"]))
    if shape == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif shape == "garbage":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(alphabet="[](){},=\"'\\ ab1.-", max_size=6)) + text[at:]
    elif shape == "positional":
        text = text.replace("(city=", "(", 1).replace("(rate=", "(", 1)
    elif shape == "prose":
        text = "Sure: " + text
    elif shape == "lead":
        text = "  \n" + text + " done"
    return text


def _follow(text: str, chunks: list[str]) -> tuple[ParsedOutput, dict[str, dict[str, Any]]]:
    stream = CallStream(TOOLS, ToolChoice())
    pieces: list[CallDelta] = []
    for chunk in chunks:
        pieces += stream.feed(chunk)
        if stream.mode == "text":
            assert not stream.may_be_call
    final, last = stream.finish(parse_tool_calls(text, TOOLS))
    seen: dict[str, dict[str, Any]] = {}
    for piece in pieces + last:
        call = seen.setdefault(piece.id, {"index": piece.index, "name": piece.name, "args": ""})
        assert call["index"] == piece.index
        assert piece.name is None or call["name"] == piece.name  # the name comes once, first
        call["args"] += piece.arguments
        call["error"] = piece.error
    if stream.mode == "text":
        assert not final.calls and not final.invalid and final.content == text.strip()
    return final, seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_streamed_calls_never_contradict_the_final_parse(data: st.DataObject) -> None:
    text = _answer(data.draw)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    final, seen = _follow(text, chunks)
    plain = parse_tool_calls(text, TOOLS)
    assert [(c.name, c.arguments) for c in final.calls] == [
        (c.name, c.arguments) for c in plain.calls
    ]
    assert [c.error for c in final.invalid] == [c.error for c in plain.invalid]
    for call in final.calls:  # every valid call streamed (or arrived whole) exactly
        assert seen[call.id]["name"] == call.name
        assert seen[call.id]["args"] == json.dumps(call.arguments)
    invalid = {call.id for call in final.invalid}
    for ident, call in seen.items():
        if ident in invalid:
            assert call["error"]  # a streamed call that failed says so on its last piece
        else:
            assert ident in {c.id for c in final.calls}


def test_every_prefix_of_a_call_list_streams_consistently() -> None:
    text = (
        '[get_weather(city="Pa\\u00e9ris\\n\\"x\\"", unit="celsius"), '
        "finance.npv(rate=-0.5e-3, cash_flows=[1, 2], point={'x': 1.0, 'y': 2, 'tag': 'a'}), "
        "Market Trends API(q='us'), ping()]"
    )
    final, seen = _follow(text, list(text))  # one character at a time
    assert [seen[c.id]["args"] for c in final.calls] == [
        '{"city": "Pa\\u00e9ris\\n\\"x\\"", "unit": "celsius"}',
        '{"rate": -0.0005, "cash_flows": [1, 2], "point": {"x": 1.0, "y": 2, "tag": "a"}}',
        '{"q": "us"}',
        "{}",
    ]
    assert [seen[c.id]["index"] for c in final.calls] == [0, 1, 2, 3]


def test_a_string_value_streams_as_it_is_written() -> None:
    stream = CallStream(TOOLS, ToolChoice())
    first = stream.feed('[get_weather(city="Par')
    assert [(p.name, p.arguments) for p in first] == [
        ("get_weather", ""),
        (None, '{"city": '),
        (None, '"'),
        (None, "Par"),
    ]
    assert [p.arguments for p in stream.feed("is\\")] == ["is"]  # a partial escape waits
    assert [p.arguments for p in stream.feed('n")]')] == ["\\n", '"', "}"]


@pytest.mark.parametrize(
    "prefix", ["", "{", '{"a": "x', '{"a": [1, {"b": "\\\\', '{"a": 1}'], ids=repr
)
def test_breaking_suffix_makes_langchain_read_an_invalid_call(prefix: str) -> None:
    from langchain_core.utils.json import parse_partial_json

    assert not isinstance(parse_partial_json(prefix + breaking_suffix(prefix)), dict)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet="[](){},=\"'\\ abfgetwhrcy_.1-x#\n*", max_size=40),
    st.lists(st.integers(0, 60), max_size=5),
)
def test_hostile_call_text_never_contradicts_the_final_parse(tail: str, cuts: list[int]) -> None:
    text = "[get_weather(city=" + tail  # a call that starts well, then anything
    cuts = sorted(min(cut, len(text)) for cut in cuts)
    final, seen = _follow(
        text, [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    )
    valid = {call.id: call for call in final.calls}
    invalid = {call.id for call in final.invalid}
    for ident, call in seen.items():
        if ident in valid:
            assert call["args"] == json.dumps(valid[ident].arguments)
        else:
            assert ident in invalid and call["error"]
