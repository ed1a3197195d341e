"""``evaluate``: BFCL's single-turn categories through an adapter, scored by BFCL's rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolace_integrations.evaluation.data import CATEGORIES, BFCLDataError, Entry, load_entries
from toolace_integrations.evaluation.report import Row, summarize
from toolace_integrations.evaluation.runner import (
    Framework,
    Record,
    answer_function,
    read_records,
    run_entries,
)
from toolace_integrations.format.profiles import PromptFormat

__all__ = ["evaluate", "make_llm", "select_entries"]


def make_llm(
    model: str,
    *,
    framework: Framework = "langchain",
    base_url: str | None = None,
    constrained: bool = True,
    max_new_tokens: int = 512,
    device_map: str | None = None,
    prompt_format: PromptFormat = "auto",
) -> Any:
    """The adapter a user would build: greedy, constrained unless ``constrained=False``."""
    settings: dict[str, Any] = {
        "prompt_format": prompt_format,
        "model": model,
        "base_url": base_url,
        "temperature": 0,
        "constrained_decoding": constrained,
        "max_new_tokens": max_new_tokens,
        "device_map": device_map,
    }
    if framework == "langchain":
        from toolace_integrations.langchain import ChatToolACE

        return ChatToolACE(**settings)
    from toolace_integrations.llama_index import ToolACELLM

    return ToolACELLM(**settings)


def select_entries(categories: Sequence[str], limit: int | None) -> list[Entry]:
    """The entries of ``categories``, the first ``limit`` of each when given."""
    entries = load_entries(categories)
    if limit is None:
        return entries
    kept: dict[str, int] = {}
    chosen = []
    for entry in entries:
        if kept.get(entry.category, 0) < limit:
            kept[entry.category] = kept.get(entry.category, 0) + 1
            chosen.append(entry)
    return chosen


def evaluate(
    llm: Any,
    *,
    framework: Framework = "langchain",
    categories: Sequence[str] = CATEGORIES,
    limit: int | None = None,
    concurrency: int = 8,
    out: str | Path = "bfcl-results.jsonl",
    resume: bool = False,
    tool_choice: str = "auto",
    progress: Callable[[Record], None] | None = None,
    entries: Sequence[Entry] | None = None,
) -> tuple[list[Row], list[Record]]:
    """Run BFCL entries through ``llm`` and score them.

    Args:
        llm: a ``ChatToolACE`` (``framework="langchain"``) or ``ToolACELLM`` (``"llama-index"``),
            e.g. from :func:`make_llm`.
        framework: which adapter ``llm`` is.
        categories: BFCL categories (see :data:`~toolace_integrations.evaluation.data.CATEGORIES`).
        limit: at most this many entries of each category (the first ones).
        concurrency: questions in flight at once.
        out: the JSONL results file, one record per entry, appended as entries finish.
        resume: keep the records already in ``out`` and ask only the missing entries;
            otherwise ``out`` must not exist yet (hours of results are not overwritten).
        tool_choice: ``"auto"`` lets the model answer in text (irrelevance needs that).
        progress: called with each record as it is written.
        entries: these entries instead of ``categories``/``limit``.

    Returns:
        The table's rows (categories, then BFCL's summaries) and every record of the run.

    Raises:
        BFCLDataError: the BFCL data is missing, a category is not supported, or ``out``
            exists and ``resume`` is false.

    Example:
        >>> import tempfile
        >>> from toolace_integrations.evaluation.evaluate import evaluate, make_llm
        >>> llm = make_llm("Team-ACE/ToolACE-8B", max_new_tokens=8)
        >>> out = f"{tempfile.mkdtemp()}/bfcl.jsonl"
        >>> rows, records = evaluate(llm, categories=["irrelevance"], limit=2, out=out)
        >>> [(row.name, row.entries) for row in rows]
        [('irrelevance', 2)]
    """
    path = Path(out)
    chosen = list(entries) if entries is not None else select_entries(categories, limit)
    done: list[Record] = []
    if resume:
        done = read_records(path, (entry.id for entry in chosen))
    elif path.exists():
        raise BFCLDataError(
            f"{path} already holds results: resume it (--resume / resume=True), or choose "
            "another --out file"
        )
    finished = {record.id for record in done}
    pending = [entry for entry in chosen if entry.id not in finished]
    ask = answer_function(llm, framework, tool_choice)
    report = progress or (lambda record: None)
    new = asyncio.run(run_entries(pending, ask, concurrency=concurrency, out=path, progress=report))
    order = {entry.id: index for index, entry in enumerate(chosen)}
    records = sorted(done + new, key=lambda record: order[record.id])
    return summarize(records), records
