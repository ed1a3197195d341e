"""LangChain's ChatToolACE and LlamaIndex's ToolACELLM on one checkpoint share one model."""

from typing import Any

from llama_index.core.base.llms.types import ChatMessage

from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local import engine as engine_module
from toolace_integrations.local.engine import TransformersEngine


def _engines_of(adapter: Any) -> list[TransformersEngine]:
    backends = adapter._slot.backends.values()
    return [value for value in backends if isinstance(value, TransformersEngine)]


def test_langchain_and_llama_index_share_one_loaded_model(tiny_model_path: str) -> None:
    chat_model = ChatToolACE(model=tiny_model_path, max_tokens=4)
    llm = ToolACELLM(model=tiny_model_path, max_new_tokens=4)

    assert chat_model.invoke("Hello").content is not None
    assert llm.chat([ChatMessage(role="user", content="Hello")]).message is not None

    (langchain_engine,) = _engines_of(chat_model)
    (llama_index_engine,) = _engines_of(llm)
    assert langchain_engine is llama_index_engine
    assert langchain_engine.model is llama_index_engine.model
    assert engine_module._engines[llama_index_engine.spec.cache_key()] is llama_index_engine
