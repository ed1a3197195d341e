"""Issue 18: what a new user trips over, one test per point, on the tiny offline checkpoint."""

from __future__ import annotations

import copy
import gc
import json
import shutil
import weakref
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, trim_messages
from langchain_core.tools import tool
from llama_index.core import PromptTemplate
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel
from transformers import AutoTokenizer

from toolace_integrations.errors import (
    InvalidSettingError,
    ModelLoadError,
    PromptTooLongError,
    TruncatedOutputError,
    UnknownArgumentError,
)
from toolace_integrations.format.prompt import PromptError
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local import engine as engine_module


@tool
def get_weather(city: Literal["Paris", "Tokyo"]) -> str:
    """Get the weather forecast for a city."""
    return f"sunny in {city}"


class Forecast(BaseModel):
    """A weather forecast."""

    city: Literal["Paris", "Tokyo"]
    sunny: bool


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


@pytest.fixture
def model_copy(tiny_model_path: str, tmp_path: Path) -> str:
    """A fresh copy of the tiny checkpoint, so loading it really loads (no shared engine)."""
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_path, folder)
    return str(folder)


def test_18_1_misspelled_arguments_are_refused_and_ecosystem_spellings_accepted(
    tiny_model_path: str,
) -> None:
    assert ChatToolACE(model_name=tiny_model_path).model == tiny_model_path
    assert ToolACELLM(model_name=tiny_model_path).model == tiny_model_path
    llm = ToolACELLM(max_tokens=5, dtype="float16")
    assert (llm.max_new_tokens, llm.dtype) == (5, "float16")
    for misspelled, meant in [("max_token", "max_tokens"), ("temprature", "temperature")]:
        for adapter in (ChatToolACE, ToolACELLM):
            with pytest.raises(UnknownArgumentError, match=f"did you mean '{meant}'"):
                adapter(**{misspelled: 1})
    with pytest.raises(UnknownArgumentError, match="did you mean 'max_tokens'"):
        ChatToolACE(model="no/such-model").invoke("hi", max_token=5)  # before any loading
    with pytest.raises(UnknownArgumentError, match="settings of ToolACELLM"):
        ToolACELLM(model="no/such-model").chat([user("hi")], constrained_decoding=False)
    # Per call, the LlamaIndex side honours max_tokens now.
    response = ToolACELLM(model=tiny_model_path).chat([user("Tell a story.")], max_tokens=2)
    assert response.additional_kwargs["completion_tokens"] <= 2


def test_18_2_token_counts_come_from_the_checkpoint_tokenizer(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, max_tokens=4)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    text = "The weather in Paris is sunny."
    assert llm.get_num_tokens(text) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert not llm._slot.backends  # counted with the tokenizer alone
    conversation = [HumanMessage("Weather in Paris?")]
    counted = llm.get_num_tokens_from_messages(conversation, tools=[get_weather])
    answer = llm.bind_tools([get_weather]).invoke(conversation)
    assert answer.usage_metadata and counted == answer.usage_metadata["input_tokens"]
    history = [HumanMessage(f"Question {i}: what is the weather like?") for i in range(6)]
    budget = llm.get_num_tokens_from_messages(history[-2:])
    trimmed = trim_messages(history, max_tokens=budget, token_counter=llm, strategy="last")
    assert trimmed == history[-2:]


def test_18_3_equivalent_settings_share_one_engine(
    model_copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(model_copy).parent)
    variants: list[Any] = [
        ChatToolACE(model=model_copy),
        ChatToolACE(model=model_copy + "/"),
        ChatToolACE(model=Path(model_copy).name),  # relative
        ChatToolACE(model=model_copy, dtype="float32"),  # the CPU default
        ChatToolACE(model=model_copy, attn_implementation="sdpa"),  # the default
        ToolACELLM(model=model_copy, torch_dtype="float32"),
    ]
    before = len(engine_module._engines)
    engines = {id(variant._backend()) for variant in variants}
    assert len(engines) == 1 and len(engine_module._engines) == before + 1


