"""LlamaIndex's ``FunctionCallingLLM`` over ToolACE: ``ToolACELLM`` and the mapping of its types.

The adapter only maps LlamaIndex's messages, tools and tool selections to the neutral turn of
:mod:`toolace_integrations.core.chat`; settings and backends come from
:mod:`toolace_integrations.settings`. It never imports the LangChain adapter.
"""

from toolace_integrations.llama_index.llm import NoToolCallError, ToolACELLM

__all__ = ["NoToolCallError", "ToolACELLM"]
