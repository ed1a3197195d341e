"""A bounded store of key/value caches, reused for prompts that share a token prefix.

An agent re-sends the same system prompt and tool list on every step, each prompt extending the
last. After each generation the engine keeps the model's key/value cache for the prompt and the
answer; the next prompt then needs prefill only for the tokens past the longest shared prefix.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, PretrainedConfig


@dataclass(frozen=True)
class CacheHit:
    """A cache ready to pass to ``generate`` and how many prompt tokens it already covers."""

    cache: DynamicCache
    reused_tokens: int


def _cache_bytes(cache: DynamicCache) -> int:
    layers: list[Any] = list(cache.layers)
    return sum(
        int(t.numel() * t.element_size())
        for layer in layers
        if layer.is_initialized
        for t in (layer.keys, layer.values)
    )


class PrefixCache:
    """Least-recently-used key/value caches keyed by the token ids they cover.

    Args:
        config: The model's config, used to build fresh caches.
        max_entries: How many caches to keep.
        max_bytes: How much key/value memory they may hold together.
        min_reuse_tokens: Shorter shared prefixes are not worth copying a cache for.
    """

    def __init__(
        self,
        config: PretrainedConfig,
        *,
        max_entries: int = 4,
        max_bytes: int = 2 * 1024**3,
        min_reuse_tokens: int = 16,
    ) -> None:
        self._config = config
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._min_reuse_tokens = min_reuse_tokens
        self._entries: OrderedDict[tuple[int, ...], tuple[DynamicCache, int, int]] = OrderedDict()
        self._lock = threading.Lock()
        _live.add(self)

    def _after_fork(self) -> None:
        """In a forked child: a lock another parent thread held would never be released."""
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        """Key/value memory held now."""
        with self._lock:
            return sum(size for _, size, _ in self._entries.values())

    def lookup(self, prompt_ids: Sequence[int], *, take: bool = True) -> CacheHit | None:
        """A private cache sharing the longest prefix with ``prompt_ids``.

        At least the prompt's last token is always left for prefill, so ``generate`` has logits.
        When the prompt continues the conversation an entry was stored for (it reuses that
        entry's whole prompt) and ``take`` is set, the entry is handed over, cropped, instead of
        copied: the cache stored after this generation supersedes it. Otherwise the entry is
        copied and kept (rows of one batch copy, since several may share an entry).
        """
        with self._lock:
            best_key, best_length = None, 0
            for key in self._entries:
                length = _common_prefix_length(key, prompt_ids)
                if length > best_length:
                    best_key, best_length = key, length
            reused = min(best_length, len(prompt_ids) - 1)
            if best_key is None or reused < self._min_reuse_tokens:
                return None
            source, _, prompt_length = self._entries[best_key]
            if take and reused >= prompt_length:
                del self._entries[best_key]
                extra = source.get_seq_length() - reused
                if extra:
                    source.crop(-extra)
                return CacheHit(source, reused)
            self._entries.move_to_end(best_key)
            cache = DynamicCache(config=self._config)
            layers: list[Any] = list(source.layers)
            for index, layer in enumerate(layers):
                cache.update(
                    layer.keys[..., :reused, :].clone(),
                    layer.values[..., :reused, :].clone(),
                    index,
                )
            return CacheHit(cache, reused)

    def store(
        self, token_ids: Sequence[int], cache: DynamicCache, *, prompt_tokens: int | None = None
    ) -> None:
        """Keep ``cache``, which holds keys and values for exactly ``token_ids``.

        ``prompt_tokens`` is how many of them were the prompt (the rest generated); a later
        prompt reusing all of those continues this conversation and takes the entry over.
        """
        size = _cache_bytes(cache)
        if size > self._max_bytes or self._max_entries == 0:
            return
        key = tuple(token_ids)
        with self._lock:
            self._entries.pop(key, None)
            for other in [k for k in self._entries if k == key[: len(k)]]:
                del self._entries[other]
            prompt_length = len(key) if prompt_tokens is None else prompt_tokens
            self._entries[key] = (cache, size, prompt_length)
            while len(self._entries) > self._max_entries or (
                sum(s for _, s, _ in self._entries.values()) > self._max_bytes
            ):
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every cache."""
        with self._lock:
            self._entries.clear()


_live: weakref.WeakSet[PrefixCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_live):
        cache._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    limit = min(len(a), len(b))
    if limit == 0:
        return 0
    left = torch.tensor(a[:limit]) != torch.tensor(b[:limit])
    mismatch = torch.nonzero(left)
    return int(mismatch[0]) if len(mismatch) else limit
