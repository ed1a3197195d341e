"""Bad configuration and input fail early with errors that name the problem and the fix.

Every check counts the model's forward passes: a refused prompt or tool list must be refused
before the model computes anything, and a failure inside ``generate`` (a simulated CUDA
out-of-memory) must leave the model free for the next caller.
"""

import asyncio
import importlib.util
import inspect
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _hooks import DTYPE, ForwardCounter, fail_forward, lock_free, wait_until
from langchain_core.messages import AIMessage
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel, Field

from toolace_integrations.errors import (
    GenerationError,
    ModelLoadError,
    PromptTooLongError,
    ToolACEError,
    ToolSpecError,
)
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine

WINDOW = 4096  # the tiny checkpoint's max_position_embeddings


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=4)


@pytest.fixture(scope="module")
def li(tiny_model_path: str) -> ToolACELLM:
    return ToolACELLM(model=tiny_model_path, torch_dtype=DTYPE, max_new_tokens=4)


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def _run(call: Callable[[], Any]) -> Any:
    """Run a call; async ones (coroutines, async iterators) run to the end on a new loop."""
    result = call()
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    if hasattr(result, "__aiter__"):

        async def drain() -> list[Any]:
            return [item async for item in result]

        return asyncio.run(drain())
    if hasattr(result, "__next__"):
        return list(result)
    return result


async def _astream_chat(llm: ToolACELLM, messages: list[ChatMessage]) -> list[Any]:
    return [response async for response in await llm.astream_chat(messages)]


def _calls(lc: ChatToolACE, li: ToolACELLM, text: str) -> dict[str, Callable[[], Any]]:
    """Every entry point of both adapters, each sending ``text`` as the user message."""
    return {
        "lc-invoke": lambda: lc.invoke(text),
        "lc-stream": lambda: lc.stream(text),
        "lc-ainvoke": lambda: lc.ainvoke(text),
        "lc-astream": lambda: lc.astream(text),
        "lc-batch": lambda: lc.batch([text, "Hi"]),
        "li-chat": lambda: li.chat(user(text)),
        "li-stream_chat": lambda: li.stream_chat(user(text)),
        "li-achat": lambda: li.achat(user(text)),
        "li-astream_chat": lambda: _astream_chat(li, user(text)),
    }


ENTRY_POINTS = list(_calls(None, None, "").keys())  # type: ignore[arg-type]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_prompt_longer_than_the_window_is_refused_before_generation(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    forwards: ForwardCounter,
    entry: str,
) -> None:
    short = lc.invoke("Q", max_tokens=1)  # "Q" * n is n tokens with the tiny tokenizer
    assert short.usage_metadata is not None
    overhead = short.usage_metadata["input_tokens"] - 1
    before = forwards.calls
    with pytest.raises(PromptTooLongError) as caught:
        _run(_calls(lc, li, "Q" * 5000)[entry])
    assert forwards.calls == before, "the model ran on a prompt that cannot fit"
    message = str(caught.value)
    assert f"prompt is {overhead + 5000} tokens" in message
    assert f"context window is {WINDOW} tokens" in message
    assert "Shorten the conversation" in message
    assert lock_free(engine)


def test_prompt_that_just_fits_generates_and_one_more_token_is_refused(
    lc: ChatToolACE, forwards: ForwardCounter
) -> None:
    short = lc.invoke("Q", max_tokens=1)
    assert short.usage_metadata is not None
    room = WINDOW - (short.usage_metadata["input_tokens"] - 1)
    fits = lc.invoke("Q" * (room - 1), max_tokens=50)
    assert fits.usage_metadata is not None
    assert fits.usage_metadata["input_tokens"] == WINDOW - 1
    assert fits.usage_metadata["output_tokens"] == 1  # clamped to the one position left
    assert fits.response_metadata["finish_reason"] == "length"
    before = forwards.calls
    with pytest.raises(PromptTooLongError, match=f"prompt is {WINDOW} tokens"):
        lc.invoke("Q" * room)
    assert forwards.calls == before


