"""Issue 26.3: the documented spellings type-check (mypy runs ``user_script.py``) and run.

The typed constructor signatures are written beside pydantic's fields; these tests keep the
two equal, so a new field or alias cannot be missing from what a type checker accepts.
"""

from __future__ import annotations

from typing import Any

import pytest
from user_script import Forecast, chat_models, forecast, forecast_with_raw, llama_index_llms

from reliability._hooks import DTYPE, steer
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.langchain.signatures import ChatToolACEArguments
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.llama_index.llm import ToolACELLMArguments
from toolace_integrations.local.engine import ModelSpec, load_engine
from toolace_integrations.settings import ToolACEArguments, ToolACESettings, _field_names


@pytest.mark.parametrize(
    ("adapter", "arguments"),
    [
        (ToolACESettings, ToolACEArguments),
        (ChatToolACE, ChatToolACEArguments),
        (ToolACELLM, ToolACELLMArguments),
    ],
)
def test_typed_arguments_are_exactly_the_accepted_names(adapter: Any, arguments: Any) -> None:
    assert set(arguments.__optional_keys__) == _field_names(adapter)


@pytest.mark.parametrize(
    "names",
    [
        ("model", "model_name"),
        ("dtype", "torch_dtype"),
        ("max_new_tokens", "max_tokens"),
        ("base_url", "api_base"),
        ("timeout", "request_timeout"),
    ],
)
def test_each_spelling_of_a_setting_has_the_same_type(names: tuple[str, ...]) -> None:
    hints = ToolACEArguments.__annotations__
    assert len({hints[name] for name in names}) == 1


def test_the_documented_spellings_set_the_fields(tiny_model_path: str) -> None:
    chats, llms = chat_models(tiny_model_path), llama_index_llms(tiny_model_path)
    assert {llm.model for llm in [*chats, *llms]} == {tiny_model_path}
    assert [llm.max_new_tokens for llm in [*chats[:2], *llms[:2]]] == [16] * 4
    for keyed in (chats[0], llms[0]):
        assert keyed.api_key is not None and keyed.api_key.get_secret_value() == "sk-local"
    assert chats[1].stop == ["\n"] and chats[2].dtype == "float32"


def test_structured_output_returns_the_model_class(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=48)
    answer = '[Forecast(city="Paris", sunny=True)]'  # what a model that answers would write
    with steer(load_engine(ModelSpec(model=tiny_model_path, dtype=DTYPE)), answer, answer):
        assert forecast(llm, "Weather in Paris?") == Forecast(city="Paris", sunny=True)
        raw, parsed = forecast_with_raw(llm, "Weather in Paris?")
    assert raw.type == "ai" and parsed == Forecast(city="Paris", sunny=True)
