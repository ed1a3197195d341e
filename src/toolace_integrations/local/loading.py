"""Loading a checkpoint: weights from ``from_pretrained`` with clear errors, and its end tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from toolace_integrations.core.encoding import offline_advice
from toolace_integrations.core.generation import ModelSpec
from toolace_integrations.errors import GenerationError, ModelLoadError

END_TOKENS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")


def stop_token_ids(tokenizer: Any, model: PreTrainedModel) -> tuple[int, ...]:
    """The model's end-of-sequence ids and the Llama-3 end tokens the tokenizer knows."""
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
        with _quiet_progress():
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


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """No "Loading weights" bar unless the user made transformers' logging INFO or chattier."""
    quiet = hf_logging.get_verbosity() > logging.INFO and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if quiet:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