def _tool(name: str, description: str = "A tool.", **properties: Any) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties or {"q": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "description": description,
                                             "parameters": parameters}}  # fmt: skip


def test_duplicate_tool_names_fail_at_bind_time(lc: ChatToolACE) -> None:
    first, second = _tool("lookup", "Look up a word."), _tool("lookup", "Look up a city.")
    with pytest.raises(ToolSpecError, match="Two tools are named 'lookup'.*unique"):
        lc.bind_tools([first, second])
    assert lc.bind_tools([first, dict(first)])  # the same definition twice is one tool


BAD_NAMES = [
    pytest.param("get weather!", "Use letters, digits and underscores", id="punctuation"),
    pytest.param("get..weather", "single dots", id="double-dot"),
    pytest.param("9lives", "Use letters", id="leading-digit"),
]
BAD_ARGUMENTS = [
    pytest.param("my-arg", id="hyphen"),
    pytest.param("2x", id="leading-digit"),
    pytest.param("a b", id="space"),
]


@pytest.mark.parametrize(("name", "fix"), BAD_NAMES)
def test_unspellable_tool_name_fails_at_bind_time(lc: ChatToolACE, name: str, fix: str) -> None:
    with pytest.raises(ToolSpecError, match=re.escape(repr(name))) as caught:
        lc.bind_tools([_tool(name)])
    assert "cannot be written in ToolACE's call syntax" in str(caught.value)
    assert fix in str(caught.value)


@pytest.mark.parametrize("argument", BAD_ARGUMENTS)
def test_unspellable_argument_name_fails_at_bind_time(lc: ChatToolACE, argument: str) -> None:
    with pytest.raises(ToolSpecError, match=re.escape(repr(argument))) as caught:
        lc.bind_tools([_tool("search", **{argument: {"type": "string"}})])
    assert "not a Python identifier" in str(caught.value) and "Rename it" in str(caught.value)


def _li_tool(name: str = "search", argument: str = "q") -> FunctionTool:
    schema = type(
        "Args",
        (BaseModel,),
        {"__annotations__": {"value": str}, "value": Field(alias=argument)},
    )
    return FunctionTool.from_defaults(fn=lambda **kw: "ok", name=name, fn_schema=schema)


@pytest.mark.parametrize(
    ("tools", "problem"),
    [
        pytest.param(
            lambda: [_li_tool("get weather!")],
            "'get weather!'",
            id="bad-name",
        ),
        pytest.param(lambda: [_li_tool(argument="my-arg")], "'my-arg'", id="hyphen-arg"),
        pytest.param(
            lambda: [_li_tool("lookup"), _li_tool("lookup", "word")],
            "Two tools are named 'lookup'",
            id="duplicate",
        ),
    ],
)
def test_llama_index_refuses_bad_tools_before_generation(
    li: ToolACELLM, forwards: ForwardCounter, tools: Callable[[], list[Any]], problem: str
) -> None:
    with pytest.raises(ToolSpecError, match=re.escape(problem)):
        li.chat_with_tools(tools(), user_msg="Search.")
    assert forwards.calls == 0


def test_llama_index_binds_the_tool_name_toolace_can_spell(li: ToolACELLM) -> None:
    """ToolACE's own data names tools like this; agents look the called tool up by this name."""
    schema = type("Args", (BaseModel,), {"__annotations__": {"loud": bool}})
    trends = FunctionTool.from_defaults(
        fn=lambda loud: "ok", name="Market Trends API", fn_schema=schema
    )
    response = li.chat_with_tools(
        [trends], user_msg="Trends?", tool_choice="Market Trends API", max_new_tokens=32
    )
    [selection] = li.get_tool_calls_from_response(response)
    assert selection.tool_name == "Market Trends API"


def _missing_model_calls(folder: str) -> dict[str, Callable[[], Any]]:
    lc = ChatToolACE(model=folder)  # construction loads nothing, so it cannot fail
    li = ToolACELLM(model=folder)
    return {
        "lc-invoke": lambda: lc.invoke("hi"),
        "lc-ainvoke": lambda: lc.ainvoke("hi"),
        "li-chat": lambda: li.chat(user("hi")),
        "li-achat": lambda: li.achat(user("hi")),
    }


