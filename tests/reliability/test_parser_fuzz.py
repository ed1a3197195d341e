"""The parser never raises on model text, never evaluates it, and stays bounded on hostile input."""

from __future__ import annotations

import builtins
import json
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolace_integrations.format.names import is_argument_name
from toolace_integrations.format.parsing import MAX_INPUT_CHARS, ParsedOutput, parse_tool_calls
from toolace_integrations.format.tools import FunctionSpec

TOOLS = [
    FunctionSpec(
        "f",
        "",
        {"type": "dict", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}},
    ),
    FunctionSpec("pkg.g", "", {"type": "object", "properties": {"x": {}}}),
]
SECONDS = 5.0  # a safety bound on one parse of hostile input, not a benchmark


class Canary:
    """Counts calls; a payload that got evaluated would call it."""

    def __init__(self) -> None:
        self.hits = 0

    def hit(self, *args: Any, **kwargs: Any) -> Canary:
        self.hits += 1
        return self

    __call__ = hit


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch) -> Iterator[Canary]:
    bird = Canary()
    module = types.ModuleType("tests_canary")
    module.hit = bird.hit  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_canary", module)
    monkeypatch.setattr(builtins, "toolace_canary", bird, raising=False)
    yield bird
    assert bird.hits == 0, "a payload was evaluated"


def _parse(text: str, **kwargs: Any) -> ParsedOutput:
    started = time.perf_counter()
    out = parse_tool_calls(text, **kwargs)
    assert time.perf_counter() - started < SECONDS
    assert isinstance(out, ParsedOutput)
    return out


def test_canary_would_notice_evaluation(canary: Canary) -> None:
    eval('__import__("tests_canary").hit()')  # proves the canary is wired up
    eval("toolace_canary()")
    assert canary.hits == 2
    canary.hits = 0


PAYLOADS = [
    '__import__("tests_canary").hit()',
    "toolace_canary()",
    "toolace_canary",
    "toolace_canary.hit()",
    "(lambda: toolace_canary())()",
    'f"{toolace_canary()}"',
    "(c := toolace_canary())",
    "[toolace_canary() for _ in [1]]",
    "{k: toolace_canary() for k in 'ab'}",
    "(toolace_canary() for _ in [1])",
    "toolace_canary()[0]",
    "1 if toolace_canary() else 2",
    "[*toolace_canary()]",
    "{**toolace_canary()}",
    "toolace_canary().__class__.__bases__",
    "getattr(toolace_canary, 'hit')()",
    "eval('toolace_canary()')",
    "exec('toolace_canary()')",
    "().__class__.__base__.__subclasses__()",
    "toolace_canary() + 1",
    "-toolace_canary()",
    "[1, toolace_canary()]",
    "{'k': toolace_canary()}",
    "{toolace_canary(): 1}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize(
    "template",
    [
        "[f(a={})]",
        "[f(b=1), f(a={})]",
        "f(a={})",
        "```python\n[f(a={})]\n```",
        "[f({})]",
        "[f(from=1, a={}, class=2)]",
        "[f(a={}, lambda={})]",
    ],
    ids=["list", "second-call", "bare", "fenced", "positional", "reserved-names", "lambda-name"],
)
@pytest.mark.parametrize("tools", [None, TOOLS], ids=["no-tools", "tools"])
def test_payloads_are_never_evaluated(
    canary: Canary, payload: str, template: str, tools: list[FunctionSpec] | None
) -> None:
    out = _parse(template.replace("{}", payload), tools=tools)
    assert all("a" not in call.arguments for call in out.calls)
    if not template.startswith("f("):
        assert len(out.invalid) == 1


@pytest.mark.parametrize(
    "text",
    [
        "[f(*toolace_canary())]",
        "[f(**toolace_canary())]",
        "[f(a=1)(toolace_canary())]",
        "[f(a=1).__class__]",
        "[f(a=1)[toolace_canary()]]",
        "[toolace_canary(a=1) + toolace_canary()]",
        "[f(a=1) or toolace_canary()]",
        "[f(a=1)]; toolace_canary()",
        "[f(a=1)\ntoolace_canary()]",
        "[f(a=1), __import__('os').system('true')]",
        "[f(a='x' * 10**10)]",
        "[f(a=[1] * 10**10)]",
        "[f(from=toolace_canary())]",
        "[f(lambda=lambda: toolace_canary())]",
        "[f(import=__import__('tests_canary').hit())]",
        "[f(a=1, **{'from': toolace_canary()})]",
        "[f(from=1)(class=toolace_canary())]",
    ],
)
def test_call_shaped_payloads_are_never_evaluated(canary: Canary, text: str) -> None:
    out = _parse(text)
    for call in out.calls:
        assert call.name in ("f", "toolace_canary") and "toolace_canary" not in repr(call.arguments)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.booleans(), st.sampled_from([None, TOOLS]))
def test_random_text_never_raises(text: str, truncated: bool, tools: Any) -> None:
    _parse(text, tools=tools, truncated=truncated)


