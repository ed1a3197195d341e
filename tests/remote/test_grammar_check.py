"""The remote client's grammar check reads the tool-call grammar as xgrammar does.

The check decides whether a server's answer could have come out of the grammar the client sent
(if not, the server ignored it). Here xgrammar itself -- the grammar compiled on the tiny model's
toy tokenizer, the answer's tokens accepted one by one, as vLLM's decoder does -- judges random
answers over random tools and tool choices, and the check must agree with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _servers import Stub, good_stream, sse
from hypothesis import given, settings
from hypothesis import strategies as st

from toolace_integrations.core.chat import build_request, run_chat
from toolace_integrations.core.generation import GenerationRequest
from toolace_integrations.format.grammar_text import LEADING_SPACE, tool_call_grammar
from toolace_integrations.format.parsing import format_tool_calls, parse_tool_calls
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools
from toolace_integrations.remote import RemoteBackend
from toolace_integrations.remote.answer import grammar_violation

xgrammar = pytest.importorskip("xgrammar")
transformers = pytest.importorskip("transformers")

from toolace_integrations.local.grammar import GrammarConstraint  # noqa: E402

POOL = normalize_tools(
    [
        {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        {
            "name": "set_unit",
            "parameters": {
                "type": "object",
                "properties": {"unit": {"enum": ["c", "f"]}},
                "required": ["unit"],
            },
        },
        {
            "name": "book.room",
            "parameters": {
                "type": "object",
                "properties": {
                    "guest": {"type": "string"},
                    "age": {"type": "integer", "minimum": 18},
                    "nights": {"type": "integer", "minimum": 1, "maximum": 30},
                    "code": {"type": "string", "minLength": 2, "pattern": "^[A-Z]+$"},
                },
                "required": ["guest", "age"],
            },
        },
    ]
)
MESSAGES = ({"role": "user", "content": "Hi"},)
CATEGORIES = ("Zs", "Zl", "Zp", "Cc", "Cf")


@pytest.fixture(scope="module")
def toy(tiny_model_path: str) -> Iterator[tuple[Any, GrammarConstraint, int]]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_path)
    config = transformers.AutoConfig.from_pretrained(tiny_model_path)
    stop = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    yield tokenizer, GrammarConstraint(tokenizer, config.vocab_size, [stop]), stop


def xgrammar_accepts(
    toy: tuple[Any, GrammarConstraint, int], grammar: str, text: str, *, complete: bool
) -> bool:
    """xgrammar's verdict, token by token on the toy tokenizer; ``complete`` adds the stop token."""
    tokenizer, constraint, stop = toy
    tokens = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    matcher = xgrammar.GrammarMatcher(constraint.compile(grammar))
    if not all(matcher.accept_token(token) for token in tokens):
        return False
    return not complete or (matcher.accept_token(stop) and matcher.is_terminated())


def request_for(tools: list[FunctionSpec], choice: ToolChoice) -> GenerationRequest:
    return GenerationRequest(MESSAGES, tools=tuple(tools), tool_choice=choice, constrained=True)


NAMES = ["get_time", "set_unit", "book.room", "Market Trends API", "get-weather", "f"]
PROPERTY_SCHEMAS = st.one_of(
    st.sampled_from([{"type": "string"}, {"type": "boolean"}, {"type": "number"}]),
    st.builds(
        lambda low: {"type": "integer", **({} if low is None else {"minimum": low})},
        st.sampled_from([None, 0, 1, 18]),
    ),  # fmt: skip
    st.builds(
        lambda values: {"enum": values},
        st.lists(st.sampled_from(["c", "f", "k"]), min_size=1, max_size=3, unique=True),
    ),
    st.just({"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[A-Z]+$"}),
)


@st.composite
def random_tool(draw: st.DrawFn, name: str) -> FunctionSpec:
    """A tool named ``name`` with up to three random properties, some of them required."""
    keys = draw(st.lists(st.sampled_from(["a", "b", "city", "n"]), max_size=3, unique=True))
    properties = {key: draw(PROPERTY_SCHEMAS) for key in keys}
    required = [key for key in keys if draw(st.booleans())]
    schema = {"type": "object", "properties": properties, "required": required}
    return normalize_tools([{"name": name, "parameters": schema}])[0]


