"""Call lists inside Llama's call tokens, spelled as text: parsed, streamed, never shown as text.

Llama-3.2 may write ``<|python_tag|>`` before its calls and Llama-4
``<|python_start|>...<|python_end|>`` around them (each profile's ``call_wrappers``). A backend
that hands back special tokens as text (a server asked not to skip them) gives these strings;
the parser and the streaming parser must read the calls inside and hold the wrapper back.
"""

from __future__ import annotations

import json

import pytest

from toolace_integrations.format.incremental import CallDelta, CallStream
from toolace_integrations.format.parsing import looks_like_call_start, parse_tool_calls
from toolace_integrations.format.profiles import LLAMA_3_2, LLAMA_4
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

SEARCH = FunctionSpec(
    "search_flights",
    "Find flights.",
    {
        "type": "object",
        "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        "required": ["from", "to"],
    },
)
WEATHER = FunctionSpec(
    "get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}}
)
TOOLS = [SEARCH, WEATHER]
BODY = '[search_flights(from="NYC", to="SFO"), get_weather(city="Rome")]'
EXPECTED = [("search_flights", {"from": "NYC", "to": "SFO"}), ("get_weather", {"city": "Rome"})]
[(START, END)] = LLAMA_4.call_wrappers
[(TAG, _)] = LLAMA_3_2.call_wrappers

WRAPPED = [
    pytest.param(f"{START}{BODY}{END}", "", id="llama4-start-end"),
    pytest.param(f"\n {START} {BODY} {END}\n", "", id="llama4-with-spaces"),
    pytest.param(f"{START}{BODY}{END} Booked.", "Booked.", id="llama4-then-text"),
    pytest.param(f"{TAG}{BODY}", "", id="llama3.2-python-tag"),
    pytest.param(f"{TAG} {BODY}", "", id="llama3.2-python-tag-space"),
]


def _stream(text: str, size: int) -> tuple[CallStream, list[CallDelta], list[bool]]:
    """Feed ``text`` in pieces of ``size`` characters; what streamed and what was held back."""
    stream = CallStream(TOOLS, ToolChoice())
    pieces: list[CallDelta] = []
    held: list[bool] = []
    for at in range(0, len(text), size):
        pieces += stream.feed(text[at : at + size])
        held.append(stream.may_be_call)
    return stream, pieces, held


@pytest.mark.parametrize(("text", "content"), WRAPPED)
def test_the_parser_reads_the_calls_inside_the_wrapper(text: str, content: str) -> None:
    parsed = parse_tool_calls(text, TOOLS)
    assert [(call.name, call.arguments) for call in parsed.calls] == EXPECTED
    assert not parsed.invalid and parsed.content == content


@pytest.mark.parametrize("size", [1, 3, 1000], ids=["by-char", "by-3", "whole"])
@pytest.mark.parametrize(("text", "content"), WRAPPED)
def test_wrapped_calls_stream_as_they_are_written(text: str, content: str, size: int) -> None:
    stream, pieces, held = _stream(text, size)
    assert stream.mode == "calls"
    body_end = text.index("]") + 1
    assert all(held[: -(-body_end // size)]), "the wrapper and calls are never shown as text"
    final, last = stream.finish(parse_tool_calls(text, TOOLS))
    assert [(call.name, call.arguments) for call in final.calls] == EXPECTED
    assert final.content == content
    streamed: dict[str, str] = {}
    names = {}
    for piece in pieces + last:
        streamed[piece.id] = streamed.get(piece.id, "") + piece.arguments
        names.setdefault(piece.id, piece.name)
    for call in final.calls:
        assert names[call.id] == call.name and streamed[call.id] == json.dumps(call.arguments)
    if size == 1:  # each call's name went out before the list was complete
        assert [p.name for p in pieces if p.name] == ["search_flights", "get_weather"]


@pytest.mark.parametrize("opening", [START, TAG])
def test_every_prefix_of_a_wrapper_is_held_back(opening: str) -> None:
    for end in range(1, len(opening) + 1):
        assert looks_like_call_start(opening[:end])
        stream = CallStream(TOOLS, ToolChoice())
        stream.feed(opening[:end])
        assert stream.may_be_call and stream.mode == "undecided", opening[:end]


@pytest.mark.parametrize(
    "text",
    ["<|python_stop|>[get_weather()]", "<b>bold</b>", "<|python"],
    ids=["other-token", "html", "cut-wrapper"],
)
def test_text_that_only_starts_like_a_wrapper_is_text(text: str) -> None:
    stream = CallStream(TOOLS, ToolChoice())
    stream.feed(text + " and more")
    final, last = stream.finish(parse_tool_calls(text + " and more", TOOLS))
    assert stream.mode == "text" and not stream.may_be_call and not last
    assert not final.calls and final.content == text + " and more"


def test_a_cut_wrapped_call_is_invalid_not_text() -> None:
    text = f"{START}[search_flights(from="
    stream, pieces, held = _stream(text, 1)
    assert all(held) and [p.name for p in pieces if p.name] == ["search_flights"]
    final, last = stream.finish(parse_tool_calls(text, TOOLS, truncated=True))
    assert not final.calls and final.content == ""
    [invalid] = final.invalid
    assert "truncated" in invalid.error and last[-1].error == invalid.error
