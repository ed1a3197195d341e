"""Inputs that used to escape the package's errors: each is refused (or rendered) before generation.

Lone surrogates, replayed arguments the call syntax cannot write, a tool result nested 10,000
deep and a tokenizer that does not belong to the model raised ``TypeError``, ``ValueError``,
``RecursionError`` or an ``IndexError`` in the middle of ``generate``. Each case counts forward
passes: a refused input must be refused before the model computes anything.
"""

import asyncio
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _hooks import DTYPE, ForwardCounter
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage
from transformers import AutoTokenizer

from toolace_integrations.errors import ModelLoadError, PromptTooLongError, ToolACEError
from toolace_integrations.format.parsing import ToolCall
from toolace_integrations.format.prompt import Message, render_messages
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM

SURROGATE = "\ud800"


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=2)


@pytest.fixture(scope="module")
def li(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=2)


def _tool(description: str = "Look a word up.", **schema: Any) -> dict[str, Any]:
    parameters = {"type": "object", "properties": {"q": {"type": "string", **schema}}}
    return {"type": "function", "function": {"name": "lookup", "description": description,
                                             "parameters": parameters}}  # fmt: skip


def _entry_points(lc: ChatToolACE, li: ToolACELLM, text: str) -> dict[str, Callable[[], Any]]:
    return {
        "lc-invoke": lambda: lc.invoke(text),
        "lc-ainvoke": lambda: asyncio.run(lc.ainvoke(text)),
        "lc-stream": lambda: list(lc.stream(text)),
        "li-chat": lambda: li.chat([ChatMessage(role="user", content=text)]),
        "li-achat": lambda: asyncio.run(li.achat([ChatMessage(role="user", content=text)])),
    }


@pytest.mark.parametrize("entry", ["lc-invoke", "lc-ainvoke", "lc-stream", "li-chat", "li-achat"])
def test_lone_surrogate_in_user_text_is_refused(
    lc: ChatToolACE, li: ToolACELLM, forwards: ForwardCounter, entry: str
) -> None:
    with pytest.raises(ToolACEError, match="lone surrogate '\\\\ud800' at character 6") as caught:
        _entry_points(lc, li, f"Hello {SURROGATE}!")[entry]()
    assert "not valid Unicode" in str(caught.value) and "errors='replace'" in str(caught.value)
    assert forwards.calls == 0


@pytest.mark.parametrize(
    "tool",
    [
        pytest.param(_tool(f"Look {SURROGATE} up."), id="description"),
        pytest.param(_tool(enum=["a", f"b{SURROGATE}"]), id="enum"),
    ],
)
def test_lone_surrogate_in_a_tool_is_refused(
    lc: ChatToolACE, forwards: ForwardCounter, tool: dict[str, Any]
) -> None:
    with pytest.raises(ToolACEError, match="surrogate"):
        lc.bind_tools([tool]).invoke("Look up 'cat'.")
    assert forwards.calls == 0


def _replay(arguments: dict[str, Any], result: str = "ok") -> list[BaseMessage]:
    call = {"name": "lookup", "args": arguments, "id": "call_1"}
    return [
        HumanMessage("Look up 'cat'."),
        AIMessage("", tool_calls=[call]),
        ToolMessage(result, tool_call_id="call_1"),
    ]


def test_lone_surrogate_in_a_tool_result_keeps_its_json_escape(
    lc: ChatToolACE, forwards: ForwardCounter
) -> None:
    """The result is rendered as JSON, which spells a lone surrogate as an escape."""
    message = lc.bind_tools([_tool()]).invoke(_replay({"q": "cat"}, f"feline {SURROGATE}"))
    assert isinstance(message, AIMessage) and forwards.calls > 0
    call = ToolCall("lookup", {"q": "cat"}, "call_1")
    rendered = render_messages(
        [
            Message("assistant", tool_calls=(call,)),
            Message("tool", f"x{SURROGATE}", tool_call_id="call_1"),
        ]
    )
    assert rendered[-1]["content"] == '[{"name": "lookup", "results": "x\\ud800"}]'


