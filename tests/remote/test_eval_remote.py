"""BFCL entries through ``ChatToolACE`` on the real vLLM server, scored by BFCL's rules.

The server generates every answer itself; a proxy only narrows each request's grammar to the
entry's ground-truth answer (vLLM's ``structured_outputs: {"choice": [...]}``), so the server
must write exactly that text. Prompt ids on the wire -> server generation -> detokenized text
-> our parser -> BFCL's verdict must then be right for every schema-consistent entry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from _servers import Proxy
from langchain_core.messages import convert_to_messages

from bfcl_answers import answerable_sample
from toolace_integrations.evaluation.data import Entry, openai_tools
from toolace_integrations.evaluation.evaluate import evaluate, make_llm
from toolace_integrations.evaluation.report import format_table
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.testing.vllm_server import SMALL_SERVER_FLAGS

pytest.importorskip("bfcl_eval")

PER_CATEGORY = 20
"""Entries per category, spread over each file. Fewer than the 40 LlamaIndex gets: one at a time
(each request carries its own scripted choice), the CPU server took 0.32 s an entry (120 in
38.1 s on a shared 2-core box), so 20 a category (235 entries, 83 s) keeps this test under 2
minutes with the server's start."""
WINDOW = int(SMALL_SERVER_FLAGS[SMALL_SERVER_FLAGS.index("--max-model-len") + 1])
MAX_NEW_TOKENS = 400


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
    count = ChatToolACE(model=vllm_model).get_num_tokens_from_messages

    def fits(entry: Entry) -> bool:  # the test server's window is small
        tools = openai_tools(entry.functions, entry.category)
        return count(convert_to_messages(entry.messages), tools) + MAX_NEW_TOKENS <= WINDOW

    sample = answerable_sample(PER_CATEGORY, fits)
    started = time.perf_counter()
    front = ScriptingProxy(vllm_url, [answer for _, answer in sample])
    try:
        llm = make_llm(vllm_model, base_url=front.url, max_new_tokens=MAX_NEW_TOKENS)
        rows, records = evaluate(
            llm, entries=[entry for entry, _ in sample], concurrency=1, out=tmp_path / "r.jsonl"
        )
    finally:
        front.close()
    print(f"\n{len(sample)} entries in {time.perf_counter() - started:.1f} s")
    print("\nscripted ground truths through langchain, vLLM server:\n" + format_table(rows))
    assert not front.answers
    wrong = [(r.id, r.raw_answer, r.error) for r in records if not r.valid]
    assert not wrong
    assert [r.raw_answer for r in records] == [answer for _, answer in sample]
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert all(json.loads(line)["prompt_tokens"] > 0 for line in lines)
