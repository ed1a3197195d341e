"""A user's script, type-checked by the suite's mypy run: the documented spellings must pass.

mypy --strict checks this file (pyproject ``[tool.mypy] files``); ``test_user_script.py`` beside
it runs it on the tiny model, so the same spellings are accepted at runtime too.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel
from typing_extensions import assert_type

from toolace_integrations import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM


class Forecast(BaseModel):
    """A weather forecast."""

    city: str
    sunny: bool


def chat_models(path: str) -> list[ChatToolACE]:
    """Every documented constructor spelling of ChatToolACE."""
    return [
        ChatToolACE(model=path, max_tokens=16, temperature=0.0, api_key="sk-local"),
        ChatToolACE(model_name=path, max_new_tokens=16, dtype="float32", stop="\n"),
        ChatToolACE(model=path, torch_dtype="float32", timeout=5.0, request_timeout=5.0),
        ChatToolACE(model=path, base_url=None, api_base=None, streaming=True, tags=["demo"]),
        ChatToolACE(model=path, constrained_decoding=False, reuse_prefix=False, seed=1),
    ]


def llama_index_llms(path: str) -> list[ToolACELLM]:
    """Every documented constructor spelling of ToolACELLM."""
    return [
        ToolACELLM(model=path, max_new_tokens=16, api_key="sk-local"),
        ToolACELLM(model_name=path, max_tokens=16, torch_dtype="float32", context_window=512),
        ToolACELLM(model=path, system_prompt="Be brief.", constrained_decoding=False),
    ]


def forecast_runnable(llm: ChatToolACE) -> Runnable[LanguageModelInput, Forecast]:
    """``with_structured_output(Model)`` is a Runnable that returns that model."""
    structured = llm.with_structured_output(Forecast)
    assert_type(structured, Runnable[LanguageModelInput, Forecast])
    return structured


def forecast(llm: ChatToolACE, question: str) -> Forecast:
    """A typed answer: no cast, no isinstance."""
    return forecast_runnable(llm).invoke(question)


def forecast_dict(llm: ChatToolACE, question: str) -> dict[str, Any]:
    """A JSON-schema answer is a dict."""
    schema = {"title": "Forecast", "description": "A forecast.", **Forecast.model_json_schema()}
    return llm.with_structured_output(schema).invoke(question)


def forecast_with_raw(llm: ChatToolACE, question: str) -> tuple[BaseMessage, Forecast | None]:
    """``include_raw=True`` returns the raw message beside the parsed answer."""
    answer = llm.with_structured_output(Forecast, include_raw=True).invoke(question)
    return answer["raw"], answer["parsed"]
