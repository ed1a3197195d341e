"""Make forced calls finish inside ``max_new_tokens``: a logits processor that closes them.

When the answer must be calls (``tool_choice`` required or named, structured output) and the
grammar is on, each row's :class:`CallCloser` follows its answer with a
:class:`~toolace_integrations.format.closing.Closer`, and :class:`RowBudgets` applies them. Once the
tokens left are no more than the tokens of the shortest closing text plus a margin (what one
more free token could open), it forces that text, token by token, so the answer ends as valid
calls of the bound tools. It runs after the grammar's processor and forces a token only where
the grammar allows it.

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

from toolace_integrations.core.encoding import text_encoder
from toolace_integrations.core.generation import GenerationRequest
from toolace_integrations.format.closing import Closer
from toolace_integrations.format.schema_values import Kind, Schemas
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

__all__ = ["CallCloser", "RowBudgets", "call_closer", "forced"]

_GROWTH_DEPTH = 4


def forced(choice: ToolChoice | None) -> bool:
    """Whether ``choice`` (as the grammar enforces it) admits only calls."""
    return choice is not None and choice.mode in ("required", "named")


class CallCloser:
    """One row's closer: the answer read so far and the closing tokens being forced.

    Attributes:
        fed: How many of the row's tokens were read.
        closed: Whether it forced a token (the answer was closed early).
    """

    def __init__(self, tokenizer: Any, tools: Sequence[FunctionSpec], choice: ToolChoice) -> None:
        self.tokenizer = tokenizer
        self.closer = Closer(tools, choice)
        self.pending: list[int] = []
        self.plan: list[int] | None = None
        self.margin = _margin(tokenizer, tools, choice)
        self.fed = 0
        self.closed = False

    def feed(self, token: int) -> None:
        """Read the row's next generated token."""
        self.fed += 1
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
        """The token to force with ``remaining`` tokens left, or ``None`` to leave it free."""
        if self.plan is None and not self.pending:
            closing = self.closer.closing()
            if closing is None:
                return None
            tokens = text_encoder(self.tokenizer).content_ids(closing)
            if remaining > len(tokens) + self.margin:
                return None
            self.plan = list(tokens)
        return self.plan[0] if self.plan else None


def call_closer(tokenizer: Any, request: GenerationRequest) -> CallCloser | None:
    """The closer of ``request``'s answer, or ``None`` when it need not be calls."""
    choice = request.grammar_choice
    if choice is None or not forced(choice):
        return None
    return CallCloser(tokenizer, request.tools, choice)


class RowBudgets(LogitsProcessor):
    """Forces the shortest closing of each forced row's call list once its budget needs it.

    ``rows`` are the runner's rows (each with ``closer`` and ``decoder``); it runs after the
    grammar's processor, so a forced token is always one the grammar allows.
    """

    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        """Read each row's new tokens; force the next closing token where the budget needs it."""
        for index, row in enumerate(self.rows):
            closer: CallCloser | None = row.closer
            if closer is None or row.decoder.done:
                continue
            tokens = row.decoder.tokens
            while closer.fed < len(tokens):
                closer.feed(tokens[closer.fed])
            token = closer.next_token(row.decoder.remaining)
            if token is None or not torch.isfinite(scores[index, token]):
                continue
            keep = scores[index, token].clone()
            scores[index, :] = -torch.inf
            scores[index, token] = keep
            closer.closed = True
        return scores


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
    sizes = [len(text_encoder(tokenizer).content_ids(text)) for text in texts]
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
