"""Prompt text and token ids from a checkpoint's tokenizer, without torch or model weights.

Both backends encode through :class:`PromptEncoder`: the local engine feeds the ids to
``generate`` and the remote backend sends the same ids to the server, so the two see identical
prompts, and text inside message content never becomes a control token in either. Every piece of
text anyone encodes (prompts, token counts, the budget closer's closing text, training dialogs)
goes through the tokenizer's :class:`TextEncoder`, whose state never changes once built.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from toolace_integrations.errors import ModelLoadError
from toolace_integrations.format.profiles import TOOLACE, PromptProfile
from toolace_integrations.format.prompt import PromptError

_CONTENT_MARK = re.compile("\ue000(\\d+)\ue001")


def offline_advice(model: str) -> str:
    """What to do when ``model`` cannot be loaded."""
    return (
        f"Could not load {model!r}. If the weights are on this machine, pass the folder "
        "path as `model=`; to load from the Hugging Face cache without network access set "
        "HF_HUB_OFFLINE=1 after downloading once (e.g. `hf download Team-ACE/ToolACE-8B`)."
    )


class _NoTorchNotice(logging.Filter):
    """Drops transformers' import-time "PyTorch was not found" notice: tokenizers need no torch."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("PyTorch was not found.")


_NO_TORCH_NOTICE = _NoTorchNotice()


def load_tokenizer(model: str, revision: str | None = None) -> Any:
    """The tokenizer of ``model``, as the checkpoint ships it (chat template included).

    ``HF_HUB_OFFLINE`` is read now (huggingface_hub reads it once, at its import): when set, a
    tokenizer missing from the cache fails at once instead of after retrying the network.
    """
    logging.getLogger("transformers").addFilter(_NO_TORCH_NOTICE)  # once: the same filter
    # The submodule itself, not ``from transformers import``: its import lock makes concurrent
    # first loads wait for one another, where the package's lazy attribute lookup lets the
    # others fail with an ImportError while the first is still importing.
    from transformers.models.auto.tokenization_auto import AutoTokenizer

    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            model, revision=revision, trust_remote_code=False, local_files_only=offline
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{offline_advice(model)} Cause: {error}") from error
    return tokenizer


@dataclass(frozen=True, eq=False)
class TextEncoder:
    """Token ids of text, from two private copies of a fast tokenizer that nobody reconfigures.

    transformers applies ``split_special_tokens`` by setting a flag on the tokenizer's shared
    Rust backend before each encode, so any other thread encoding with that tokenizer may get
    the other setting (special-token text in user content turning into real control tokens),
    and a fork in the middle leaves the child waiting for ever on the backend's lock. Here each
    setting has its own copy of the backend, configured once before anyone can use it: encoding
    only reads them, so any number of threads and forked children may share one encoder.

    Use :func:`text_encoder` to get the one encoder of a tokenizer.

    Notes:
        The two copies cost memory: about 90 MB for Llama-3.1's 128,256-token vocabulary.

    Attributes:
        content: Keeps special-token text as plain text (message content, model output).
        template: Reads special-token text as control tokens (a chat template's own text).
    """

    content: Any
    template: Any

    @classmethod
    def of(cls, tokenizer: Any) -> TextEncoder:
        """The encoder of a transformers fast tokenizer (its ``backend_tokenizer`` copied twice).

        Raises:
            ModelLoadError: the tokenizer has no fast (``tokenizers``) backend.
        """
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not hasattr(backend, "to_str"):
            raise ModelLoadError(
                f"{type(tokenizer).__name__} has no fast tokenizer backend, which "
                "toolace-integrations needs to keep special-token text in messages plain. Load "
                "a checkpoint that ships tokenizer.json (ToolACE-8B does), or convert the "
                "tokenizer with transformers' convert_slow_tokenizer and save it."
            )
        serialized = backend.to_str()
        return cls(_private_copy(serialized, True), _private_copy(serialized, False))

    def content_ids(self, text: str) -> list[int]:
        """Ids of ``text`` with special-token text kept plain (``<|eot_id|>`` is just text)."""
        ids: list[int] = self.content.encode(text, add_special_tokens=False).ids
        return ids

    def template_ids(self, text: str) -> list[int]:
        """Ids of ``text`` with special-token text read as the control tokens it spells."""
        ids: list[int] = self.template.encode(text, add_special_tokens=False).ids
        return ids


def _private_copy(serialized: str, encode_special_tokens: bool) -> Any:
    """A new Rust tokenizer from ``serialized``, set up for one setting before it is shared."""
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(serialized)
    copy.no_truncation()
    copy.no_padding()
    copy.encode_special_tokens = encode_special_tokens
    return copy


_text_encoders: weakref.WeakKeyDictionary[Any, TextEncoder] = weakref.WeakKeyDictionary()


def text_encoder(tokenizer: Any) -> TextEncoder:
    """The :class:`TextEncoder` of ``tokenizer``, built on first use and kept while it lives.

    Notes:
        Tokens added to ``tokenizer`` after its first use are not seen by its encoder.

    Raises:
        ModelLoadError: the tokenizer has no fast (``tokenizers``) backend.
    """
    encoder = _text_encoders.get(tokenizer)
    if encoder is None:  # two threads may both build one; the first stored is kept
        encoder = _text_encoders.setdefault(tokenizer, TextEncoder.of(tokenizer))
    return encoder


