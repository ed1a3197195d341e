"""What type checkers see of ``ChatToolACE``: its constructor arguments and structured answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from langchain_core.caches import BaseCache
from langchain_core.callbacks import Callbacks
from langchain_core.language_models import ModelProfile
from langchain_core.messages import BaseMessage
from langchain_core.rate_limiters import BaseRateLimiter
from typing_extensions import TypedDict

from toolace_integrations.settings import ToolACEArguments

_Parsed = TypeVar("_Parsed")


class ChatToolACEArguments(ToolACEArguments, total=False):
    """The shared settings' spellings plus ``BaseChatModel``'s own fields and ``streaming``."""

    streaming: bool
    stream_usage: bool
    name: str | None
    cache: BaseCache | bool | None
    verbose: bool
    callbacks: Callbacks
    tags: list[str] | None
    metadata: dict[str, Any] | None
    custom_get_token_ids: Callable[[str], list[int]] | None
    rate_limiter: BaseRateLimiter | None
    disable_streaming: bool | Literal["tool_calling"]
    output_version: str | None
    profile: ModelProfile | None


class StructuredAnswer(TypedDict, Generic[_Parsed]):
    """``with_structured_output(..., include_raw=True)``'s answer.

    Attributes:
        raw: The model's message.
        parsed: The answer as the schema's type; ``None`` when it failed to parse.
        parsing_error: Why it failed, else ``None``.
    """

    raw: BaseMessage
    parsed: _Parsed | None
    parsing_error: BaseException | None
