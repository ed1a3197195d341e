"""Issue 26.10: ``init_chat_model`` cannot name ToolACE; the README's alternatives work.

LangChain's ``init_chat_model`` reads providers from a fixed private table
(``langchain.chat_models.base._BUILTIN_PROVIDERS``) with no way to add one, so the README says to
construct ``ChatToolACE`` directly, and to choose it (or its settings) at run time with
LangChain's ``configurable_alternatives`` / ``configurable_fields``, as ``init_chat_model``'s
configurable models do. If LangChain gains an extension point, the first test says so.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain.chat_models import init_chat_model
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import ConfigurableField

from toolace_integrations import ChatToolACE


class InvocationParams(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.seen.append(kwargs["invocation_params"])


def test_init_chat_model_has_no_way_to_name_toolace(tiny_model_path: str) -> None:
    with pytest.raises(ValueError, match="Unsupported provider='toolace'"):
        init_chat_model(tiny_model_path, model_provider="toolace")


def test_configurable_alternatives_choose_toolace_at_run_time(tiny_model_path: str) -> None:
    other = GenericFakeChatModel(messages=iter([AIMessage("from the other model")]))
    llm = other.configurable_alternatives(
        ConfigurableField(id="llm"),
        default_key="other",
        toolace=ChatToolACE(model=tiny_model_path, max_tokens=4),
    )
    chosen = llm.with_config(configurable={"llm": "toolace"}).invoke("Hi")
    assert isinstance(chosen, AIMessage)
    assert chosen.response_metadata["model_provider"] == "toolace"
    assert llm.invoke("Hi").content == "from the other model"


def test_configurable_fields_set_toolace_settings_at_run_time(tiny_model_path: str) -> None:
    llm = ChatToolACE(model=tiny_model_path, max_tokens=4).configurable_fields(
        max_new_tokens=ConfigurableField(id="max_tokens"),
        temperature=ConfigurableField(id="temperature"),
    )
    params = InvocationParams()
    configurable = {"max_tokens": 2, "temperature": 0.5}
    llm.with_config(configurable=configurable, callbacks=[params]).invoke("Hi")
    assert params.seen[-1]["max_new_tokens"] == 2 and params.seen[-1]["temperature"] == 0.5