class PromptEncoder:
    """Renders role/content messages in a chat layout and encodes them safely.

    The layout is the prompt profile's, passed with each call (ToolACE-8B's by default: the one
    BFCL used when it scored it, plain Llama-3 headers, no "Cutting Knowledge Date" lines, tool
    results under ``ipython``), whatever template the checkpoint ships.
    ``use_checkpoint_template=True`` renders with the checkpoint's own template instead; the
    ids are then exactly the tokenization of that template's rendering, and a conversation
    whose content holds special-token text is refused (that text would become control tokens).

    Thread-safe and fork-safe without locks: it encodes through the tokenizer's
    :class:`TextEncoder` (``text``), which nothing reconfigures.

    Raises:
        PromptError: ``use_checkpoint_template`` with a tokenizer that has no chat template.
        ModelLoadError: the tokenizer has no fast (``tokenizers``) backend.
    """

    def __init__(self, tokenizer: Any, *, use_checkpoint_template: bool = False) -> None:
        self.tokenizer = tokenizer
        self.text = text_encoder(tokenizer)
        self.use_checkpoint_template = use_checkpoint_template
        self.special_tokens = _special_tokens(tokenizer)
        self._template: str | None = None
        if use_checkpoint_template:
            template = getattr(tokenizer, "chat_template", None)
            if not isinstance(template, str) or not template:
                raise PromptError(
                    "use_checkpoint_template=True, but the checkpoint's tokenizer has no single "
                    "chat template. Use the default layout (BFCL's), or set "
                    "tokenizer.chat_template."
                )
            self._template = template

    def prompt_text(
        self, messages: Sequence[Mapping[str, str]], profile: PromptProfile = TOOLACE
    ) -> str:
        """The full prompt text the chat layout renders for ``messages``."""
        text: str = self.tokenizer.apply_chat_template(
            list(messages),
            chat_template=self._template or profile.chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )
        return text

    def encode(
        self, messages: Sequence[Mapping[str, str]], profile: PromptProfile = TOOLACE
    ) -> list[int]:
        """Token ids of the prompt; message content never turns into control tokens.

        The profile's layout: the template renders placeholders for each content; the template's
        own text is tokenized with special tokens, each content with special-token text kept
        plain (:meth:`TextEncoder.content_ids`), so text such as ``<|eot_id|>`` inside a tool
        result stays plain text and cannot forge a turn. For stripped contents without
        special-token text this equals tokenizing the whole rendered text.

        Raises:
            PromptError: with ``use_checkpoint_template``, content holds special-token text or
                the template turned content into special tokens.
        """
        if self.use_checkpoint_template:
            return self._encode_whole(messages)
        marked = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
        template_text = self.prompt_text(marked, profile)
        ids: list[int] = []
        position = 0
        for match in _CONTENT_MARK.finditer(template_text):
            ids += self.text.template_ids(template_text[position : match.start()])
            ids += self.text.content_ids(messages[int(match.group(1))]["content"])
            position = match.end()
        ids += self.text.template_ids(template_text[position:])
        return ids

    def _encode_whole(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Tokenize the checkpoint template's own rendering, refusing forged control tokens."""
        specials = sorted(self.special_tokens, key=len, reverse=True)
        for index, message in enumerate(messages):
            content = message.get("content", "")
            found = [token for token in specials if token in content]
            if found:
                raise PromptError(
                    f"Message {index} ({message.get('role')}) contains special-token text "
                    f"{min(found, key=content.index)!r}. The checkpoint's own template cannot "
                    "keep it plain text (its rendering is tokenized whole); use the default layout "
                    "(use_checkpoint_template=False), which does."
                )
        text = self.prompt_text(messages)
        neutral = [{**m, "content": "x"} for m in messages]
        if _count(text, specials) != _count(self.prompt_text(neutral), specials):
            raise PromptError(
                "The checkpoint's chat template turns message content into special tokens, "
                "which could forge turns; use the default layout (use_checkpoint_template=False)."
            )
        return self.text.template_ids(text)


def _special_tokens(tokenizer: Any) -> frozenset[str]:
    """The tokenizer's special and control tokens, as text."""
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    specials = [t for t in tokenizer.all_special_tokens if t]
    return frozenset(specials + [str(t) for t in added if getattr(t, "special", False)])


def _count(text: str, tokens: Sequence[str]) -> int:
    """Occurrences of the (longest-first) ``tokens`` in ``text``."""
    return len(re.findall("|".join(map(re.escape, tokens)), text)) if tokens else 0


@lru_cache(maxsize=16)
def cached_encoder(
    model: str, revision: str | None = None, checkpoint_template: bool = False
) -> PromptEncoder:
    """The encoder of ``model``'s tokenizer, loaded alone (no weights) once per process."""
    if checkpoint_template:  # the same tokenizer (and text encoder) as the default layout's
        tokenizer = cached_encoder(model, revision).tokenizer
    else:
        tokenizer = load_tokenizer(model, revision)
    return PromptEncoder(tokenizer, use_checkpoint_template=checkpoint_template)
