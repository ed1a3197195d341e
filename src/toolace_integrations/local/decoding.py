"""Token ids to answer text, one token at a time, with stop rules: the engine's token loop.

Each row of a generation owns a :class:`RowDecoder`. It decodes only a short window of recent
ids per token (never the whole answer again), releases text through a
:class:`~toolace_integrations.format.stops.StopScanner`, and decides when the row is finished: an
end token, a stop string, its token budget, or its caller leaving.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

from toolace_integrations.core.budget import BudgetCloser
from toolace_integrations.core.generation import FinishReason
from toolace_integrations.format.stops import StopScanner


class IncrementalDetokenizer:
    """Text of a growing list of ids, decoding a constant-size window per new id.

    The text of the new ids is the difference between decoding ``ids[prefix:]`` and
    ``ids[prefix:read]``, so tokenizers that drop a leading space at the start of a decode, and
    characters split over several byte tokens (decoded as U+FFFD until complete), come out as in
    one decode of all ids.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, token: int) -> str:
        """Add one id; returns the text it completes (often empty for a partial character)."""
        self.ids.append(token)
        decode = self._tokenizer.decode
        before: str = decode(self.ids[self._prefix : self._read], skip_special_tokens=True)
        after: str = decode(self.ids[self._prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or after.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]


class RowDecoder:
    """One generation row's answer: text deltas, token count, finish reason.

    Args:
        tokenizer: Decodes the ids.
        stop: Stop strings; the answer is cut before the first.
        stop_ids: End tokens; counted as generated but never shown.
        budget: How many tokens the row may generate.
        halt: Set by the caller to stop this row (within a token).
        events: Where text deltas go as they are released (``None`` for no streaming).
        closer: Ends a forced call list early near the budget (see
            :mod:`toolace_integrations.core.budget`); ``None`` when the answer need not be calls.
    """

    def __init__(
        self,
        tokenizer: Any,
        stop: Sequence[str],
        stop_ids: Sequence[int],
        budget: int,
        halt: threading.Event,
        events: queue.SimpleQueue[str | None] | None = None,
        closer: BudgetCloser | None = None,
    ) -> None:
        self._detokenizer = IncrementalDetokenizer(tokenizer)
        self._scanner = StopScanner(stop)
        self._stop_ids = frozenset(stop_ids)
        self.budget = budget
        self.halt = halt
        self.events = events
        self.closer = closer
        self.tokens: list[int] = []
        self.finish: FinishReason | None = None

    @property
    def done(self) -> bool:
        """Whether the row needs no more tokens (its caller leaving counts)."""
        if self.finish is None and self.halt.is_set():
            self._end("stop")
        return self.finish is not None

    @property
    def remaining(self) -> int:
        """Tokens the row may still generate."""
        return 0 if self.done else self.budget - len(self.tokens)

    @property
    def text(self) -> str:
        """The answer released so far (all of it once the row is done)."""
        return self._scanner.text

    @property
    def closed_early(self) -> bool:
        """Whether the closer ended the answer early (the answer is then its closed text)."""
        return self.closer is not None and self.closer.closed_early

    @property
    def answer(self) -> str:
        """The whole answer once the row is done: the closed text if it was closed early."""
        if self.closer is not None and self.closer.answer is not None:
            return self.closer.answer
        return self.text

    def push(self, token: int) -> None:
        """Take the next generated token (ignored once the row is done)."""
        if self.done:
            return
        self.tokens.append(token)
        if token in self._stop_ids:
            self._end("stop")
            return
        self._send(self._scanner.feed(self._detokenizer.push(token)))
        if self.closer is not None:
            self.closer.feed(token)
        if self._scanner.stopped:
            self._end("stop")
        elif self.closer is not None and self.closer.should_end(self.budget - len(self.tokens)):
            self._end("length")  # ended early, closed: see ``answer``
        elif len(self.tokens) >= self.budget:
            self._end("length")

    def _end(self, finish: FinishReason) -> None:
        self.finish = finish
        self._send(self._scanner.flush() if not self._scanner.stopped else "")

    def _send(self, delta: str) -> None:
        if delta and self.events is not None:
            self.events.put(delta)