@pytest.mark.parametrize("entry", ["lc-invoke", "lc-ainvoke", "li-chat", "li-achat"])
@pytest.mark.parametrize("kind", ["missing", "empty-folder"])
def test_model_that_cannot_be_loaded_says_how_to_load_it(
    tmp_path: Path, entry: str, kind: str
) -> None:
    folder = tmp_path / "weights"
    if kind == "empty-folder":
        folder.mkdir()
    with pytest.raises(ModelLoadError) as caught:
        _run(_missing_model_calls(str(folder))[entry])
    message = str(caught.value)
    assert repr(str(folder)) in message
    assert "HF_HUB_OFFLINE=1" in message
    assert isinstance(caught.value, OSError)


def test_corrupt_weights_raise_model_load_error(tiny_model_path: str, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_model_path, tmp_path / "copy")
    (copy / "model.safetensors").write_bytes(b"not a safetensors file" * 10)
    with pytest.raises(ModelLoadError, match="model.safetensors|corrupt|download"):
        ChatToolACE(model=str(copy)).invoke("hi")


def test_unknown_dtype_names_the_choices(tiny_model_path: str) -> None:
    with pytest.raises(ToolACEError, match="float17.*bfloat16"):
        ChatToolACE(model=tiny_model_path, dtype="float17").invoke("hi")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_map_without_cuda_says_so(tiny_model_path: str) -> None:
    with pytest.raises(ToolACEError, match="CUDA"):
        ChatToolACE(model=tiny_model_path, device_map="cuda:0").invoke("hi")


def test_unknown_load_option_is_named_not_blamed_on_the_files(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, model_kwargs={"no_such_option": 1})
    with pytest.raises(ModelLoadError, match="no_such_option") as caught:
        llm.invoke("hi")
    assert "model_kwargs" in str(caught.value)
    assert "download them again" not in str(caught.value)


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed"
)
def test_quantization_without_bitsandbytes_says_what_to_install(tiny_model_path: str) -> None:
    """The OOM advice suggests 4-bit loading; without its extra that must say so plainly."""
    quantized = {"quantization_config": {"load_in_4bit": True}}
    llm = ChatToolACE(model=tiny_model_path, model_kwargs=quantized)
    with pytest.raises(ModelLoadError, match="bitsandbytes") as caught:
        llm.invoke("hi")
    assert "download them again" not in str(caught.value)


def test_prompt_too_long_advice_only_names_fixes_that_help(lc: ChatToolACE) -> None:
    """Nothing is reserved for the answer (it is cut at the window), and a smaller
    max_new_tokens cannot make a prompt that alone overflows the window fit."""
    with pytest.raises(PromptTooLongError) as caught:
        lc.invoke("Q" * 5000)
    message = str(caught.value)
    assert "reserved" not in message and "lower max_new_tokens" not in message
    assert "Shorten the conversation" in message


def _oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("on_call", [1, 3], ids=["in-prefill", "mid-answer"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_out_of_memory_advises_and_frees_the_model(
    lc: ChatToolACE,
    li: ToolACELLM,
    engine: TransformersEngine,
    entry: str,
    on_call: int,
) -> None:
    with fail_forward(engine, _oom(), on_call=on_call), pytest.raises(GenerationError) as caught:
        _run(_calls(lc, li, "Tell me a story.")[entry])
    message = str(caught.value)
    assert "ran out of memory" in message
    assert "quantization_config" in message and "4-bit" in message
    assert "lower max_new_tokens" in message
    assert isinstance(caught.value.__cause__, torch.OutOfMemoryError)
    assert wait_until(lambda: lock_free(engine), timeout=10)
    after = lc.invoke("Hi", max_tokens=2)  # the next caller gets the model
    assert isinstance(after, AIMessage) and after.usage_metadata
    assert after.usage_metadata["output_tokens"] == 2
