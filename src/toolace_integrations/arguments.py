"""The typed spelling of the settings' constructor, for users' IDEs and type checkers.

:class:`~toolace_integrations.settings.ToolACESettings` declares every field once (pydantic
validates them and accepts the aliases); this TypedDict lists every spelling the constructor
accepts, typed as a user writes it, so ``ChatToolACE(model_name=..., api_key="...")`` type-checks.
``tests/typing`` keeps its keys equal to the accepted names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr
from typing_extensions import TypedDict

from toolace_integrations.format.profiles import PromptFormat

__all__ = ["ToolACEArguments"]


class ToolACEArguments(TypedDict, total=False):
    """Every accepted constructor spelling, typed as validated (pydantic shows one per field).

    The adapters' typed ``__init__`` unpacks it; ``tests/typing`` keeps it equal to the names.
    """

    model: str
    model_name: str
    revision: str | None
    tokenizer: str | None
    dtype: str | None
    torch_dtype: str | None
    device_map: str | dict[str, Any] | None
    attn_implementation: str | None
    model_kwargs: dict[str, Any]
    max_new_tokens: int
    max_tokens: int
    temperature: float | None
    top_p: float | None
    stop: str | list[str] | None
    seed: int | None
    cache_implementation: str | None
    reuse_prefix: bool
    prompt_format: PromptFormat
    system_template: str | None
    constrained_decoding: bool
    use_checkpoint_template: bool
    context_window: int | None
    base_url: str | None
    api_base: str | None
    timeout: float | None
    request_timeout: float | None
    max_retries: int | None
    api_key: str | SecretStr | None
    grammar_param: Literal["structured_outputs", "none"] | None
    extra_body: dict[str, Any] | None
    batch_prompts: bool | None
    max_concurrency: int | None