_CALLISH = st.text(alphabet="[](){},=:\"'\\ \nabf._-0123456789*+-/`#@!~<>|&%^", max_size=200)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["[", "[f(", "[f(a=", "```python\n[", "f(", ""]), _CALLISH, st.booleans())
def test_call_like_noise_never_raises(prefix: str, noise: str, truncated: bool) -> None:
    out = _parse(prefix + noise, truncated=truncated)
    if prefix.startswith(("[", "`")):
        assert out.calls or out.invalid or out.content == "" or "]" in noise or "`" in noise


_RESERVED_NOISE = st.sampled_from(
    ["from", "class", "True", "None", "lambda x", "_reserved_", "_reserved__0", "a", "1", "f"]
    + ["=", "==", ", ", "(", ")", "[", "]", "{", "}", ":", "**", "#", "\n", " ", '"', "'"]
    + ['"x, from=1"', "'class='"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_RESERVED_NOISE, max_size=40))
def test_reserved_word_noise_never_raises_or_leaks_internal_names(pieces: list[str]) -> None:
    text = "[f(" + "".join(pieces)
    out = _parse(text)
    for call in out.calls:
        assert all(is_argument_name(key) for key in call.arguments), text
    if "_reserved" not in text:
        assert "_reserved" not in json.dumps([c.arguments for c in out.calls]), text
        assert not any("_reserved" in bad.error for bad in out.invalid), text


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[f(a=" + "[" * 100_000, id="open-brackets"),
        pytest.param("[f(a=" + "[" * 100_000 + "]" * 100_000 + ")]", id="closed-brackets"),
        pytest.param("[f(a=" + "(" * 150 + "1" + ")" * 150 + ")]", id="parens-past-limit"),
        pytest.param("[f(a=" + "{'k': " * 5_000 + "1" + "}" * 5_000 + ")]", id="nested-dicts"),
        pytest.param("[f(a=" + "-" * 100_000 + "1)]", id="unary-chain"),
        pytest.param("[f(a=" + "not " * 100_000 + "1)]", id="not-chain"),
        pytest.param("[f(a=" + "1+" * 200_000 + "1)]", id="binary-chain"),
        pytest.param("[f(a=" + "2**" * 1_000 + "2)]", id="power-chain"),
        pytest.param("[f(a=" + "9" * 100_000 + ")]", id="huge-int-literal"),
        pytest.param("[f(a=" + "1" * 300 + ".5e99999)]", id="huge-float-literal"),
        pytest.param("[f(a=1/" + "0." + "0" * 1000 + "1)]", id="tiny-divisor"),
    ],
)
def test_pathological_input_is_an_invalid_call(text: str) -> None:
    out = _parse(text)
    assert out.calls == [] and len(out.invalid) == 1, out.invalid


def test_deep_nesting_under_the_limit_still_parses() -> None:
    out = _parse("[f(a=" + "[" * 50 + "]" * 50 + ")]")
    assert out.invalid == [] and out.calls[0].name == "f"


_MEGABYTE = MAX_INPUT_CHARS


@pytest.mark.parametrize(
    ("text", "calls", "invalid"),
    [
        pytest.param('[f(a="' + "x" * (_MEGABYTE - 10) + '")]', 1, 0, id="one-long-string"),
        pytest.param('[f(a="' + "\\n" * (_MEGABYTE // 2 - 8) + '")]', 1, 0, id="escapes"),
        pytest.param("[" + "f(a=1), " * (_MEGABYTE // 8), 0, 1, id="too-many-calls"),
        pytest.param("[" * _MEGABYTE, 0, 1, id="brackets"),
        pytest.param("(" * _MEGABYTE, 0, 0, id="parens-as-text"),
        pytest.param('["' + '\\"' * (_MEGABYTE // 2 - 2), 0, 1, id="unclosed-string"),
        pytest.param("[f(a=" + "1, " * (_MEGABYTE // 3 - 4) + ")]", 0, 1, id="many-arguments"),
        pytest.param("[" + "a " * (_MEGABYTE // 2 - 1), 0, 1, id="long-name"),
        pytest.param("word, (x) " * (_MEGABYTE // 10), 0, 0, id="prose"),
        pytest.param("f(a=1), " * (_MEGABYTE // 8 - 1) + "f()", 0, 0, id="bare-calls"),
        pytest.param("[" + "x" * (_MEGABYTE + 1), 0, 1, id="over-the-cap"),
        pytest.param("[f(" + "from=1, " * (_MEGABYTE // 8 - 1) + ")]", 0, 1, id="reserved-names"),
        pytest.param("[f(class=[" + "1, " * (_MEGABYTE // 3 - 5) + "])]", 1, 0, id="reserved-list"),
    ],
)
def test_megabyte_inputs_finish_in_bounded_time(text: str, calls: int, invalid: int) -> None:
    assert len(text) <= _MEGABYTE + 2
    out = _parse(text)
    assert (len(out.calls), len(out.invalid)) == (calls, invalid)