def test_18_4_truncated_structured_output_says_to_raise_max_tokens(tiny_model_path: str) -> None:
    chat_model = ChatToolACE(model=tiny_model_path, max_tokens=2)
    result: Any = chat_model.with_structured_output(Forecast, include_raw=True).invoke("Tokyo?")
    assert result["parsed"] is None
    error = result["parsing_error"]
    assert isinstance(error, TruncatedOutputError) and "cut at 2 tokens" in str(error)
    assert "max_tokens" in str(error)
    with pytest.raises(TruncatedOutputError, match="cut at 2 tokens"):
        chat_model.with_structured_output(Forecast).invoke("Tokyo?")
    llm = ToolACELLM(model=tiny_model_path, max_new_tokens=2)
    with pytest.raises(TruncatedOutputError, match="Raise max_tokens") as caught:
        llm.structured_predict(Forecast, PromptTemplate("Forecast for {city}?"), city="Tokyo")
    assert "tool_required" not in str(caught.value)


def test_18_5_llm_cache_keys_hold_every_setting_that_changes_the_answer(
    tiny_model_path: str,
) -> None:
    cache = InMemoryCache()
    base: dict[str, Any] = {"model": tiny_model_path, "max_tokens": 3, "cache": cache}
    ChatToolACE(**base).invoke("Hi")
    ChatToolACE(**base, system_template="Answer briefly. {functions}").invoke("Hi")
    assert len(cache._cache) == 2  # the second call was not answered from the first's entry
    reference = ChatToolACE(**base)._get_llm_string()
    assert ChatToolACE(**base, api_key="secret")._get_llm_string() == reference
    assert "secret" not in ChatToolACE(**base, api_key="secret")._get_llm_string()
    changes: list[dict[str, Any]] = [
        {"constrained_decoding": False},
        {"system_template": "Answer briefly. {functions}"},
        {"base_url": "http://127.0.0.1:9/v1"},
        {"model_kwargs": {"quantization_config": {"load_in_4bit": True}}},
        {"device_map": "cpu"},
        {"revision": "v2"},
    ]
    for change in changes:
        assert ChatToolACE(**base, **change)._get_llm_string() != reference, change


def test_18_6_common_call_arguments_are_accepted(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, max_tokens=24, stream_usage=True)
    message = llm.bind_tools([get_weather], tool_choice="any", strict=True).invoke("Paris?")
    assert isinstance(message, AIMessage) and message.tool_calls
    chunks = list(llm.stream("Hi", stream_usage=True))
    assert chunks[-1].usage_metadata is not None
    request = llm._request([HumanMessage("Hi")], "arith", {})[0]
    assert request.sampling.stop == ("arith",)
    assert llm._get_ls_params(stop="arith")["ls_stop"] == ["arith"]  # type: ignore[arg-type]
    assert ChatToolACE(stop="arith").stop == ["arith"]
    assert "arith" not in str(llm.invoke("Say arithmetic.", stop="arith").content)


def test_18_7_context_size_is_read_from_config_json_without_weights(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 3000}))
    chat_model = ChatToolACE(model=str(tmp_path))
    assert chat_model.profile is not None and chat_model.profile["max_input_tokens"] == 3000
    assert ToolACELLM(model=str(tmp_path)).metadata.context_window == 3000
    from langchain.agents.middleware import SummarizationMiddleware

    SummarizationMiddleware(model=chat_model, trigger=("fraction", 0.5))  # needs the profile


def test_18_8_simple_mistakes_raise_package_errors_before_model_work(tmp_path: Path) -> None:
    chat_model = ChatToolACE(model="no/such-model")  # would fail to load if anything loaded
    llm = ToolACELLM(model="no/such-model")
    with pytest.raises(PromptError, match="empty"):
        chat_model.invoke([])
    with pytest.raises(PromptError, match="empty"):
        llm.chat([])
    for bad in ({"temperature": -1}, {"max_tokens": 0}, {"top_p": 2}):
        with pytest.raises(InvalidSettingError):
            chat_model.invoke("hi", **bad)
        with pytest.raises(InvalidSettingError):
            llm.chat([user("hi")], **bad)
    for missing in (str(tmp_path / "missing"), "./missing", "models/missing/"):
        with pytest.raises(ModelLoadError, match="There is no folder"):
            ChatToolACE(model=missing).invoke("hi")
        with pytest.raises(ModelLoadError, match="There is no folder"):
            ToolACELLM(model=missing).chat([user("hi")])


