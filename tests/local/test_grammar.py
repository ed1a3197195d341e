"""Tests of the tool-call grammar: its text, its compilation, and constrained generation."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from toolace_integrations.errors import GrammarUnavailableError, ToolChoiceError, ToolSpecError
from toolace_integrations.format.parsing import ParsedOutput, format_tool_calls, parse_tool_calls
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools
from toolace_integrations.local.grammar import GrammarConstraint, tool_call_grammar
from toolace_integrations.testing import llama3_tokenizer

torch = pytest.importorskip("torch")
xgrammar = pytest.importorskip("xgrammar")
transformers = pytest.importorskip("transformers")


def _fn(name: str, properties: dict[str, Any], required: list[str], kind: str = "object") -> dict:
    schema = {"type": kind, "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


class Address(BaseModel):
    street: str
    zip_code: int | None = None


class Person(BaseModel):
    name: str
    role: Literal["admin", "user"] = "user"
    addresses: list[Address] = Field(default_factory=list, max_length=2)
    manager: Person | None = None


_PERSON = Person.model_json_schema()

TOOL_SETS: dict[str, list[dict[str, Any]]] = {
    "weather_enum_optional": [
        _fn(
            "get_weather",
            {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1},
                "hourly": {"type": "boolean"},
            },
            ["city"],
        ),
        _fn("get_time", {"timezone": {"type": "string"}}, []),
    ],
    "nested_dict_arrays": [
        _fn(
            "Market Trends API",
            {
                "filters": {
                    "type": "dict",
                    "properties": {
                        "countries": {"type": "array", "items": {"type": "string"}},
                        "window": {"type": "object", "properties": {"days": {"type": "integer"}}},
                    },
                    "required": ["countries"],
                },
                "top": {"type": "integer", "minimum": 0},
            },
            ["filters"],
            kind="dict",
        )
    ],
    "numbers_dotted_names": [
        _fn(
            "finance.npv",
            {
                "rate": {"type": "number"},
                "cash_flows": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 1,
                    "maxItems": 3,
                },
            },
            ["rate", "cash_flows"],
        ),
        _fn("math.round-off value", {"x": {"type": "number", "minimum": 0}}, ["x"]),
    ],
    "any_of_nullable_const": [
        _fn(
            "set_mode",
            {
                "level": {"anyOf": [{"type": "integer"}, {"enum": ["auto", None, 1.5, [1, "a"]]}]},
                "label": {"type": ["string", "null"]},
                "version": {"const": 2},
                "flag": {"oneOf": [{"type": "boolean"}, {"type": "null"}]},
            },
            ["level", "version"],
        )
    ],
    "pydantic_refs": [
        {
            "type": "function",
            "function": {
                "name": "create_person",
                "parameters": {
                    "type": "object",
                    "$defs": _PERSON["$defs"],
                    "properties": {"person": {"$ref": "#/$defs/Person"}},
                    "required": ["person"],
                },
            },
        }
    ],
    "untyped_and_no_args": [
        _fn(
            "store",
            {
                "value": {"description": "anything"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            ["value"],
        ),
        _fn("ping", {}, []),
    ],
    "reserved_word_names": [
        _fn(
            "search_flights",
            {
                "from": {"type": "string"},
                "to": {"type": "string"},
                "class": {"type": "string", "enum": ["economy", "business"]},
            },
            ["from", "to", "class"],
        ),
        _fn("api.class.get", {"lambda": {"type": "boolean"}, "True": {"type": "integer"}}, []),
    ],
}
TOOLS = {key: normalize_tools(value) for key, value in TOOL_SETS.items()}
FLIGHT_CALL = '[search_flights(from="NYC", to="SFO", class="economy")]'
SEEDS = tuple(range(8))


def _json_schema(node: Any) -> Any:
    """ToolACE's ``"type": "dict"`` spelled as JSON schema's ``object``."""
    if isinstance(node, Mapping):
        return {
            k: "object" if (k, v) == ("type", "dict") else _json_schema(v) for k, v in node.items()
        }
    return [_json_schema(item) for item in node] if isinstance(node, list) else node


# --- grammar text -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(TOOLS))
def test_grammar_text_is_deterministic(key: str) -> None:
    choice = ToolChoice("required")
    first = tool_call_grammar(TOOLS[key], choice)
    rebuilt = normalize_tools(TOOL_SETS[key])
    assert tool_call_grammar(rebuilt, choice) == first
    assert first.startswith("root ::= calls\n")
    for tool in TOOLS[key]:
        assert f'"{tool.name}("' in first


def test_grammar_shapes() -> None:
    tools = TOOLS["weather_enum_optional"]
    auto = tool_call_grammar(tools, ToolChoice("auto"))
    assert auto.startswith("root ::= calls | text\n")
    assert tool_call_grammar(tools, ToolChoice("none")).startswith("root ::= text\n")
    assert 'calls ::= "[" call "]"' in tool_call_grammar(tools, ToolChoice(parallel=False))
    named = tool_call_grammar(tools, ToolChoice("named", name="get_time"))
    assert '"get_time("' in named and "get_weather" not in named
    assert tool_call_grammar([], ToolChoice("auto")).startswith("root ::= text\n")
    with pytest.raises(ToolChoiceError):
        tool_call_grammar(tools, ToolChoice("named", name="nope"))
    with pytest.raises(ToolChoiceError):
        tool_call_grammar([], ToolChoice("required"))


ACCEPTED = {
    "reserved_word_names": [
        FLIGHT_CALL,
        '[api.class.get(lambda=True, True=3), search_flights(from="", to="A", class="business")]',
        "[api.class.get()]",
    ],
    "weather_enum_optional": [
        '[get_weather(city="Paris")]',
        '[get_weather(city="P\\"\\u00e9 x", unit="celsius", hourly=False), get_time()]',
        '[get_time(timezone="UTC"), get_weather(city="", days=3)]',
    ],
    "nested_dict_arrays": [
        '[Market Trends API(filters={"countries": []}, top=0)]',
        '[Market Trends API(filters={"countries": ["us"], "window": {"days": -10}})]',
    ],
    "numbers_dotted_names": [
        "[finance.npv(rate=-0.5e-3, cash_flows=[-1000, 3.25, 0])]",
        "[math.round-off value(x=0.5)]",
    ],
    "any_of_nullable_const": [
        "[set_mode(level=None, version=2)]",
        '[set_mode(level=[1, "a"], label=None, version=2, flag=True)]',
    ],
    "pydantic_refs": [
        '[create_person(person={"name": "A", "manager": {"name": "B", "manager": None}})]',
        '[create_person(person={"name": "A", "addresses": [{"street": "x", "zip_code": 7}]})]',
    ],
    "untyped_and_no_args": [
        '[store(value={"a": [1, {"b": None}]}, counts={"x": 1}), ping()]',
        "[store(value=-2.5)]",
    ],
}
REJECTED = {
    "reserved_word_names": [
        '[search_flights(to="SFO", from="NYC", class="economy")]',  # out of schema order
        '[search_flights(from="NYC", to="SFO")]',  # required "class" missing
        '[search_flights(from_="NYC", to="SFO", class="economy")]',  # renamed argument
        "[api.class.get(true=3)]",  # argument names are case-sensitive
    ],
    "weather_enum_optional": [
        "[get_weather()]",  # required argument missing
        '[get_weather(unit="celsius", city="Paris")]',  # out of schema order
        '[get_weather(city="Paris", unit="kelvin")]',  # not in the enum
        '[get_weather(city="Paris", days=0)]',  # minimum 1
        '[get_weather(city="Paris", days=01)]',  # leading zero
        '[get_weather(city="Paris", hourly=true)]',  # JSON, not Python
        '[get_weather(city="a\x00b")]',  # control character
        '[get_weather(city="Paris", city="Rome")]',  # duplicate keyword
        '[get_time(zone="UTC")]',  # unknown keyword
        '[get_date(timezone="UTC")]',  # unbound tool
        " [get_time()]",  # leading whitespace
        "[get_time()] trailing",
    ],
    "numbers_dotted_names": [
        "[finance.npv(rate=1, cash_flows=[])]",  # minItems 1
        "[finance.npv(rate=1, cash_flows=[1, 2, 3, 4])]",  # maxItems 3
        "[math.round-off value(x=-1)]",  # minimum 0
    ],
    "any_of_nullable_const": ["[set_mode(level=1, version=3)]"],
}


@pytest.mark.parametrize(
    ("key", "text", "ok"),
    [(k, t, True) for k, ts in ACCEPTED.items() for t in ts]
    + [(k, t, False) for k, ts in REJECTED.items() for t in ts],
)
def test_grammar_accepts_exactly_schema_valid_calls(key: str, text: str, ok: bool) -> None:
    grammar = tool_call_grammar(TOOLS[key], ToolChoice("required"))
    assert xgrammar.testing._is_grammar_accept_string(grammar, text) is ok
    if ok:  # what the grammar accepts the parser takes, and it is schema-valid
        parsed = parse_tool_calls(text, TOOLS[key])
        assert parsed.calls and not parsed.invalid, parsed.invalid


@pytest.mark.parametrize(
    ("mode", "text", "ok"),
    [
        ("auto", "Hello there.", True),
        ("auto", "Hello [get_time()]", True),
        ("auto", "[get_time()]", True),
        ("auto", " Hello", False),
        ("auto", "```python\n[get_time()]\n```", False),
        ("auto", "`code` is fine", True),
        ("auto", "", False),
        ("none", "[get_time()]", False),
        ("none", "\nHello", False),
    ],
)
def test_text_branch(mode: Literal["auto", "none"], text: str, ok: bool) -> None:
    grammar = tool_call_grammar(TOOLS["weather_enum_optional"], ToolChoice(mode))
    assert xgrammar.testing._is_grammar_accept_string(grammar, text) is ok


FORMATTED_TOOL = normalize_tools(
    [
        _fn(
            "demo.all-types x",
            {
                "s": {"type": "string"},
                "i": {"type": "integer"},
                "n": {"type": "number"},
                "b": {"type": "boolean"},
                "o": {"type": ["string", "null"]},
                "arr": {"type": "array", "items": {"type": "number"}},
                "obj": {"type": "object", "properties": {"k": {"type": "integer"}}},
                "free": {},
            },
            ["s", "i", "n", "b", "o", "arr", "obj", "free"],
        )
    ]
)
_FORMATTED_GRAMMAR = xgrammar.Grammar.from_ebnf(tool_call_grammar(FORMATTED_TOOL, ToolChoice()))
_texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_floats = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda x: x == 0 or 1e-99 < abs(x) < 1e99
)
_ints = st.integers(-(10**19), 10**19)
_json = st.recursive(
    st.none() | st.booleans() | _ints | _floats | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(
    s=_texts,
    i=_ints,
    n=_floats | _ints,
    b=st.booleans(),
    o=st.none() | _texts,
    arr=st.lists(_floats, max_size=3),
    obj=st.fixed_dictionaries({}, optional={"k": _ints}),
    free=_json,
)
def test_grammar_accepts_what_the_formatter_writes(**arguments: Any) -> None:
    text = format_tool_calls([("demo.all-types x", arguments)])
    assert xgrammar.testing._is_grammar_accept_string(_FORMATTED_GRAMMAR, text), text
    assert parse_tool_calls(text, FORMATTED_TOOL).calls[0].arguments == arguments


@pytest.mark.parametrize(
    ("schema", "accepted", "rejected"),
    [
        ({"type": "float"}, ["1.5", "-2"], ["True"]),
        ({"type": "int", "exclusiveMinimum": 0}, ["7"], ["0", "-1", "1.0"]),
        ({"type": "number", "minimum": 0}, ["0.5"], ["-0.5"]),
        # lengths are left to the parser's schema check (see the module's Notes)
        ({"type": "string", "maxLength": 1}, ['"a\\nc"', '"\\u00e9"'], ['"\\ud800"', "'a'"]),
        ({"enum": [{"a": [1, None]}, 2.5, "x"]}, ['{"a": [1, None]}', "2.5", '"x"'], ["1"]),
        ({"const": 'tab\tquote"é'}, ['"tab\\tquote\\"é"'], ['"tab"']),
        ({"type": "object", "additionalProperties": False}, ["{}"], ['{"a": 1}']),
        (
            {"type": "dict", "additionalProperties": {"type": "boolean"}},
            ['{"a": True}'],
            ['{"a": 1}'],
        ),
        ({"type": "array", "minItems": 2, "maxItems": 2}, ['[1, "a"]'], ["[1]", "[1, 2, 3]"]),
        (
            {"allOf": [{"$ref": "#/$defs/A"}, {"properties": {"b": {"type": "integer"}}}]},
            ['{"a": "x", "b": 1}', '{"a": "x"}'],
            ['{"b": 1}'],
        ),
        ({"type": ["integer", "null"]}, ["1", "None"], ['"1"']),
        ({}, ['[{"a": [1]}]', '"s"', "None"], ["[[[[1]]]]"]),  # any literal, depth 3
    ],
)
def test_value_schemas(schema: dict[str, Any], accepted: list[str], rejected: list[str]) -> None:
    defs = {"A": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}
    parameters = {"type": "object", "$defs": defs, "properties": {"v": schema}, "required": ["v"]}
    grammar = tool_call_grammar([FunctionSpec("f", "", parameters)], ToolChoice("required"))
    for value in accepted + rejected:
        ok = xgrammar.testing._is_grammar_accept_string(grammar, f"[f(v={value})]")
        assert ok is (value in accepted), value


def test_enum_without_python_literal_is_a_spec_error() -> None:
    tool = FunctionSpec("f", "", {"properties": {"x": {"enum": [float("nan")]}}})
    with pytest.raises(ToolSpecError):
        tool_call_grammar([tool], ToolChoice())


# --- compilation ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_path: str) -> Iterator[tuple[Any, Any, GrammarConstraint]]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    stop = model.generation_config.eos_token_id
    constraint = GrammarConstraint(tokenizer, model.config.vocab_size, stop)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 64-wide model gains nothing from threads, which thrash under load
    yield tokenizer, model, constraint
    torch.set_num_threads(threads)


@pytest.mark.parametrize("key", sorted(TOOLS))
def test_every_grammar_compiles(tiny: tuple[Any, Any, GrammarConstraint], key: str) -> None:
    constraint = tiny[2]
    tools = TOOLS[key]
    choices = [
        ToolChoice(m, parallel=p) for m in ("auto", "none", "required") for p in (True, False)
    ]
    choices += [ToolChoice("named", name=tool.name) for tool in tools]
    for choice in choices:
        assert constraint.compile(tool_call_grammar(tools, choice)) is not None


@pytest.mark.parametrize("vocabulary", ["tiny", "llama3"])
def test_reserved_word_arguments_pass_the_grammar_token_by_token(
    tiny: tuple[Any, Any, GrammarConstraint], vocabulary: str
) -> None:
    # The real vocabulary writes the call as "(from", '="', '",', " class" ... tokens.
    tokenizer = tiny[0] if vocabulary == "tiny" else llama3_tokenizer()
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    constraint = GrammarConstraint(tokenizer, len(tokenizer), [eot])
    tools = TOOLS["reserved_word_names"]
    for choice in (ToolChoice("named", name="search_flights"), ToolChoice("auto")):
        matcher = xgrammar.GrammarMatcher(constraint.compile(tool_call_grammar(tools, choice)))
        tokens = tokenizer.encode(FLIGHT_CALL, add_special_tokens=False) + [eot]
        assert all(matcher.accept_token(token) for token in tokens) and matcher.is_terminated()
    assert parse_tool_calls(FLIGHT_CALL, tools).calls[0].arguments == {
        "from": "NYC",
        "to": "SFO",
        "class": "economy",
    }


def test_compile_cache_is_bounded_lru(tiny: tuple[Any, Any, GrammarConstraint]) -> None:
    tokenizer, model, _ = tiny
    constraint = GrammarConstraint(tokenizer, model.config.vocab_size, [0], cache_size=2)
    grammars = [f'root ::= "{word}"' for word in ("a", "b", "c")]
    first = constraint.compile(grammars[0])
    assert constraint.compile(grammars[0]) is first
    constraint.compile(grammars[1])
    constraint.compile(grammars[0])  # refresh "a": "b" is now the oldest
    constraint.compile(grammars[2])
    assert constraint.compile(grammars[0]) is first
    assert len(constraint._cache) == 2 and grammars[1] not in constraint._cache
    constraint.clear_cache()
    assert constraint.compile(grammars[0]) is not first


def test_compile_is_thread_safe(tiny: tuple[Any, Any, GrammarConstraint]) -> None:
    constraint = tiny[2]
    grammar = tool_call_grammar(TOOLS["pydantic_refs"], ToolChoice("auto", parallel=False))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(constraint.compile, [grammar] * 16))
    assert all(result is results[0] for result in results)


def test_missing_xgrammar_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xgrammar", None)
    with pytest.raises(GrammarUnavailableError, match=r"pip install"):
        GrammarConstraint(object(), 10, [0])


# --- constrained generation on a random-weight model --------------------------------------------


@dataclass(frozen=True)
class Row:
    choice: ToolChoice
    text: str
    finished: bool
    special: bool  # a special token other than the stop token was generated


class _Nudge(transformers.LogitsProcessor):
    """Bias a random-weight model; it only reorders what the grammar allows, never unmasks.

    ``bracket_rows`` start with ``[`` where allowed (so ``auto`` is seen choosing calls); closing
    quotes and brackets get a small boost so random strings and lists end within the budget.
    """

    def __init__(self, tokenizer: Any, bracket_rows: list[int], closing: float) -> None:
        vocab = tokenizer.get_vocab()
        self.open = [index for token, index in vocab.items() if token.startswith("[")]
        self.close = [index for token, index in vocab.items() if token[:1] in ('"', "]", "}")]
        self.rows, self.closing, self.first = bracket_rows, closing, True

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, self.close] += self.closing
        if self.first:
            self.first = False
            for row in self.rows:
                scores[row, self.open] += 20.0
        return scores


_PROMPT = "Here is a list of functions in JSON format that you can invoke. What is the weather?"


def _generate(
    tiny: tuple[Any, Any, GrammarConstraint],
    tools: list[FunctionSpec],
    choices: list[ToolChoice],
    seed: int,
    max_new_tokens: int,
    bracket_rows: list[int] | None = None,
    closing: float = 0.0,
) -> list[Row]:
    tokenizer, model, constraint = tiny
    prompt = torch.tensor([tokenizer.encode(_PROMPT)] * len(choices))
    if len(choices) == 1:
        processor = constraint.logits_processor(tools, choices[0])
    else:
        processor = constraint.batch_logits_processor([(tools, c) for c in choices])
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            logits_processor=[processor, _Nudge(tokenizer, bracket_rows or [], closing)],
            do_sample=True,
            max_new_tokens=max_new_tokens,
        )
    stop = set(model.generation_config.eos_token_id)
    special = set(tokenizer.all_special_ids) | {
        i for i, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    rows = []
    for choice, ids in zip(choices, out[:, prompt.shape[1] :].tolist(), strict=True):
        end = next((i for i, token in enumerate(ids) if token in stop), None)
        text = tokenizer.decode(ids[:end], skip_special_tokens=False)
        rows.append(Row(choice, text, end is not None, bool(special & set(ids[:end]))))
    assert not any(row.special for row in rows), [row.text for row in rows if row.special]
    return rows


def _check_calls(rows: list[Row], tools: list[FunctionSpec]) -> None:
    by_name = {tool.name: tool for tool in tools}
    for row in rows:
        parsed: ParsedOutput = parse_tool_calls(row.text, tools)
        assert not parsed.invalid, (row.text, parsed.invalid)
        assert parsed.calls and parsed.content == "", row.text
        if not row.choice.parallel:
            assert len(parsed.calls) == 1, row.text
        for call in parsed.calls:
            assert call.name in by_name
            if row.choice.mode == "named":
                assert call.name == row.choice.name
            schema = _json_schema(dict(by_name[call.name].parameters))
            jsonschema.Draft202012Validator(schema).validate(call.arguments)


@pytest.mark.parametrize("key", sorted(TOOLS))
def test_forced_generation_always_parses(
    tiny: tuple[Any, Any, GrammarConstraint], key: str
) -> None:
    tools = TOOLS[key]
    first, last = tools[0].name, tools[-1].name
    choices = [
        ToolChoice("required"),
        ToolChoice("required", parallel=False),
        ToolChoice("named", name=first),
        ToolChoice("named", name=last, parallel=False),
    ] * 2
    rows = [row for seed in SEEDS for row in _generate(tiny, tools, choices, seed, 200, None, 2.0)]
    finished = [row for row in rows if row.finished]
    single = [row for row in rows if not row.choice.parallel]
    print(f"{key}: {len(finished)}/{len(rows)} finished")
    # Unfinished rows are mostly parallel lists a random model keeps extending.
    assert len(finished) >= 0.7 * len(rows), [row.text for row in rows if not row.finished]
    assert sum(row.finished for row in single) >= 0.9 * len(single)
    _check_calls(finished, tools)
    # Unfinished rows are truncated calls: the grammar never lets a call go off the rails.
    for row in rows:
        assert row.text.startswith("[")


@pytest.mark.parametrize("seed", range(4))
def test_single_row_processor(tiny: tuple[Any, Any, GrammarConstraint], seed: int) -> None:
    tools = TOOLS["weather_enum_optional"]
    (row,) = _generate(tiny, tools, [ToolChoice("required", parallel=False)], seed, 120)
    assert row.finished, row.text
    _check_calls([row], tools)


@pytest.mark.parametrize("key", ["weather_enum_optional", "numbers_dotted_names"])
def test_auto_and_none(tiny: tuple[Any, Any, GrammarConstraint], key: str) -> None:
    tools = TOOLS[key]
    choices = [ToolChoice("auto")] * 4 + [ToolChoice("none")] * 4
    pushed = [0, 1, 4, 5]  # two auto and two none rows are pushed towards "[" at the first step
    rows = [row for seed in SEEDS[:3] for row in _generate(tiny, tools, choices, seed, 200, pushed)]
    calls = [row for row in rows if row.text.startswith("[")]
    assert all(row.choice.mode == "auto" for row in calls)
    assert len(calls) == 2 * 3  # pushed auto rows call; pushed none rows cannot
    _check_calls([row for row in calls if row.finished], tools)
    for row in rows:
        if row in calls:
            continue
        assert row.text and not row.text[0].isspace() and not row.text.startswith("`" * 3)
        assert "\x00" not in row.text
        parsed = parse_tool_calls(row.text, tools, truncated=not row.finished)
        assert not parsed.calls and not parsed.invalid, row.text


# --- the one schema dialect and Unicode names ----------------------------------------------------

BFCL_STYLE = normalize_tools(
    [
        {
            "name": "calcular_impuesto.año",
            "parameters": {
                "type": "dict",
                "properties": {
                    "año_vehiculo": {"type": "int"},
                    "tasa": {"type": "float"},
                    "rango": {"type": "tuple", "items": {"type": "integer"}},
                    "extra": {"type": "any"},
                    "nombre": {"type": "str"},
                    "activo": {"type": "bool"},
                    "opciones": {"type": "dict", "properties": {"k": {"type": "list"}}},
                },
                "required": ["año_vehiculo"],
            },
        }
    ]
)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("[calcular_impuesto.año(año_vehiculo=2019)]", True),
        (
            '[calcular_impuesto.año(año_vehiculo=1, tasa=0.5, rango=[1, 2], extra={"x": [None]})]',
            True,
        ),
        ('[calcular_impuesto.año(año_vehiculo=1, nombre="José", activo=True)]', True),
        ('[calcular_impuesto.año(año_vehiculo=1, opciones={"k": [1, "a"]})]', True),
        ("[calcular_impuesto.año(año_vehiculo=1.5)]", False),  # int
        ('[calcular_impuesto.año(año_vehiculo=1, tasa="x")]', False),  # float
        ('[calcular_impuesto.año(año_vehiculo=1, rango=["a"])]', False),  # tuple of integers
        ("[calcular_impuesto.año(año_vehiculo=1, activo=1)]", False),  # bool
    ],
)
def test_bfcl_type_names_mean_the_same_to_grammar_and_parser(text: str, ok: bool) -> None:
    grammar = tool_call_grammar(BFCL_STYLE, ToolChoice("required"))
    assert xgrammar.testing._is_grammar_accept_string(grammar, text) is ok
    parsed = parse_tool_calls(text, BFCL_STYLE)
    assert bool(parsed.calls) is ok and bool(parsed.invalid) is not ok, parsed
