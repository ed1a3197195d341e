"""Prompt text and token ids from a checkpoint's tokenizer, without torch or model weights.

Both backends encode through :class:`PromptEncoder`: the local engine feeds the ids to
``generate`` and the remote backend sends the same ids to the server, so the two see identical
prompts, and text inside message content never becomes a control token in either.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from toolace_integrations.errors import ModelLoadError
from toolace_integrations.prompt import TOOLACE_CHAT_TEMPLATE

logger = logging.getLogger(__name__)

_CONTENT_MARK = re.compile("\ue000(\\d+)\ue001")


def offline_advice(model: str) -> str:
    """What to do when ``model`` cannot be loaded."""
    return (
        f"Could not load {model!r}. If the weights are on this machine, pass the folder "
        "path as `model=`; to load from the Hugging Face cache without network access set "
        "HF_HUB_OFFLINE=1 after downloading once (e.g. `hf download Team-ACE/ToolACE-8B`)."
    )


def load_tokenizer(model: str, revision: str | None = None) -> Any:
    """The tokenizer of ``model``, with ToolACE's chat template when it lacks a Llama-3 one."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{offline_advice(model)} Cause: {error}") from error
    template = tokenizer.chat_template
    if not isinstance(template, str) or "<|start_header_id|>" not in template:
        logger.warning(
            "Tokenizer of %r has no Llama-3 chat template; using ToolACE's bundled template.",
            model,
        )
        tokenizer.chat_template = TOOLACE_CHAT_TEMPLATE
    return tokenizer


class PromptEncoder:
    """Renders role/content messages with the chat template and encodes them safely.

    Thread-safe: the fast tokenizer applies ``split_special_tokens`` by flipping shared state,
    so tokenization runs under a lock.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._lock = threading.Lock()

    def prompt_text(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The full prompt text the chat template renders for ``messages``."""
        text: str = self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )
        return text

    def encode(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Token ids of the prompt; message content never turns into control tokens.

        The chat template renders placeholders for each content; the template's own text is
        tokenized with special tokens, each content with ``split_special_tokens=True``, so text
        such as ``<|eot_id|>`` inside a tool result stays plain text and cannot forge a turn.
        """
        marked = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
        template_text = self.prompt_text(marked)
        ids: list[int] = []
        position = 0
        for match in _CONTENT_MARK.finditer(template_text):
            ids += self.tokenize(template_text[position : match.start()], split_special=False)
            content = messages[int(match.group(1))]["content"]
            ids += self.tokenize(content, split_special=True)
            position = match.end()
        ids += self.tokenize(template_text[position:], split_special=False)
        return ids

    def tokenize(self, text: str, *, split_special: bool) -> list[int]:
        """Ids of ``text`` alone; ``split_special`` keeps special-token text plain."""
        if not text:
            return []
        with self._lock:
            ids: list[int] = self.tokenizer(  # verbose=False: the engine reports long prompts
                text, add_special_tokens=False, split_special_tokens=split_special, verbose=False
            )["input_ids"]
        return ids
