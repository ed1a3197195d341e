"""BFCL entries through ``ChatToolACE`` on the real vLLM server, scored by BFCL's rules.

The server generates every answer itself; a proxy only narrows each request's grammar to the
entry's ground-truth answer (vLLM's ``structured_outputs: {"choice": [...]}``), so the server
must write exactly that text. Prompt ids on the wire -> server generation -> detokenized text
-> our parser -> BFCL's verdict must then be right for every schema-consistent entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _servers import Proxy

from bfcl_answers import answerable_sample
from toolace_integrations.evaluation.evaluate import evaluate, make_llm
from toolace_integrations.evaluation.report import format_table

pytest.importorskip("bfcl_eval")


class ScriptingProxy(Proxy):
    """Replaces each completion request's grammar by the next scripted answer as a choice."""

    def __init__(self, upstream: str, answers: list[str]) -> None:
        self.answers = list(answers)
        super().__init__(upstream)

    def answer(self, handler: Any, body: dict[str, Any], index: int) -> None:
        assert isinstance(body["prompt"][0], int), "one prompt a request (concurrency 1)"
        body["structured_outputs"] = {"choice": [self.answers.pop(0)]}
        super().answer(handler, body, index)


def test_ground_truth_answers_score_100_percent_on_vllm(
    vllm_url: str, vllm_model: str, tmp_path: Path
) -> None:
    sample = answerable_sample(3, 150)
    front = ScriptingProxy(vllm_url, [answer for _, answer in sample])
    try:
        llm = make_llm(vllm_model, base_url=front.url, max_new_tokens=400)
        rows, records = evaluate(
            llm, entries=[entry for entry, _ in sample], concurrency=1, out=tmp_path / "r.jsonl"
        )
    finally:
        front.close()
    print("\nscripted ground truths through langchain, vLLM server:\n" + format_table(rows))
    assert not front.answers
    wrong = [(r.id, r.raw_answer, r.error) for r in records if not r.valid]
    assert not wrong
    assert [r.raw_answer for r in records] == [answer for _, answer in sample]
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert all(json.loads(line)["prompt_tokens"] > 100 for line in lines)
