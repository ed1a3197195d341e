"""``toolace-integrations eval`` as a user runs it: the tiny random model on a small subset.

Random weights answer noise, so scores are not asserted; the plumbing is: every entry (two of
each category, 26) gets a record, the table lists every category with BFCL's summary rows,
``--plot`` writes the chart, ``--resume`` asks only what an interrupted run left, and argument
mistakes end with one argparse line and status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from matplotlib import image

from toolace_integrations.cli import main
from toolace_integrations.evaluation.data import CATEGORIES

pytest.importorskip("bfcl_eval")

RECORD_KEYS = {"id", "category", "valid", "error_type", "error", "prompt_tokens", "raw_answer",
               "calls", "invalid_calls", "text"}  # fmt: skip


def _eval(model: str, out: Path, *extra: str) -> int:
    return main(["eval", "--model", model, "--limit", "2", "--max-new-tokens", "16",
                 "--out", str(out), *extra])  # fmt: skip


def test_eval_writes_a_record_per_entry_and_the_table(
    tiny_llama3_model_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, chart = tmp_path / "results.jsonl", tmp_path / "chart.png"
    assert _eval(tiny_llama3_model_path, out, "--plot", str(chart)) == 0
    printed = capsys.readouterr()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * len(CATEGORIES) and all(set(r) == RECORD_KEYS for r in records)
    assert all(r["prompt_tokens"] > 100 and r["raw_answer"] for r in records)
    for row in (*CATEGORIES, "non-live AST", "live AST", "irrelevance overall"):
        assert f"\n{row} " in printed.out
    assert "89.27" in printed.out and f"{len(records)} entries in " in printed.out
    assert "grammar-constrained, toolace prompt;" in printed.out  # the profile detected
    assert "entry/s" in printed.err or "s/entry" in printed.err  # the progress bar's rate
    assert f"Chart: {chart}" in printed.out and chart.read_bytes().startswith(b"\x89PNG\r\n")
    rows = len(CATEGORIES) + 4  # and the summaries: non-live AST, live AST, (ir)relevance
    assert image.imread(chart).shape == (400, round(70 * rows), 4)  # 0.7 inch a bar, 100 dpi

    with pytest.raises(SystemExit) as exit_info:  # a finished run is not overwritten
        _eval(tiny_llama3_model_path, out)
    assert exit_info.value.code == 2 and "add --resume" in capsys.readouterr().err
    kept = out.read_text().splitlines()[:-3]
    out.write_text("\n".join(kept) + "\n" + '{"id": "cut mid-li')  # an interrupted run
    assert _eval(tiny_llama3_model_path, out, "--resume") == 0
    lines = out.read_text().splitlines()
    assert lines[: len(kept)] == kept
    resumed = [json.loads(line) for line in lines[len(kept) + 1 :]]
    assert len(resumed) == 3  # only the entries the cut run had not finished
    assert sorted(r["id"] for r in records) == sorted(
        json.loads(line)["id"] for line in [*kept, *lines[len(kept) + 1 :]]
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--categories", "multi_turn_base"], "not supported: multi-turn entries run tools"),
        (["--categories", "memory_kv"], "memory entries are agentic"),
        (["--categories", "simpel_python"], "unknown category 'simpel_python'"),
        (["--limit", "0"], "must be at least 1"),
        (["--base-url", "http://127.0.0.1:9/v1", "--device-map", "cuda"], "--device-map places"),
    ],
)
def test_argument_mistakes_are_one_line_and_status_2(
    tiny_model_path: str,
    arguments: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", tiny_model_path, "--out", str(tmp_path / "r.jsonl"), *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


def test_plot_without_matplotlib_is_an_argument_error_before_any_work(
    tiny_model_path: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(SystemExit) as exit_info:
        _eval(tiny_model_path, tmp_path / "r.jsonl", "--plot", str(tmp_path / "chart.png"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert "--plot needs matplotlib: pip install matplotlib" in err
    assert not (tmp_path / "r.jsonl").exists()


def test_a_missing_model_folder_is_an_argument_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(tmp_path / "nowhere"), "--limit", "1"])
    assert exit_info.value.code == 2
    assert "eval: error:" in capsys.readouterr().err
