"""The table's summary rows, computed as BFCL's ``eval_runner_helper`` computes them."""

from __future__ import annotations

import pytest

from toolace_integrations.evaluation.report import format_table, summarize
from toolace_integrations.evaluation.runner import Record


def _records(category: str, correct: int, total: int) -> list[Record]:
    return [
        Record(f"{category}_{i}", category, i < correct, "", "", 0, "", [], [], "")
        for i in range(total)
    ]


SCORES = {  # category: (correct, entries)
    "simple_python": (1, 2),
    "simple_java": (1, 1),
    "simple_javascript": (0, 3),
    "multiple": (1, 1),
    "parallel": (0, 4),
    "parallel_multiple": (3, 4),
    "live_simple": (3, 4),
    "live_multiple": (1, 1),
    "live_parallel": (0, 5),
    "live_parallel_multiple": (2, 2),
    "irrelevance": (1, 4),
    "live_irrelevance": (1, 1),
    "live_relevance": (2, 8),
}


def test_summary_rows_weight_as_bfcl_does() -> None:
    """Non-live AST and irrelevance are unweighted means; live AST weighs by entry count."""
    records = [r for category, (c, n) in SCORES.items() for r in _records(category, c, n)]
    rows = {row.name: row for row in summarize(records)}
    simple = (50 + 100 + 0) / 3
    assert rows["non-live AST"].accuracy == pytest.approx((simple + 100 + 0 + 75) / 4)
    assert rows["live AST"].accuracy == pytest.approx(100 * (3 + 1 + 0 + 2) / (4 + 1 + 5 + 2))
    assert rows["irrelevance overall"].accuracy == pytest.approx((25 + 100) / 2)
    assert rows["relevance overall"].accuracy == pytest.approx(25)
    table = format_table(list(rows.values()))
    assert "non-live AST                  15    56.25%   89.27" in table
    assert "\nirrelevance                    4    25.00%        \n" in table  # no paper figure


def test_a_summary_needs_all_its_parts() -> None:
    """As BFCL shows N/A for a summary with a category missing, the row is left out."""
    records = _records("simple_python", 1, 1) + _records("live_simple", 1, 1)
    assert [row.name for row in summarize(records)] == ["simple_python", "live_simple"]
