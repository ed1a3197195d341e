"""The tool-call grammar applied row by row in a batch (transformers side of :mod:`grammar`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

from toolace_integrations.local.runner import Row


class RowGrammars(LogitsProcessor):
    """The tool-call grammar of each constrained row; free rows in the batch are left alone.

    Each row's matcher lives on the row, so a row keeps its grammar state across segments.
    """

    def __init__(self, rows: Sequence[Row], xgrammar: Any, vocab_size: int) -> None:
        self.rows = rows
        self.xgr = xgrammar
        self.bitmask = xgrammar.allocate_token_bitmask(len(rows), vocab_size)

    def __call__(self, input_ids: torch.LongTensor, scores: Any) -> Any:
        """Advance each constrained row's matcher by its new tokens and mask its logits."""
        indices = []
        for index, row in enumerate(self.rows):
            matcher = row.matcher
            if matcher is None or row.decoder.done:
                continue
            while row._accepted < len(row.decoder.tokens):
                if not matcher.is_terminated():
                    matcher.accept_token(row.decoder.tokens[row._accepted])
                row._accepted += 1
            if not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self.bitmask, index)
                indices.append(index)
        if indices:
            masked = scores if scores.device.type in ("cpu", "cuda") else scores.to("cpu")
            self.xgr.apply_token_bitmask_inplace(
                masked, self.bitmask.to(masked.device), indices=indices
            )
            scores = masked.to(scores.device)
        return scores
