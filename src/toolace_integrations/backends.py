"""From adapter settings to a backend: the top of the core, imported only by the adapters.

:func:`connect` turns settings into the local transformers engine (loaded once per normalized
:class:`~toolace_integrations.core.generation.ModelSpec`) or a client of a vLLM server. The helpers
beside it answer questions that need only the checkpoint's small files, never its weights: the
prompt encoder (tokenizer) and the context window from ``config.json``. Nothing here imports
torch until a local engine is asked for.
"""

from __future__ import annotations

import gc
import json
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toolace_integrations.core.encoding import PromptEncoder, cached_encoder
from toolace_integrations.core.generation import Backend, ModelSpec, resolve_model
from toolace_integrations.errors import InvalidSettingError

__all__ = [
    "checkpoint_context_window",
    "connect",
    "prompt_encoder",
    "release",
    "require_local_grammar",
    "server_encoder",
]


def connect(
    model: str,
    *,
    revision: str | None = None,
    dtype: str | None = None,
    device_map: str | Mapping[str, Any] | None = None,
    attn_implementation: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    tokenizer: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
    grammar_param: str | None = None,
    extra_body: Mapping[str, Any] | None = None,
    batch_prompts: bool | None = None,
    max_concurrency: int | None = None,
    context_window: int | None = None,
) -> Backend:
    """The backend adapters generate with; the one place their settings become a backend.

    Without ``base_url`` this is the process-wide local engine for the normalized checkpoint
    settings (see :meth:`ModelSpec.normalized`), loaded on first use and shared by every adapter
    whose settings load the same weights. With ``base_url`` it is a client of that OpenAI-compatible
    server (vLLM), rendering and parsing prompts locally; ``grammar_param``, ``extra_body``,
    ``batch_prompts``, ``max_concurrency`` and ``context_window`` apply to it only (``None``
    keeps the client's default).

    Raises:
        InvalidSettingError: ``tokenizer`` without ``base_url`` (the local engine uses the
            checkpoint's own tokenizer).
    """
    if base_url is None:
        if tokenizer is not None:
            raise InvalidSettingError(
                f"tokenizer={tokenizer!r} is for a model on a server (base_url=...), whose "
                "served name is not a checkpoint. Without base_url the model folder's own "
                "tokenizer is used: drop tokenizer=."
            )
        load_options = dict(model_kwargs or {})
        spec = ModelSpec(
            model=resolve_model(model),  # a missing folder fails here, before torch loads
            revision=revision,
            dtype=dtype,
            device_map=device_map,
            attn_implementation=attn_implementation,
            quantization_config=load_options.pop("quantization_config", None),
            model_kwargs=load_options,
        )
        from toolace_integrations.local.engine import load_engine

        return load_engine(spec)
    from toolace_integrations.remote import RemoteBackend

    options: dict[str, Any] = {
        "timeout": timeout,
        "max_retries": max_retries,
        "grammar_param": grammar_param,
        "extra_body": extra_body,
        "batch_prompts": batch_prompts,
        "max_concurrency": max_concurrency,
        "context_window": context_window,
    }
    remote = {name: value for name, value in options.items() if value is not None}
    return RemoteBackend(
        base_url, model, tokenizer=tokenizer, revision=revision, api_key=api_key, **remote
    )


def require_local_grammar() -> None:
    """Raise now when the local engine's grammar engine (xgrammar) is not installed.

    Adapters call it where they learn that a local model will constrain tool calls (binding
    tools), so a missing extra fails there, before weights load or an agent starts.

    Raises:
        GrammarUnavailableError: xgrammar is missing; the message says both ways out.
    """
    from toolace_integrations.local.grammar import require_xgrammar

    require_xgrammar()


def prompt_encoder(
    model: str, revision: str | None = None, *, checkpoint_template: bool = False
) -> PromptEncoder:
    """The checkpoint's tokenizer, loaded alone (no weights), cached per model and revision."""
    return cached_encoder(resolve_model(model), revision, checkpoint_template)


def server_encoder(backend: Backend, *, checkpoint_template: bool = False) -> PromptEncoder:
    """The tokenizer a server's client encodes with (its ``tokenizer``, or the served root's)."""
    from toolace_integrations.remote import RemoteBackend

    if not isinstance(backend, RemoteBackend):
        raise TypeError(f"{backend!r} is not a server's client")
    return backend.prompt_encoder(checkpoint_template)


def checkpoint_context_window(model: str, revision: str | None = None) -> int | None:
    """``max_position_embeddings`` from the checkpoint's ``config.json``, without its weights.

    Reads a local folder, or the Hugging Face cache for a Hub id (no network); ``None`` when
    the file is not on this machine or does not say.
    """
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json", revision=revision)
        except ValueError:  # not a valid repo id
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = config.get("text_config") or config
    window = config.get("max_position_embeddings")
    return int(window) if isinstance(window, int) and window > 0 else None


_users: dict[int, weakref.WeakSet[Any]] = {}
_users_lock = threading.Lock()


def attach(backend: Backend, user: Any) -> None:
    """Record that ``user`` (an adapter's backend slot) uses ``backend``."""
    with _users_lock:
        _users.setdefault(id(backend), weakref.WeakSet()).add(user)


def release(backend: Backend, user: Any) -> bool:
    """``user`` is done with ``backend``; free it if nothing else uses it. Returns if freed.

    A local engine leaves the process-wide registry (its weights go once the last reference
    does); a server client closes its connections.
    """
    with _users_lock:
        users = _users.get(id(backend))
        if users is not None:
            users.discard(user)
            if len(users):
                return False
            del _users[id(backend)]
    close = getattr(backend, "close", None)
    if close is not None:
        close()
    else:
        from toolace_integrations.local.engine import unload_engine

        unload_engine(backend)
        gc.collect()
    return True
