"""How an adapter's answer becomes BFCL's verdict, and how a run survives failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolace_integrations.evaluation.data import Entry
from toolace_integrations.evaluation.evaluate import evaluate
from toolace_integrations.evaluation.runner import Answer, read_records, score
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.testing import make_tiny_toolace

FUNCTIONS = (
    {
        "name": "get_weather",
        "parameters": {
            "type": "dict",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
)
BAD_CALL = {"name": "get_weather", "args": '{"city": ', "error": "cut mid-call"}


def _entry(category: str) -> Entry:
    truth = () if "relevance" in category else ({"get_weather": {"city": ["Paris"]}},)
    return Entry(f"{category}_0", category, ({"role": "user", "content": "?"},), FUNCTIONS, truth)


@pytest.mark.parametrize(
    ("category", "answer", "valid", "error_type"),
    [
        ("simple_python", Answer([("get_weather", {"city": "paris"})]), True, ""),
        ("simple_python", Answer([], text="It is sunny."), False, "ast_decoder:decoder_failed"),
        ("simple_python", Answer([], [BAD_CALL]), False, "ast_decoder:decoder_failed"),
        # BFCL decodes the whole output: one malformed call fails it, valid calls beside it too
        (
            "simple_python",
            Answer([("get_weather", {"city": "Paris"})], [BAD_CALL]),
            False,
            "ast_decoder:decoder_failed",
        ),  # fmt: skip
        ("irrelevance", Answer([], text="I cannot."), True, ""),
        ("irrelevance", Answer([], [BAD_CALL]), True, ""),  # no decodable call: BFCL's rule
        (
            "irrelevance",
            Answer([("get_weather", {"city": "Paris"})]),
            False,
            "irrelevance_error:decoder_success",
        ),  # fmt: skip
        ("live_relevance", Answer([("get_weather", {"city": "Rome"})]), True, ""),
        ("live_relevance", Answer([], [BAD_CALL]), False, "relevance_error:decoder_failed"),
    ],
)
def test_answers_are_judged_as_bfcl_judges_its_decoded_output(
    category: str, answer: Answer, valid: bool, error_type: str
) -> None:
    verdict = score(_entry(category), answer)
    assert (verdict.valid, verdict.error_type) == (valid, error_type)


def test_a_generation_error_is_that_entrys_record_and_the_run_goes_on(tmp_path: Path) -> None:
    """A prompt over the context window fails its entry with the adapter's message."""
    short = make_tiny_toolace(tmp_path / "model", max_position_embeddings=128)
    llm = ChatToolACE(model=short, max_tokens=8)
    out = tmp_path / "r.jsonl"
    rows, records = evaluate(llm, categories=["simple_python"], limit=3, out=out)
    assert [r.error_type for r in records] == ["generation_error"] * 3
    assert all("context" in r.error for r in records)
    assert sorted(r.id for r in read_records(out)) == [f"simple_python_{i}" for i in range(3)]
    assert rows[0].accuracy == 0 and rows[0].entries == 3
