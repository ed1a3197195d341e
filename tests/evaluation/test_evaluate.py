"""End to end: BFCL entries through the adapters' real generate path, scored by BFCL's rules.

The tiny random model (with the real Llama-3.1 tokenizer) is steered to write each entry's
ground truth token by token (:func:`steer`, a logits hook), under the grammar compiled for the
entry's bound tools: prompt -> constrained generation -> parse -> score must give 100% on every
entry whose ground truth fits its own schema. (live_relevance has no ground truth to script.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bfcl_answers import answerable_sample
from reliability._hooks import steer
from toolace_integrations.core.generation import ModelSpec
from toolace_integrations.evaluation.data import CATEGORIES
from toolace_integrations.evaluation.evaluate import evaluate, make_llm
from toolace_integrations.evaluation.report import format_table
from toolace_integrations.local.engine import load_engine

pytest.importorskip("bfcl_eval")
pytest.importorskip("xgrammar")

# Entries per category (every n-th schema-consistent one, spread over its file), per adapter.
SAMPLE = {"langchain": 10, "llama-index": 5}
LONGEST = 150  # characters of answer: CPU time grows with it (the parser's own tests go longer)


@pytest.mark.parametrize("framework", ["langchain", "llama-index"])
def test_ground_truth_answers_score_100_percent(
    framework: str, tiny_llama3_model_path: str, tmp_path: Path
) -> None:
    """Every scripted right answer is bound, generated, parsed and judged right."""
    sample = answerable_sample(SAMPLE[framework], LONGEST)
    engine = load_engine(ModelSpec(tiny_llama3_model_path))
    llm = make_llm(tiny_llama3_model_path, framework=framework)  # type: ignore[arg-type]
    out = tmp_path / "results.jsonl"
    with steer(engine, *(answer for _, answer in sample)) as unused:
        rows, records = evaluate(
            llm,
            framework=framework,  # type: ignore[arg-type]
            entries=[entry for entry, _ in sample],
            concurrency=1,  # steer scripts one generation at a time
            out=out,
        )
    print(f"\nscripted ground truths through {framework}, local transformers:\n")
    print(format_table(rows))
    assert not unused
    wrong = [(r.id, r.raw_answer, r.error_type, r.error) for r in records if not r.valid]
    assert not wrong
    scripted = set(CATEGORIES) - {"live_relevance"}  # no ground truth to script there
    assert {row.name for row in rows} >= {
        *scripted,
        "non-live AST",
        "live AST",
        "irrelevance overall",
    }
    assert all(row.accuracy == 100 for row in rows)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(entry.id for entry, _ in sample)
    assert all(line["prompt_tokens"] > 100 and line["valid"] for line in lines)
