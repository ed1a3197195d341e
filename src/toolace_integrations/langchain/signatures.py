"""What type checkers see of ``ChatToolACE``'s constructor: every accepted argument, typed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from langchain_core.caches import BaseCache
from langchain_core.callbacks import Callbacks
from langchain_core.language_models import ModelProfile
from langchain_core.rate_limiters import BaseRateLimiter

from toolace_integrations.settings import ToolACEArguments


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
