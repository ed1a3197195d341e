"""LangChain's ``BaseChatModel`` over ToolACE: ``ChatToolACE`` and the mapping of its types.

The adapter only maps LangChain's messages, tools, chunks and runs to the neutral turn of
:mod:`toolace_integrations.core.chat`; settings and backends come from
:mod:`toolace_integrations.settings`. It never imports the LlamaIndex adapter.
"""

from toolace_integrations.langchain.chat_model import ChatToolACE

__all__ = ["ChatToolACE"]
