"""ToolACE-8B as a local, strict function-calling model for LangChain and LlamaIndex.

``ChatToolACE`` (LangChain) loads only when first touched, so a LlamaIndex user never imports
LangChain; the LlamaIndex LLM lives in :mod:`toolace_integrations.llama_index`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from toolace_integrations.errors import ToolACEError
from toolace_integrations.format.parsing import (
    InvalidCall,
    ParsedOutput,
    ToolCall,
    parse_tool_calls,
)

if TYPE_CHECKING:
    from toolace_integrations.langchain import ChatToolACE

try:
    __version__ = version("toolace-integrations")
except PackageNotFoundError:
    __version__ = "0+unknown"

__all__ = [
    "ChatToolACE",
    "InvalidCall",
    "ParsedOutput",
    "ToolACEError",
    "ToolCall",
    "__version__",
    "parse_tool_calls",
]


def __getattr__(name: str) -> Any:
    if name == "ChatToolACE":
        from toolace_integrations.langchain import ChatToolACE

        return ChatToolACE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