@st.composite
def tools_and_choice(draw: st.DrawFn) -> tuple[list[FunctionSpec], ToolChoice]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    tools = [draw(random_tool(name)) for name in names]
    mode = draw(st.sampled_from(["auto", "none", "required", "named"]))
    name = draw(st.sampled_from(names)) if mode == "named" else None
    return tools, ToolChoice(mode, name, parallel=draw(st.booleans()))


def values_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the grammar allows for ``schema``, those the schema itself refuses included."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "integer":  # the grammar enforces only minimum >= 0 / >= 1 (as 0.. or 1..)
        low = schema.get("minimum")
        return st.integers(-50 if low is None else min(low, 1), 60)
    if kind == "number":
        return st.integers(-(10**6), 10**6).map(lambda cents: cents / 100)
    if kind == "boolean":
        return st.booleans()
    return st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=4)


SPACE_OR_CONTROL = st.characters(categories=CATEGORIES)
FIRSTS = st.one_of(
    SPACE_OR_CONTROL,
    st.sampled_from(
        sorted(LEADING_SPACE)
        + ["[", "`", "``", "```", "```python\n", "<", "<|", "<|python_tag|>", "<|python_start|>"]
        + ["<<", "a", "é"]
    ),
    st.characters(exclude_categories=("Cs",)),
)
TAILS = st.one_of(
    st.text(st.one_of(st.sampled_from(list('ab `[]()=,"1\n')), SPACE_OR_CONTROL), max_size=6),
    st.sampled_from(["get_time()]", 'set_unit(unit="c")]', '[set_unit(unit="c")]', "`x`"]),
)


@settings(max_examples=400, deadline=None)
@given(setup=tools_and_choice(), first=FIRSTS, tail=TAILS, truncated=st.booleans())
def test_check_agrees_with_xgrammar_on_any_first_character(
    toy: tuple[Any, GrammarConstraint, int],
    setup: tuple[list[FunctionSpec], ToolChoice],
    first: str,
    tail: str,
    truncated: bool,
) -> None:
    """Whitespace and control characters of every Unicode class, ``[``, fences, backticks.

    On a call list the check looks at its shape only (values are the parser's to judge), so
    there it may only never reject what the grammar accepts.
    """
    tools, choice = setup
    text = first + tail
    grammar = tool_call_grammar(tools, choice)
    accepted = xgrammar_accepts(toy, grammar, text, complete=not truncated)
    why = grammar_violation(text, request_for(tools, choice), truncated=truncated,
                            grammar_sent=True)  # fmt: skip
    if text.startswith("[") and choice.mode != "none":
        assert accepted <= (why is None), (text, why)
    else:
        assert (why is None) == accepted, (text, why)


@settings(max_examples=150, deadline=None)
@given(setup=tools_and_choice(), data=st.data())
def test_every_call_list_the_grammar_accepts_passes_whole_and_cut(
    toy: tuple[Any, GrammarConstraint, int],
    setup: tuple[list[FunctionSpec], ToolChoice],
    data: st.DataObject,
) -> None:
    """Values the grammar lets through but the schema refuses are invalid calls, not a server
    that ignored the grammar (the check used to say so for ``n=5`` under ``minimum: 18``)."""
    tools, choice = setup
    allowed = [t for t in tools if choice.mode != "named" or t.name == choice.name]
    if choice.mode == "none":
        return
    count = data.draw(st.integers(1, 3 if choice.parallel else 1))
    calls = []
    for _ in range(count):
        tool = data.draw(st.sampled_from(allowed))
        required = set(tool.parameters["required"])
        arguments = {
            key: data.draw(values_for(schema))
            for key, schema in tool.properties.items()
            if key in required or data.draw(st.booleans())
        }
        calls.append((tool.name, arguments))
    text = format_tool_calls(calls)
    grammar = tool_call_grammar(tools, choice)
    request = request_for(tools, choice)
    assert xgrammar_accepts(toy, grammar, text, complete=True), text
    assert grammar_violation(text, request, truncated=False, grammar_sent=True) is None, text
    cut = data.draw(st.integers(0, len(text)))
    assert grammar_violation(text[:cut], request, truncated=True, grammar_sent=True) is None


