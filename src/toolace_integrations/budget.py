"""Make forced calls finish inside ``max_new_tokens``: a logits processor that closes them.

When the answer must be calls (``tool_choice`` required or named, structured output) and the
grammar is on, :class:`BudgetCloser` follows each row's answer with a
:class:`~toolace_integrations.closing.Closer`. Once the tokens left are no more than the
tokens of the shortest closing text plus a margin (what one more free token could open), it
forces that text, token by token, so the answer ends as valid calls of the bound tools. It runs
after the grammar's processor and forces a token only where the grammar allows it.

Notes:
    The closing text is tokenized on its own; with byte-level BPE tokenizers (Llama 3's) its
    bytes are a valid continuation whatever the tokens before it. A row whose answer the closer
    cannot follow is left alone (it may still end truncated, as without this processor).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

from toolace_integrations.closing import Closer
from toolace_integrations.generation import GenerationRequest
from toolace_integrations.schema_values import Kind, Schemas
from toolace_integrations.tools import FunctionSpec, ToolChoice

__all__ = ["BudgetCloser", "budget_closer", "closed_early", "forced"]

_GROWTH_DEPTH = 4


def forced(choice: ToolChoice | None) -> bool:
    """Whether ``choice`` (as the grammar enforces it) admits only calls."""
    return choice is not None and choice.mode in ("required", "named")


class _Row:
    """One batch row: its closer, undecoded token ids and the closing tokens being forced."""

    def __init__(self, tokenizer: Any, tools: Sequence[FunctionSpec], choice: ToolChoice) -> None:
        self.tokenizer = tokenizer
        self.closer = Closer(tools, choice)
        self.pending: list[int] = []
        self.plan: list[int] | None = None
        self.margin = _margin(tokenizer, tools, choice)

    def feed(self, token: int) -> None:
        if self.plan and self.plan[0] == token:
            self.plan.pop(0)
        elif self.plan is not None:
            self.plan = None  # the grammar refused the plan: think again after this token
        self.pending.append(token)
        text: str = self.tokenizer.decode(self.pending, skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            self.closer.feed(text)
            self.pending = []

    def next_token(self, remaining: int) -> int | None:
        if self.plan is None and not self.pending:
            closing = self.closer.closing()
            if closing is None:
                return None
            tokens = self.tokenizer.encode(closing, add_special_tokens=False)
            if remaining > len(tokens) + self.margin:
                return None
            self.plan = list(tokens)
        return self.plan[0] if self.plan else None


class BudgetCloser(LogitsProcessor):
    """Forces the shortest closing of a forced call list once the token budget needs it.

    Args:
        tokenizer: The model's tokenizer.
        rows: Per batch row, the ``(tools, choice)`` its grammar enforces, or ``None`` to
            leave the row alone.
        max_new_tokens: The generation's token budget.

    Single use, like the grammar's processor: make a new one for every ``generate()``.
    ``closed_early[i]`` tells whether row ``i`` was closed by this processor.
    """

    def __init__(
        self,
        tokenizer: Any,
        rows: Sequence[tuple[Sequence[FunctionSpec], ToolChoice] | None],
        max_new_tokens: int,
    ) -> None:
        self._rows = [None if row is None else _Row(tokenizer, *row) for row in rows]
        self._budget = max_new_tokens
        self._start: int | None = None
        self.closed_early = [False] * len(rows)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        """Read each row's last token; force the next closing token where the budget needs it."""
        if self._start is None:
            self._start = input_ids.shape[1]
        generated = input_ids.shape[1] - self._start
        for index, row in enumerate(self._rows):
            if row is None:
                continue
            if generated:
                row.feed(int(input_ids[index, -1]))
            token = row.next_token(self._budget - generated)
            if token is None or not torch.isfinite(scores[index, token]):
                continue
            keep = scores[index, token].clone()
            scores[index, :] = -torch.inf
            scores[index, token] = keep
            self.closed_early[index] = True
        return scores


def budget_closer(tokenizer: Any, requests: Sequence[GenerationRequest]) -> BudgetCloser:
    """The processor for a batch of constrained requests (rows not forced are left alone)."""
    rows = [
        (r.tools, r.grammar_choice)
        if r.grammar_choice is not None and forced(r.grammar_choice)
        else None
        for r in requests
    ]
    return BudgetCloser(tokenizer, rows, requests[0].sampling.max_new_tokens)


def closed_early(processors: Sequence[Any], rows: int) -> list[bool]:
    """Per row, whether a :class:`BudgetCloser` among ``processors`` closed it."""
    for processor in processors:
        if isinstance(processor, BudgetCloser):
            return list(processor.closed_early)
    return [False] * rows


def _margin(tokenizer: Any, tools: Sequence[FunctionSpec], choice: ToolChoice) -> int:
    """Tokens one free token can add to the closing text, at most (with some slack).

    A token can start another call (the shortest call of the tool it names; with parallel calls
    only) or open an optional argument, key or list item (the shortest value of its schema); a
    couple of such openings fit in one token.
    """
    schemas = Schemas()
    closer = Closer(tools, choice)
    texts: list[str] = []
    for tool in tools:
        if choice.mode == "named" and tool.name != choice.name:
            continue
        kind = schemas.kind(tool.parameters, tool.parameters)
        texts += [text * 2 for text in _openings(schemas, kind, 0)]
        if choice.parallel:  # ", name(...)" after a call
            texts.append(", " + tool.name + (closer.shortest_call(tool.name + "(") or ""))
    sizes = [len(tokenizer.encode(text, add_special_tokens=False)) for text in texts]
    return max(sizes, default=0) + 4


def _openings(schemas: Schemas, kind: Kind, depth: int) -> list[str]:
    """Texts closing an optional entry or list item anywhere inside ``kind`` may need."""
    if depth > _GROWTH_DEPTH:
        return ["0" * 16]
    if kind.kind == "object":
        inner = [(json.dumps(key) + ": ", schemas.resolve(pair)) for key, pair, _ in kind.entries]
    elif kind.kind in ("array", "map", "any"):
        inner = [('"": ', schemas.resolve(kind.items, kind.depth + (kind.kind == "array")))]
    elif kind.kind == "union":
        inner = [("", schemas.resolve(branch)) for branch in kind.branches]
    else:
        return []
    texts = [", " + head + (schemas.shortest(k) or "") for head, k in inner]
    for _, k in inner:
        texts += _openings(schemas, k, depth + 1)
    return texts
