"""Loading a checkpoint: weights from ``from_pretrained`` with clear errors, and its end tokens.

A Hub checkpoint whose weights are not in the cache yet is downloaded first with progress bars
(files and bytes; ``HF_HUB_DISABLE_PROGRESS_BARS=1`` hides them), whatever switch turned the
library's own bars off; loading from the cache stays quiet unless transformers' logging is at
INFO. The quiet load is per thread (a context variable that one transformers tqdm hook reads),
never a library-wide switch flipped around the call.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from toolace_integrations.core.encoding import offline_advice
from toolace_integrations.core.generation import ModelSpec
from toolace_integrations.errors import GenerationError, ModelLoadError
from toolace_integrations.format.profiles import END_TOKENS

# What from_pretrained reads of a safetensors checkpoint (transformers' file names); a repository
# with other weight files gets them from from_pretrained itself.
WEIGHT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
)
_LOADING_QUIETLY: ContextVar[bool] = ContextVar("toolace_loading_quietly", default=False)


def stop_token_ids(tokenizer: Any, model: PreTrainedModel) -> tuple[int, ...]:
    """The model's end-of-sequence ids and the profiles' end tokens the tokenizer knows."""
    ids: list[int] = []
    eos = model.generation_config.eos_token_id
    ids += eos if isinstance(eos, list) else [eos] if eos is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[token] for token in END_TOKENS if token in vocab]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(int(i) for i in ids))


def load_model(spec: ModelSpec) -> PreTrainedModel:
    """The weights for ``spec``; every failure becomes a ModelLoadError saying what to do."""
    cuda = torch.cuda.is_available()
    known_dtype = isinstance(getattr(torch, spec.dtype or "", None), torch.dtype)
    if spec.dtype not in (None, "auto") and not known_dtype:
        raise ModelLoadError(
            f"dtype={spec.dtype!r} is not a torch dtype; use 'bfloat16' (GPU), 'float16', "
            "'float32' (CPU) or 'auto' (the checkpoint's own)."
        )
    if not cuda and "cuda" in json.dumps(spec.device_map, default=str):
        raise ModelLoadError(
            f"device_map={spec.device_map!r} asks for CUDA, but this torch build sees no CUDA GPU "
            f"(torch {torch.__version__}). Install a CUDA build of torch, or leave device_map "
            "unset to run on the CPU."
        )
    options: dict[str, Any] = {
        "dtype": spec.dtype or ("bfloat16" if cuda else "float32"),
        "device_map": spec.device_map or ("auto" if cuda else None),
        "trust_remote_code": False,
        **spec.model_kwargs,
    }
    for name in ("revision", "attn_implementation", "quantization_config"):
        if getattr(spec, name) is not None:
            options[name] = getattr(spec, name)
    try:
        download_missing_weights(spec)
        with _quiet_loading():
            model: PreTrainedModel = AutoModelForCausalLM.from_pretrained(spec.model, **options)
    except torch.OutOfMemoryError as error:
        raise GenerationError(OOM_ADVICE) from error
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{offline_advice(spec.model)} Cause: {error}") from error
    except (TypeError, ImportError) as error:  # a load option nothing accepts; a missing extra
        raise ModelLoadError(
            f"Loading {spec.model!r} failed on its options ({type(error).__name__}: {error}). "
            "Check model_kwargs (and quantization_config), and install any package named here."
        ) from error
    except Exception as error:  # e.g. safetensors' SafetensorError on corrupt weights
        raise ModelLoadError(
            f"Could not load the weights of {spec.model!r} ({type(error).__name__}: {error}). "
            "The files may be corrupt or incomplete: download them again."
        ) from error
    return model


OOM_ADVICE = (
    "The GPU ran out of memory. Load the model 4-bit or 8-bit "
    "(model_kwargs={'quantization_config': BitsAndBytesConfig(load_in_4bit=True)}), lower "
    "max_new_tokens, shorten the conversation, or set device_map='auto' to spread layers."
)


def download_missing_weights(spec: ModelSpec) -> bool:
    """Download a Hub checkpoint's missing weight files into the cache, showing progress.

    A local folder, ``local_files_only``, offline mode, or a Hub that cannot be asked leave it
    to ``from_pretrained`` (which then loads from the cache or says what is missing). The
    ``cache_dir`` and ``token`` of ``model_kwargs`` apply, as ``from_pretrained`` uses them.

    Returns:
        Whether anything was downloaded.
    """
    if Path(spec.model).is_dir() or spec.model_kwargs.get("local_files_only"):
        return False
    from huggingface_hub import constants, snapshot_download
    from tqdm.auto import tqdm

    hub = {key: value for key, value in spec.model_kwargs.items() if key in ("cache_dir", "token")}
    patterns = list(WEIGHT_FILES)
    try:
        planned = snapshot_download(
            spec.model, revision=spec.revision, allow_patterns=patterns, dry_run=True, **hub
        )
    except (OSError, ValueError):  # offline, unknown or gated repo: from_pretrained explains
        return False
    if not any(file.will_download for file in planned):
        return False
    # A plain tqdm class: the Hub's own bars may be off (transformers' disable_progress_bar
    # turns them off too), but minutes of download need a bar; only the variable hides it.
    progress = None if constants.HF_HUB_DISABLE_PROGRESS_BARS else tqdm
    snapshot_download(
        spec.model, revision=spec.revision, allow_patterns=patterns, tqdm_class=progress, **hub
    )
    return True


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No transformers bar ("Loading weights") in this thread's load, unless logging is INFO."""
    quiet = hf_logging.get_verbosity() > logging.INFO
    _install_loading_bar_hook()
    token = _LOADING_QUIETLY.set(quiet)
    try:
        yield
    finally:
        _LOADING_QUIETLY.reset(token)


TqdmHook = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Any]


class _LoadingBarHook:
    """transformers' tqdm hook: an empty bar inside a quiet load, else what it did before."""

    def __init__(self) -> None:
        self.previous: TqdmHook | None = None

    def __call__(
        self, factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _LOADING_QUIETLY.get():
            return hf_logging.EmptyTqdm(*args, **kwargs)  # type: ignore[no-untyped-call]
        if self.previous is not None:
            return self.previous(factory, args, kwargs)
        return factory(*args, **kwargs)


@functools.cache
def _install_loading_bar_hook() -> None:
    """Once per process; a hook set earlier still runs, one set later replaces this one."""
    hook = _LoadingBarHook()
    hook.previous = hf_logging.set_tqdm_hook(hook)