@pytest.mark.parametrize("space", sorted(LEADING_SPACE), ids=lambda c: f"U+{ord(c):04X}")
def test_no_call_hides_behind_leading_whitespace(space: str) -> None:
    """The parsers strip what ``str.isspace`` calls whitespace, so the text branch may not
    start with any of it: ``\\u3000[set_unit(unit="x")]`` would be read as a call the grammar
    never checked."""
    hidden = f'{space}[set_unit(unit="x")]'
    assert parse_tool_calls(hidden, POOL).invalid  # read as a call attempt, not as text
    grammar = tool_call_grammar(POOL, ToolChoice("auto"))
    assert not xgrammar.testing._is_grammar_accept_string(grammar, hidden)
    assert not xgrammar.testing._is_grammar_accept_string(grammar, space, require_termination=False)
    why = grammar_violation(hidden, request_for(POOL, ToolChoice("auto")), truncated=False,
                            grammar_sent=True)  # fmt: skip
    assert why is not None and "forbids" in why


@pytest.mark.parametrize("text", ["Hi\x00", "\ud800", "a\udfffb", "`\x00"])
def test_nul_and_surrogates_are_refused_as_the_grammar_refuses_them(text: str) -> None:
    grammar = tool_call_grammar(POOL, ToolChoice("auto"))
    wire = text.encode("utf-8", "surrogatepass")  # how a decoder would spell a lone surrogate
    for complete in (True, False):
        assert not xgrammar.testing._is_grammar_accept_string(
            grammar, wire, require_termination=complete
        )
        why = grammar_violation(text, request_for(POOL, ToolChoice("auto")),
                                truncated=not complete, grammar_sent=True)  # fmt: skip
        assert why is not None and "NUL or surrogate" in why


def test_leading_space_is_what_the_parsers_strip() -> None:
    assert LEADING_SPACE == {chr(c) for c in range(0x110000) if chr(c).isspace()}


@pytest.mark.parametrize(
    ("answer", "choice", "calls", "invalid"),
    [
        ("`x` is the variable.", ToolChoice("auto"), 0, 0),
        ("``x`` too.", ToolChoice("none"), 0, 0),
        ('[book.room(guest="Ann", age=5)]', ToolChoice("required"), 0, 1),
        ('[book.room(guest="Ann", age=5, code="x")]', ToolChoice("auto"), 0, 1),
        ('[set_unit(unit="c")]', ToolChoice("named", "set_unit"), 1, 0),
    ],
    ids=["backtick-auto", "two-backticks-none", "forced-under-minimum", "auto-pattern", "named"],
)
def test_answers_of_a_server_that_kept_the_grammar_are_read_not_refused(
    tiny_model_path: str, answer: str, choice: ToolChoice, calls: int, invalid: int
) -> None:
    """Recorded answers the grammar allows, through the client: each used to raise
    GrammarNotEnforcedError; values the schema refuses are now invalid calls."""
    server = Stub(lambda handler, body, index: sse(handler, good_stream(answer)))
    request = build_request([Message("user", "Hi")], POOL, tool_choice=choice)
    try:
        with RemoteBackend(server.url, tiny_model_path, context_window=4096) as client:
            turn = run_chat(client, request)
    finally:
        server.close()
    assert (len(turn.parsed.calls), len(turn.parsed.invalid)) == (calls, invalid)
    assert turn.parsed.content == ("" if calls or invalid else answer)
    assert server.bodies[0]["structured_outputs"]["grammar"] == tool_call_grammar(POOL, choice)
