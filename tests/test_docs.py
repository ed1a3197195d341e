"""Every README, docs/vllm.md and docstring code example runs, on the tiny model, so none can rot.

The examples are found and run by ``tests/doc_examples.py`` (its docstring lists the two
substitutions made before an example runs, and why each kind of bash command is not run).
Examples that talk to a vLLM server run in ``tests/remote/test_docs_vllm.py``. A failing
example fails its test with its ``path:line`` in the message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from doc_examples import (
    MODEL_ID,
    Example,
    commands,
    docstring_examples,
    markdown_examples,
    run,
    skip_reason,
)

EXAMPLES = markdown_examples() + docstring_examples()
LOCAL = [e for e in EXAMPLES if e.language in ("python", "doctest") and not e.remote]
BASH = [e for e in EXAMPLES if e.language == "bash"]


@pytest.mark.parametrize("example", LOCAL, ids=[e.location for e in LOCAL])
# LlamaIndex's FunctionAgent touches pydantic's deprecated __fields__ (not our code).
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
def test_example_runs_on_the_tiny_model(
    example: Example, tiny_model_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples' temp folders go away
    run(example, tiny_model_path)


@pytest.mark.parametrize("example", BASH, ids=[e.location for e in BASH])
def test_every_bash_command_has_a_reason_not_to_run(example: Example) -> None:
    for command in commands(example):
        assert skip_reason(command), (
            f"{example.location}: `{command}` is neither run by the suite nor listed in "
            "doc_examples.SKIPPED_COMMANDS with the reason it is not run"
        )


def test_every_block_is_python_or_bash() -> None:
    others = [
        f"{e.location} ({e.language})"
        for e in markdown_examples()
        if e.language not in ("python", "bash")
    ]
    assert not others, f"code blocks the suite can neither run nor skip: {others}"


def test_the_main_examples_are_found() -> None:
    located = {e.location.split(":")[0] for e in LOCAL}
    assert {
        "README.md",
        "src/toolace_integrations/langchain/chat_model.py",
        "src/toolace_integrations/llama_index/llm.py",
        "src/toolace_integrations/format/parsing.py",
    } <= located
    readme = [e for e in LOCAL if e.location.startswith("README.md")]
    assert sum(MODEL_ID in e.code for e in readme) >= 2, "the quickstarts load the model"
