"""ChatToolACE's one-generate batch: when inputs may share it, and its LangChain callback runs."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManager, CallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from langchain_core.utils.utils import LC_ID_PREFIX


def shared_config(
    model: BaseChatModel,
    inputs: list[LanguageModelInput],
    config: RunnableConfig | list[RunnableConfig] | None,
    return_exceptions: bool,
) -> RunnableConfig | None:
    """The config every input shares when they can run as one batch, else ``None``.

    A cache or rate limiter must see each call, so they rule batching out too.
    """
    cache = model.cache if model.cache is not None else get_llm_cache() is not None
    if len(inputs) < 2 or return_exceptions or cache is not False or model.rate_limiter:
        return None
    configs = get_config_list(config, len(inputs))
    return configs[0] if all(c == configs[0] for c in configs[1:]) else None


def start_runs(
    model: BaseChatModel,
    config: RunnableConfig,
    conversations: list[list[BaseMessage]],
    stop: Any,
    kwargs: dict[str, Any],
) -> list[CallbackManagerForLLMRun]:
    """One started callback run per conversation, as ``BaseChatModel.generate`` starts them."""
    manager = CallbackManager.configure(
        config.get("callbacks"),
        model.callbacks,
        model.verbose,
        config.get("tags"),
        model.tags,
        {**config.get("metadata", {}), **model._get_ls_params(stop=stop, **kwargs)},
        model.metadata,
    )
    return manager.on_chat_model_start(
        model._serialized,
        conversations,
        invocation_params=model._get_invocation_params(stop=stop, **kwargs),
        options={"stop": stop},
        name=config.get("run_name"),
        run_id=config.get("run_id"),
        batch_size=len(conversations),
    )


def end_runs(runs: list[CallbackManagerForLLMRun], messages: list[AIMessage]) -> None:
    """Give each message its run's id and end the run with it."""
    for run, message in zip(runs, messages, strict=True):
        message.id = f"{LC_ID_PREFIX}-{run.run_id}"
        run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
