"""End to end: BFCL entries through the adapters' real generate path, scored by BFCL's rules.

A tiny model (with the real Llama-3.1 tokenizer) is steered to write each entry's ground truth
token by token (:func:`steer_prompts`, a logits processor keyed by the prompt, so the scheduler
batches the questions as it would a user's), under the grammar compiled for the entry's bound
tools: prompt -> constrained generation -> parse -> score must give 100% on every entry whose
ground truth can be said. Every such entry goes through LangChain; a fixed sample of each
category through LlamaIndex (the vLLM server's sample is in tests/remote/test_eval_remote.py).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bfcl_answers import script
from reliability._hooks import steer_prompts
from toolace_integrations.core.generation import ModelSpec
from toolace_integrations.evaluation.data import CATEGORIES, Entry, load_entries, openai_tools
from toolace_integrations.evaluation.evaluate import evaluate, make_llm
from toolace_integrations.evaluation.report import Row, format_table
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.local.engine import load_engine

pytest.importorskip("bfcl_eval")
pytest.importorskip("xgrammar")

LLAMA_INDEX_SAMPLE = 40
"""Entries per category through LlamaIndex, spread over each category's file."""
CONCURRENCY = 16
"""Questions in flight: the scheduler's largest batch."""
SAME_PROMPT = "its prompt is also another category's, whose answer BFCL wants different"


@dataclass(frozen=True)
class Scripts:
    """Every entry a model can answer right, the answer for each prompt, and the rest counted."""

    entries: list[Entry]
    prompts: dict[str, str]  # entry id -> the prompt text the model reads
    answers: dict[str, str]  # prompt text -> the answer BFCL accepts
    excluded: Counter[tuple[str, str]]  # (category, why) -> entries


@pytest.fixture(scope="module")
def scripts(bfcl_model_path: str) -> Scripts:
    """The scriptable entries of every category, keyed by the prompt LangChain renders."""
    prompt_text = ChatToolACE(model=bfcl_model_path).get_prompt_text
    excluded: Counter[tuple[str, str]] = Counter()
    groups: defaultdict[str, list[tuple[Entry, str]]] = defaultdict(list)
    for entry in load_entries(CATEGORIES):
        answer, why = script(entry)
        if answer is None:
            excluded[entry.category, why] += 1
            continue
        tools = openai_tools(entry.functions, entry.category)
        groups[prompt_text([dict(m) for m in entry.messages], tools=tools)].append((entry, answer))
    chosen: list[Entry] = []
    prompts: dict[str, str] = {}
    answers: dict[str, str] = {}
    for prompt, group in groups.items():
        if len({answer for _, answer in group}) > 1:  # no model can pass them all
            excluded.update((entry.category, SAME_PROMPT) for entry, _ in group)
            continue
        answers[prompt] = group[0][1]
        chosen += [entry for entry, _ in group]
        prompts.update((entry.id, prompt) for entry, _ in group)
    order = {category: index for index, category in enumerate(CATEGORIES)}
    chosen.sort(key=lambda entry: order[entry.category])  # stable: file order within each
    print(f"\n{len(chosen)} BFCL entries scripted; left out:")
    for (category, why), count in sorted(excluded.items()):
        print(f"  {count:4} {category}: {why}")
    return Scripts(chosen, prompts, answers, excluded)


def _run(
    framework: str, model: str, scripts: Scripts, entries: Sequence[Entry], tmp_path: Path
) -> list[Row]:
    """Ask ``entries`` through ``framework`` with every scripted answer; all must be right."""
    engine = load_engine(ModelSpec(model))
    llm = make_llm(model, framework=framework)  # type: ignore[arg-type]
    out = tmp_path / "results.jsonl"
    with steer_prompts(engine, scripts.answers) as unasked:
        rows, records = evaluate(
            llm,
            framework=framework,  # type: ignore[arg-type]
            entries=entries,
            concurrency=CONCURRENCY,
            out=out,
        )
    print(f"\nscripted ground truths through {framework}, local transformers:\n")
    print(format_table(rows))
    wrong = [(r.id, r.raw_answer, r.error_type, r.error) for r in records if not r.valid]
    assert not wrong
    assert unasked == set(scripts.answers) - {scripts.prompts[entry.id] for entry in entries}
    assert all(row.accuracy == 100 for row in rows)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(entry.id for entry in entries)
    assert all(line["prompt_tokens"] > 0 and line["valid"] for line in lines)
    return rows


def test_every_scriptable_entry_scores_100_percent_through_langchain(
    bfcl_model_path: str, scripts: Scripts, tmp_path: Path
) -> None:
    """All of BFCL's scriptable single-turn entries: bound, generated, parsed, judged right."""
    rows = _run("langchain", bfcl_model_path, scripts, scripts.entries, tmp_path)
    assert [row.name for row in rows] == [
        *CATEGORIES,
        "non-live AST",
        "live AST",
        "irrelevance overall",
        "relevance overall",
    ]
    assert sum(row.entries for row in rows if not row.summary) == len(scripts.entries)
    assert not any("refuse" in why for _, why in scripts.excluded)  # every tool set binds


def test_a_sample_of_each_category_scores_100_percent_through_llama_index(
    bfcl_model_path: str, scripts: Scripts, tmp_path: Path
) -> None:
    """The same, through ``ToolACELLM``: it must render the very prompts LangChain renders."""
    by_category: defaultdict[str, list[Entry]] = defaultdict(list)
    for entry in scripts.entries:
        by_category[entry.category].append(entry)
    sample = []
    for entries in by_category.values():
        step = max(1, len(entries) // LLAMA_INDEX_SAMPLE)
        sample += entries[::step][:LLAMA_INDEX_SAMPLE]
    rows = _run("llama-index", bfcl_model_path, scripts, sample, tmp_path)
    assert {row.name: row.entries for row in rows if not row.summary} == {
        category: min(LLAMA_INDEX_SAMPLE, len(entries))
        for category, entries in by_category.items()
    }
