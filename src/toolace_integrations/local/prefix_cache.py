"""A bounded store of key/value caches, reused for prompts that share a token prefix.

An agent re-sends the same system prompt and tool list on every step, each prompt extending the
last. After each generation the engine keeps the model's key/value cache for the prompt and the
answer; the next prompt then needs prefill only for the tokens past the longest shared prefix.

Memory is counted as the storage the tensors keep alive, not the tokens they cover: a
generation's cache has room reserved for its whole token budget, and more than a little of it
(see :data:`ROOM_KEPT`) is given back before the cache is kept.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, DynamicLayer, PretrainedConfig

from toolace_integrations.core.forking import reset_after_fork

logger = logging.getLogger(__name__)

ROOM_KEPT = 1.25
"""A stored cache keeps its unused room while its storage is at most this many times what its
tokens fill: the next turn of its conversation then writes into that room without a copy. More
is given back (one copy), so that reserved room never crowds out other conversations."""


@dataclass(frozen=True)
class CacheHit:
    """A cache ready to pass to ``generate`` and how many prompt tokens it already covers.

    ``continues`` is the key of a copied entry whose whole prompt this one reuses: the cache
    stored after this generation supersedes it (see :meth:`PrefixCache.store`).
    """

    cache: DynamicCache
    reused_tokens: int
    continues: tuple[int, ...] | None = None


class RoomyLayer(DynamicLayer):
    """A cache layer with room preallocated: new tokens are written in place, not concatenated.

    ``DynamicLayer`` copies the whole cache on every token (``torch.cat``); with long tool
    prompts that copy costs more than the model step itself. Past the room it grows by doubling.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self._room_keys, self._room_values = keys, values
        self.keys, self.values = keys[..., :length, :], values[..., :length, :]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new keys and values after the cached ones; return all of them."""
        cached: Any = self.keys
        start = cached.shape[-2]
        end = start + key_states.shape[-2]
        if end > self._room_keys.shape[-2]:
            grown = max(end, 2 * self._room_keys.shape[-2])
            for name in ("_room_keys", "_room_values"):
                old = getattr(self, name)
                new = old.new_zeros((*old.shape[:2], grown, old.shape[3]))
                new[..., :start, :] = old[..., :start, :]
                setattr(self, name, new)
        self._room_keys[..., start:end, :] = key_states
        self._room_values[..., start:end, :] = value_states
        self.keys = self._room_keys[..., :end, :]
        self.values = self._room_values[..., :end, :]
        return self.keys, self.values


def copy_rows(
    cache: DynamicCache, config: PretrainedConfig, index: int, start: int, length: int
) -> DynamicCache:
    """A cache of its own for row ``index`` of ``cache``: tokens ``start`` to ``start + length``."""
    own = DynamicCache(config=config)
    layers: list[Any] = list(cache.layers)
    for number, layer in enumerate(layers):
        if layer.is_initialized:
            own.layers[number] = RoomyLayer(
                layer.keys[index : index + 1, :, start : start + length].clone(),
                layer.values[index : index + 1, :, start : start + length].clone(),
                length,
            )
    return own


class BatchMemory:
    """The keys and values of batch caches, kept from one batch to the next on CPU.

    A batch's cache is tens of megabytes per layer. On CPU memory that large comes fresh from
    the operating system on every allocation, and its page faults cost more than the copies
    into it; CUDA's caching allocator already reuses freed blocks, so there nothing is kept.
    At most ``max_bytes`` is kept; larger batches get memory of their own. Whoever asks for
    tensors must have stopped using the last ones: the runner gives every row a copy of its own
    before a batch ends, and calls :meth:`release` when one fails.
    """

    def __init__(self, device: torch.device, max_bytes: int) -> None:
        self._keep = device.type == "cpu"
        self._max_bytes = max_bytes
        self._flat: list[torch.Tensor] = []

    def tensors(
        self, count: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> list[torch.Tensor]:
        """``count`` uninitialised tensors of ``shape``, on memory of earlier batches if it fits."""
        size = math.prod(shape)
        most = self._max_bytes // (count * dtype.itemsize)  # elements per tensor
        if not self._keep or size > most:
            return [torch.empty(shape, dtype=dtype, device=device) for _ in range(count)]
        kept = self._flat
        same = len(kept) == count and kept[0].dtype == dtype
        if not same or kept[0].numel() < size:
            grown = min(max(size, kept[0].numel() * 5 // 4), most) if same else size
            self._flat = []  # agents' prompts grow step by step: the slack saves regrowing
            self._flat = [torch.empty(grown, dtype=dtype, device=device) for _ in range(count)]
        return [flat[:size].view(shape) for flat in self._flat]

    def release(self) -> None:
        """Forget the kept memory (its tensors may still be in use)."""
        self._flat = []

    @property
    def size_bytes(self) -> int:
        """Memory kept now for the next batch."""
        return storage_bytes(self._flat)


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """The memory ``tensors`` keep alive: their storages' sizes, each storage counted once.

    A view keeps its whole storage, however few elements it shows.
    """
    storages = (t.untyped_storage() for t in tensors)
    return sum({(s.device, s.data_ptr()): s.nbytes() for s in storages}.values())


def _tensors(cache: DynamicCache) -> list[torch.Tensor]:
    layers: list[Any] = list(cache.layers)
    return [t for layer in layers if layer.is_initialized for t in (layer.keys, layer.values)]


def _filled_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _fitted(cache: DynamicCache) -> DynamicCache:
    """``cache`` with the room it does not fill given back, where that is over :data:`ROOM_KEPT`."""
    layers: list[Any] = list(cache.layers)
    for number, layer in enumerate(layers):
        if not layer.is_initialized:
            continue
        keys, values = layer.keys, layer.values
        if storage_bytes([keys, values]) > ROOM_KEPT * _filled_bytes([keys, values]):
            cache.layers[number] = RoomyLayer(keys.clone(), values.clone(), keys.shape[-2])
    return cache


@dataclass(frozen=True)
class _Entry:
    cache: DynamicCache
    size: int
    prompt_tokens: int
    ids: torch.Tensor  # the key as a tensor, for fast prefix comparison


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
        self._entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        reset_after_fork(self)

    def _after_fork(self) -> None:
        """In a forked child: a lock another parent thread held would never be released."""
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many caches are kept."""
        with self._lock:
            return len(self._entries)

    @property
    def max_bytes(self) -> int:
        """How much key/value memory the entries may hold together."""
        return self._max_bytes

    @property
    def size_bytes(self) -> int:
        """Key/value memory held now."""
        with self._lock:
            return sum(entry.size for entry in self._entries.values())

    def lookup(
        self,
        prompt_ids: Sequence[int],
        *,
        take: bool = True,
        room: int = 0,
        into: DynamicCache | None = None,
    ) -> CacheHit | None:
        """A private cache sharing the longest prefix with ``prompt_ids``.

        At least the prompt's last token is always left for prefill, so ``generate`` has logits.
        When the prompt continues the conversation an entry was stored for (it reuses that
        entry's whole prompt) and ``take`` is set, the entry is handed over, cropped, instead of
        copied: the cache stored after this generation supersedes it. Otherwise the entry is
        copied and kept (rows of one batch copy, since several may share an entry): into
        ``into``'s empty :class:`RoomyLayer` layers when given (a row's slot of a batch cache),
        else into new layers with space for ``room`` tokens in all, so the prefill that follows
        copies nothing.
        """
        prompt = torch.tensor(prompt_ids, dtype=torch.int64)
        with self._lock:
            best_key, best_length = None, 0
            for key, entry in self._entries.items():
                length = _common_prefix_length(entry.ids, prompt)
                if length > best_length:
                    best_key, best_length = key, length
            reused = min(best_length, len(prompt_ids) - 1)
            if best_key is None or reused < self._min_reuse_tokens:
                return None
            entry = self._entries[best_key]
            source, prompt_length = entry.cache, entry.prompt_tokens
            if take and reused >= prompt_length:
                del self._entries[best_key]
                extra = source.get_seq_length() - reused
                if extra:
                    source.crop(-extra)
                return CacheHit(source, reused)
            self._entries.move_to_end(best_key)
            cache = into if into is not None else DynamicCache(config=self._config)
            layers: list[Any] = list(source.layers)
            for index, layer in enumerate(layers):
                if into is None:
                    keys = layer.keys.new_empty(
                        (*layer.keys.shape[:2], max(room, reused), layer.keys.shape[3])
                    )
                    values = layer.values.new_empty((*keys.shape[:3], layer.values.shape[3]))
                    cache.layers[index] = RoomyLayer(keys, values, 0)
                target: Any = cache.layers[index]
                target.update(layer.keys[..., :reused, :], layer.values[..., :reused, :])
            return CacheHit(cache, reused, best_key if reused >= prompt_length else None)

    def store(
        self,
        token_ids: Sequence[int],
        cache: DynamicCache,
        *,
        prompt_tokens: int | None = None,
        supersedes: tuple[int, ...] | None = None,
    ) -> None:
        """Keep ``cache``, which holds keys and values for exactly ``token_ids``.

        ``prompt_tokens`` is how many of them were the prompt (the rest generated); a later
        prompt reusing all of those continues this conversation and takes the entry over.
        Entries for prefixes of ``token_ids`` are dropped, and so is ``supersedes``: the entry
        this conversation continued, which a re-tokenized answer may have made no prefix.
        """
        if _filled_bytes(_tensors(cache)) > self._max_bytes or self._max_entries == 0:
            return
        cache = _fitted(cache)
        size = storage_bytes(_tensors(cache))
        key = tuple(token_ids)
        with self._lock:
            self._entries.pop(key, None)
            if supersedes is not None:
                self._entries.pop(supersedes, None)
            for other in [k for k in self._entries if k == key[: len(k)]]:
                del self._entries[other]
            prompt_length = len(key) if prompt_tokens is None else prompt_tokens
            ids = torch.tensor(key, dtype=torch.int64)
            self._entries[key] = _Entry(cache, size, prompt_length, ids)
            while len(self._entries) > self._max_entries or (
                sum(entry.size for entry in self._entries.values()) > self._max_bytes
            ):
                _, evicted = self._entries.popitem(last=False)
                logger.debug("prefix cache full: evicted the %d-token cache of an older prompt "
                             "(%d bytes)", len(evicted.ids), evicted.size)  # fmt: skip

    def clear(self) -> None:
        """Drop every cache."""
        with self._lock:
            self._entries.clear()


def _common_prefix_length(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens the id tensors ``a`` and ``b`` share."""
    limit = min(len(a), len(b))
    mismatch = torch.nonzero(a[:limit] != b[:limit])
    return int(mismatch[0]) if len(mismatch) else limit