def test_tool_result_nested_10000_deep_is_rendered_as_text(
    lc: ChatToolACE, forwards: ForwardCounter
) -> None:
    """Too deep for ``json``: the result goes to the model as the text it is."""
    deep = "[" * 10_000 + "]" * 10_000
    call = ToolCall("lookup", {"q": "cat"}, "call_1")
    rendered = render_messages(
        [Message("assistant", tool_calls=(call,)), Message("tool", deep, tool_call_id="call_1")]
    )
    assert rendered[-1]["content"] == f'[{{"name": "lookup", "results": "{deep}"}}]'
    with pytest.raises(PromptTooLongError):  # 20,000 tokens do not fit the tiny model's window
        lc.bind_tools([_tool()]).invoke(_replay({"q": "cat"}, deep))
    assert forwards.calls == 0


def _nested(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth):
        node.append([])
        node = node[0]
    return root


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param(math.nan, "nan is not a finite number", id="nan"),
        pytest.param(-math.inf, "-inf is not a finite number", id="infinity"),
        pytest.param(10**5000, "an integer of 16610 bits is too large", id="int-5001-digits"),
        pytest.param(b"cat", "a bytes value is not JSON-like", id="bytes"),
        pytest.param(_nested(5000), "nested over 100 levels deep", id="nested-5000"),
        pytest.param({1: "cat"}, "dict keys must be strings", id="int-key"),
    ],
)
@pytest.mark.parametrize("entry", ["lc-invoke", "li-chat"])
def test_replayed_arguments_the_syntax_cannot_write_are_refused(
    lc: ChatToolACE, li: ToolACELLM, forwards: ForwardCounter, value: Any, problem: str, entry: str
) -> None:
    if entry == "lc-invoke":
        run: Callable[[], Any] = lambda: lc.invoke(_replay({"q": value}))  # noqa: E731
    else:
        call = {"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": {"q": value}}}  # fmt: skip
        messages = [
            ChatMessage(role="user", content="Look up 'cat'."),
            ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]}),
            ChatMessage(role="tool", content="ok", additional_kwargs={"tool_call_id": "call_1"}),
        ]
        run = lambda: li.chat(messages)  # noqa: E731
    with pytest.raises(ToolACEError) as caught:
        run()
    message = str(caught.value)
    assert "The call 'lookup' cannot be written in ToolACE's call syntax" in message
    assert problem in message and "Pass JSON-like arguments" in message
    assert forwards.calls == 0


def test_llama_index_arguments_as_json_text_nested_too_deep_are_refused(
    li: ToolACELLM, forwards: ForwardCounter
) -> None:
    """LlamaIndex stores replayed arguments as JSON text; 100,000 levels is beyond ``json``."""
    deep = '{"q": ' + "[" * 100_000 + "]" * 100_000 + "}"
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": deep}}  # fmt: skip
    messages = [
        ChatMessage(role="user", content="Look up 'cat'."),
        ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]}),
        ChatMessage(role="tool", content="ok", additional_kwargs={"tool_call_id": "call_1"}),
    ]
    with pytest.raises(ToolACEError, match="Arguments of the 'lookup' call are not JSON"):
        li.chat(messages)
    assert forwards.calls == 0


def test_tokenizer_larger_than_the_model_is_refused_at_load(
    tiny_model_path: str, tmp_path: Path
) -> None:
    """Token ids past the embedding table used to raise IndexError inside generate."""
    folder = shutil.copytree(tiny_model_path, tmp_path / "swapped")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = len(tokenizer)  # the tiny checkpoint embeds exactly its tokenizer's tokens
    tokenizer.add_tokens([f"extra_word_{i}" for i in range(300)])
    tokenizer.save_pretrained(folder)
    with pytest.raises(ModelLoadError) as caught:
        ChatToolACE(model=str(folder), dtype=DTYPE).invoke("Say extra_word_299.")
    message = str(caught.value)
    assert f"has token id {rows + 299}" in message and f"embeds only {rows} tokens" in message
    assert "Load both from one checkpoint" in message
