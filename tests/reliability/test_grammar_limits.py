"""Grammars too large to compile quickly are refused when the request is built, before any work.

xgrammar's compile time grows faster than the grammar (``benchmarks/bench_grammar_limits.py``):
50 tools x 200 properties compiled for 17-22 s, 100 x 200 for 90-110 s, on the batching thread.
Grammars over ``TOOLACE_MAX_GRAMMAR_BYTES`` (128 KiB by default) are refused with
:class:`GrammarTooLargeError`; concurrent requests for one grammar compile it once.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from _hooks import DTYPE, ForwardCounter
from langchain_core.messages import AIMessage
from llama_index.core.base.llms.types import ChatMessage

from toolace_integrations.errors import GrammarTooLargeError, ToolACEError
from toolace_integrations.format.tools import ToolChoice, normalize_tools
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine
from toolace_integrations.local.grammar import GrammarConstraint, tool_call_grammar


def _tools(count: int, properties: int) -> list[dict[str, Any]]:
    schema = {
        "type": "object",
        "properties": {f"p{j}": {"type": "string"} for j in range(properties)},
    }
    return [{"type": "function", "function": {"name": f"tool_{i}", "parameters": schema}}
            for i in range(count)]  # fmt: skip


WEATHER = _tools(1, 2)


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=2)


@pytest.fixture(scope="module")
def li(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=2)


def test_default_limit_refuses_fifty_tools_of_two_hundred_properties(
    lc: ChatToolACE, forwards: ForwardCounter
) -> None:
    """The prompt does not fit the tiny model's window either: the grammar is refused first,
    when the request is built, as it would be for a 128k-token window that fits it."""
    tools = _tools(50, 200)
    with pytest.raises(GrammarTooLargeError) as caught:
        lc.bind_tools(tools, tool_choice="any").invoke("Hi")
    error = caught.value
    assert error.limit == 128 * 1024 and error.size > error.limit
    assert f"{error.size:,} bytes, over the limit of 131,072 bytes" in str(error)
    assert "TOOLACE_MAX_GRAMMAR_BYTES" in str(error) and "constrained_decoding" in str(error)
    assert forwards.calls == 0
    specs = normalize_tools(tools)
    with pytest.raises(GrammarTooLargeError):
        tool_call_grammar(specs, ToolChoice("required"))
    assert len(tool_call_grammar(specs, ToolChoice("required"), max_bytes=0)) > error.limit


def _entries(lc: ChatToolACE, li: ToolACELLM) -> dict[str, Callable[[], Any]]:
    bound = lc.bind_tools(WEATHER, tool_choice="any")
    messages = [ChatMessage(role="user", content="Hi")]
    return {
        "lc-invoke": lambda: bound.invoke("Hi"),
        "lc-ainvoke": lambda: asyncio.run(bound.ainvoke("Hi")),
        "lc-stream": lambda: list(bound.stream("Hi")),
        "li-chat": lambda: li.chat(messages, tools=WEATHER, tool_choice="tool_0"),
        "li-achat": lambda: asyncio.run(li.achat(messages, tools=WEATHER, tool_choice="tool_0")),
    }


@pytest.mark.parametrize("entry", ["lc-invoke", "lc-ainvoke", "lc-stream", "li-chat", "li-achat"])
def test_limit_comes_from_the_environment(
    lc: ChatToolACE,
    li: ToolACELLM,
    forwards: ForwardCounter,
    monkeypatch: pytest.MonkeyPatch,
    entry: str,
) -> None:
    monkeypatch.setenv("TOOLACE_MAX_GRAMMAR_BYTES", "200")
    with pytest.raises(GrammarTooLargeError, match="over the limit of 200 bytes"):
        _entries(lc, li)[entry]()
    assert forwards.calls == 0


def test_limit_off_and_unconstrained_calls_are_not_refused(
    lc: ChatToolACE, tiny_model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLACE_MAX_GRAMMAR_BYTES", "200")
    free = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=2, constrained_decoding=False)
    assert isinstance(free.bind_tools(WEATHER).invoke("Hi"), AIMessage)
    monkeypatch.setenv("TOOLACE_MAX_GRAMMAR_BYTES", "0")
    assert isinstance(lc.bind_tools(WEATHER, tool_choice="any").invoke("Hi"), AIMessage)


def test_bad_limit_value_says_so(lc: ChatToolACE, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLACE_MAX_GRAMMAR_BYTES", "256k")
    with pytest.raises(ToolACEError, match="TOOLACE_MAX_GRAMMAR_BYTES='256k' is not a whole"):
        lc.bind_tools(WEATHER, tool_choice="any").invoke("Hi")


class _CountingCompiler:
    """Wraps xgrammar's compiler: counts compiles and makes each take a while."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def compile_grammar(self, grammar: str) -> Any:
        self.calls += 1
        time.sleep(0.2)
        return self.inner.compile_grammar(grammar)


def test_concurrent_requests_for_one_grammar_compile_it_once(engine: TransformersEngine) -> None:
    rows = engine.model.get_input_embeddings().weight.shape[0]
    constraint = GrammarConstraint(engine.tokenizer, rows, engine.stop_token_ids)
    counting = _CountingCompiler(constraint._compiler)
    constraint._compiler = counting
    specs, choice = normalize_tools(_tools(3, 4)), ToolChoice("required")
    threads = [
        threading.Thread(target=constraint.precompile, args=(specs, choice)) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counting.calls == 1
    constraint.logits_processor(specs, choice)  # precompiled: found in the cache
    assert counting.calls == 1
