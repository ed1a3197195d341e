"""Issue 17: one settings base for both adapters, and imports that only point down."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from llama_index.core.base.llms.types import ChatMessage
from pydantic import ValidationError

from toolace_integrations.errors import UnknownArgumentError
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.remote import RemoteBackend
from toolace_integrations.settings import ToolACESettings

ADAPTERS = [ChatToolACE, ToolACELLM]


def _hi() -> ChatMessage:
    return ChatMessage(role="user", content="hi")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_both_adapters_take_every_field_from_the_one_base(adapter: Any) -> None:
    own = {name for name in adapter.__annotations__ if not name.startswith("_")}
    assert set(ToolACESettings.model_fields) <= set(adapter.model_fields)
    assert not own & set(ToolACESettings.model_fields)  # no field re-declared in an adapter


def test_temperature_default_is_the_same_on_both_sides() -> None:  # was None vs 0.0
    assert ChatToolACE().temperature == ToolACELLM().temperature


@pytest.mark.parametrize("top_p", [0, 1.5])
def test_top_p_bounds_are_the_same_on_both_sides(top_p: float) -> None:  # was one side only
    for adapter in ADAPTERS:
        with pytest.raises(ValidationError, match="top_p"):
            adapter(top_p=top_p)


def test_max_tokens_alias_works_on_both_sides() -> None:  # was LangChain only
    assert ChatToolACE(max_tokens=7).max_new_tokens == ToolACELLM(max_tokens=7).max_new_tokens == 7
    assert ChatToolACE(max_new_tokens=8).max_new_tokens == 8
    assert ToolACELLM(max_new_tokens=8).max_new_tokens == 8


@pytest.mark.parametrize("name", ["dtype", "torch_dtype"])
def test_dtype_and_torch_dtype_work_on_both_sides(name: str) -> None:  # was one name each
    assert ChatToolACE(**{name: "float16"}).dtype == ToolACELLM(**{name: "float16"}).dtype


def test_api_key_env_default_is_read_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLACE_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")  # was LangChain only
    for adapter in ADAPTERS:
        key = adapter().api_key
        assert key is not None and key.get_secret_value() == "from-env"


def test_unknown_call_arguments_raise_on_both_sides() -> None:  # was raise vs ignore
    with pytest.raises(UnknownArgumentError, match="temperature"):
        ChatToolACE(model="no/such-model").invoke("hi", temprature=0.5)
    with pytest.raises(UnknownArgumentError, match="temperature"):
        ToolACELLM(model="no/such-model").chat([_hi()], temprature=1)


def test_per_call_reuse_prefix_works_on_both_sides() -> None:  # was LlamaIndex only
    lc = ChatToolACE()._request([HumanMessage("hi")], None, {"reuse_prefix": False})[0]
    li = ToolACELLM()._build_request([_hi()], {"reuse_prefix": False})
    assert lc.sampling == li.sampling and not lc.sampling.reuse_prefix


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_server_settings_reach_the_remote_backend(adapter: Any, tiny_model_path: str) -> None:
    llm = adapter(
        model=tiny_model_path,
        base_url="http://127.0.0.1:9/v1",
        grammar_param="none",
        extra_body={"top_k": 3},
        batch_prompts=False,
        max_concurrency=2,
        context_window=1000,
        timeout=5,
    )
    backend = llm._backend()
    assert isinstance(backend, RemoteBackend)
    assert (backend.grammar_param, backend.extra_body) == ("none", {"top_k": 3})
    assert (backend.batch_prompts, backend.max_concurrency) == (False, 2)
    assert backend.context_window == 1000  # as set: no request to the (absent) server
    backend.close()


def _imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        ("import toolace_integrations.core.generation", {"torch", "toolace_integrations.backends"}),
        ("import toolace_integrations.remote", {"torch", "toolace_integrations.local.engine"}),
        ("import toolace_integrations.langchain", {"torch", "llama_index", "transformers"}),
        ("import toolace_integrations.llama_index", {"torch", "langchain_core", "transformers"}),
    ],
    ids=["records", "remote", "langchain", "llama_index"],
)
def test_imports_point_down_only(statement: str, absent: set[str]) -> None:
    assert not _imported_after(statement) & absent


def test_settings_round_trip_through_json_without_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOOLACE_API_KEY", "from-env")
    llm = ToolACELLM(max_tokens=9, api_key="secret", constrained_decoding=False)
    text = llm.to_json()
    assert "secret" not in text
    restored = ToolACELLM.from_json(text)
    assert (restored.max_new_tokens, restored.constrained_decoding) == (9, False)
    assert restored.api_key is not None and restored.api_key.get_secret_value() == "from-env"
    chat_model = ChatToolACE(max_tokens=9, api_key="secret")
    assert "api_key" not in chat_model.model_dump()
    assert ChatToolACE(**chat_model.model_dump()).max_new_tokens == 9