def test_18_9_quiet_loading_lifecycle_methods_and_deepcopy(
    model_copy: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    chat_model = ChatToolACE(model=model_copy, max_tokens=3).load()
    assert "Loading weights" not in capfd.readouterr().err
    with pytest.raises(PromptTooLongError):
        chat_model.invoke("weather " * 5000)
    assert "Token indices sequence length" not in capfd.readouterr().err + caplog.text

    llm = ToolACELLM(model=model_copy, max_new_tokens=3)
    assert llm.load() is llm
    tools = [FunctionTool.from_defaults(fn=lambda city: city, name="get_weather")]
    prompt = llm.get_prompt_text([user("Weather in Paris?")], tools=tools)
    assert prompt.startswith("<|begin_of_text|>") and "get_weather" in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")

    for original in (chat_model, llm):
        duplicate = copy.deepcopy(original)
        assert duplicate._backend() is original._backend()  # shares the model, copies nothing
    assert isinstance(copy.deepcopy(chat_model).invoke("Hi"), AIMessage)

    engine = weakref.ref(chat_model._backend())
    chat_model.unload()
    assert engine() in engine_module._engines.values()  # the LlamaIndex LLM still uses it
    llm.unload()
    assert engine() not in engine_module._engines.values()
    gc.collect()
    assert engine() is None  # the weights are gone
    assert llm.chat([user("Hi")]).message.role == "assistant"  # and load again when needed


def test_15_3_cached_prompt_tokens_are_reported(tiny_model_path: str) -> None:
    chat_model = ChatToolACE(model=tiny_model_path, max_tokens=2)
    chat_model.invoke("Cache me, please.")
    usage = chat_model.invoke("Cache me, please.").usage_metadata
    assert usage is not None and usage["input_token_details"]["cache_read"] > 0
    llm = ToolACELLM(model=tiny_model_path, max_new_tokens=2)
    llm.chat([user("Cache me too.")])
    response = llm.chat([user("Cache me too.")])
    assert response.raw["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert response.additional_kwargs["cached_tokens"] > 0
    fresh = ToolACELLM(model=tiny_model_path, max_new_tokens=2, reuse_prefix=False)
    assert fresh.chat([user("Cache me too.")]).additional_kwargs["cached_tokens"] == 0


def test_18_2_trim_messages_counts_agent_histories(tiny_model_path: str) -> None:
    """trim_messages counts partial, reversed lists: tool results before their calls, or none."""
    llm = ChatToolACE(model=tiny_model_path)
    call = AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "1"}])
    result = ToolMessage("sunny", tool_call_id="1")
    history = [
        HumanMessage("Weather in Paris?"),
        call,
        result,
        AIMessage("Sunny."),
        HumanMessage("Thanks!"),
    ]
    assert llm.get_num_tokens_from_messages([]) == 0
    assert llm.get_num_tokens_from_messages([result, call]) > 0
    exact = llm.get_num_tokens_from_messages(history)
    assert exact == llm.get_num_tokens_from_messages(
        [*history[:2], result.model_copy(update={"name": "get_weather"}), *history[3:]]
    )
    budget = llm.get_num_tokens_from_messages(history[-2:])
    trimmed = trim_messages(history, max_tokens=budget, token_counter=llm, strategy="last")
    assert trimmed == history[-2:]


def test_pickled_adapters_load_again_when_used(tiny_model_path: str) -> None:
    import pickle

    for adapter in (ChatToolACE(model=tiny_model_path).load(), ToolACELLM(model=tiny_model_path)):
        restored: Any = pickle.loads(pickle.dumps(adapter))
        assert restored.model == tiny_model_path and not restored._slot.backends
