"""The table's summary rows, computed as BFCL's ``eval_runner_helper`` computes them."""

from __future__ import annotations

import sys

import pytest

from toolace_integrations.evaluation.data import BFCLDataError
from toolace_integrations.evaluation.report import bar_chart, format_table, summarize
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


def test_the_chart_has_one_bar_per_row_and_the_papers_marks() -> None:
    """Bars in table order at each row's accuracy; black marks at the paper's figures."""
    records = [r for category, (c, n) in SCORES.items() for r in _records(category, c, n)]
    rows = summarize(records)
    axes = bar_chart(rows).axes[0]
    bars = axes.patches
    assert len(bars) == len(rows)
    assert [bar.get_height() for bar in bars] == pytest.approx([row.accuracy for row in rows])
    assert [label.get_text() for label in axes.get_xticklabels()] == [row.name for row in rows]
    colors = {row.summary: set() for row in rows}
    for bar, row in zip(bars, rows, strict=True):
        colors[row.summary].add(bar.get_facecolor())
    assert len(colors[True]) == len(colors[False]) == 1 and colors[True] != colors[False]
    (marks,) = axes.collections
    assert marks.get_offsets().tolist() == [
        [index, row.paper] for index, row in enumerate(rows) if row.paper is not None
    ]


def test_without_matplotlib_the_chart_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(BFCLDataError, match="pip install matplotlib"):
        bar_chart(summarize(_records("simple_python", 1, 1)))
