"""The per-category table, with BFCL's summary rows and the paper's ToolACE-8B figures.

Summary rows follow ``bfcl_eval/eval_checker/eval_runner_helper.py``: non-live AST is the
unweighted mean of simple, multiple, parallel and parallel_multiple (simple itself the mean of
simple_python, simple_java and simple_javascript); live AST weights its four categories by
entry count; irrelevance is the unweighted mean of irrelevance and live_irrelevance; relevance
is live_relevance (BFCL v3's hallucination columns, where the paper's figures come from). A
summary row appears only when all its parts were run (BFCL shows N/A otherwise).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolace_integrations.evaluation.data import CATEGORIES, BFCLDataError
from toolace_integrations.evaluation.runner import Record

__all__ = ["PAPER", "Row", "bar_chart", "format_table", "plot_table", "summarize"]

PAPER = {"non-live AST": 89.27, "relevance overall": 85.37, "irrelevance overall": 83.81}
"""ToolACE-8B on BFCL v3 (arXiv 2409.00920, Table 2), in percent."""

_SIMPLE = ("simple_python", "simple_java", "simple_javascript")
_NON_LIVE = ("multiple", "parallel", "parallel_multiple")
_LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")


@dataclass(frozen=True)
class Row:
    """One line of the table: a category or a summary, its accuracy (percent) and size."""

    name: str
    accuracy: float
    entries: int
    summary: bool = False

    @property
    def paper(self) -> float | None:
        """The paper's figure for this row, if it reports one."""
        return PAPER.get(self.name) if self.summary else None


def summarize(records: Sequence[Record]) -> list[Row]:
    """Per-category rows in BFCL's order, then the summary rows whose parts all ran."""
    rows: dict[str, Row] = {}
    for category in CATEGORIES:
        mine = [record for record in records if record.category == category]
        if mine:
            correct = sum(record.valid for record in mine)
            rows[category] = Row(category, 100 * correct / len(mine), len(mine))
    summaries = []
    if all(name in rows for name in _SIMPLE + _NON_LIVE):
        simple = _unweighted("simple", [rows[name] for name in _SIMPLE])
        parts = [simple, *(rows[name] for name in _NON_LIVE)]
        summaries.append(_unweighted("non-live AST", parts))
    if all(name in rows for name in _LIVE):
        live = [rows[name] for name in _LIVE]
        total = sum(row.entries for row in live)
        weighted = sum(row.accuracy * row.entries for row in live) / total
        summaries.append(Row("live AST", weighted, total, summary=True))
    if "irrelevance" in rows and "live_irrelevance" in rows:
        both = [rows["irrelevance"], rows["live_irrelevance"]]
        summaries.append(_unweighted("irrelevance overall", both))
    if "live_relevance" in rows:
        relevance = rows["live_relevance"]
        summaries.append(Row("relevance overall", relevance.accuracy, relevance.entries, True))
    return [*rows.values(), *summaries]


def _unweighted(name: str, rows: Sequence[Row]) -> Row:
    accuracy = sum(row.accuracy for row in rows) / len(rows)
    return Row(name, accuracy, sum(row.entries for row in rows), summary=True)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table, the paper's figure beside each summary it reports."""
    lines = [f"{'category':<24}{'entries':>8}{'accuracy':>10}{'paper':>8}"]
    for row in rows:
        if row.summary and not any(line.startswith("-") for line in lines):
            lines.append("-" * 50)
        paper = f"{row.paper:.2f}" if row.paper is not None else ""
        lines.append(f"{row.name:<24}{row.entries:>8}{row.accuracy:>9.2f}%{paper:>8}")
    return "\n".join(lines)


def plot_table(rows: Sequence[Row], path: Path) -> None:
    """Draw the rows as a bar chart (see :func:`bar_chart`) into ``path`` (PNG, SVG, PDF...).

    Raises:
        BFCLDataError: matplotlib is not installed.
    """
    bar_chart(rows).savefig(path)


def bar_chart(rows: Sequence[Row]) -> Any:
    """A matplotlib ``Figure``: one bar per row (summaries orange), the paper's figures as marks.

    Built without pyplot, so no global backend or figure registry is touched.

    Raises:
        BFCLDataError: matplotlib is not installed.
    """
    try:
        figure_module = importlib.import_module("matplotlib.figure")
    except ImportError as error:
        raise BFCLDataError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib"
        ) from error
    figure = figure_module.Figure(figsize=(max(6, 0.7 * len(rows)), 4))
    axes = figure.add_subplot()
    names = [row.name for row in rows]
    colors = ["tab:orange" if row.summary else "tab:blue" for row in rows]
    axes.bar(names, [row.accuracy for row in rows], color=colors)
    papers = [(i, row.paper) for i, row in enumerate(rows) if row.paper is not None]
    if papers:
        axes.scatter(*zip(*papers, strict=True), color="black", marker="_", s=400, label="paper")
        axes.legend()
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.tick_params(axis="x", labelrotation=60)
    figure.tight_layout()
    return figure
