"""The README's and docs/vllm.md's vLLM examples run against the test vLLM server.

``http://gpu-host:8000/v1`` becomes the server's URL and ``Team-ACE/ToolACE-8B`` the tiny
checkpoint it serves (its folder is also its served name); see ``tests/doc_examples.py``.
"""

from __future__ import annotations

import pytest

from doc_examples import Example, docstring_examples, markdown_examples, run

REMOTE = [
    e
    for e in markdown_examples() + docstring_examples()
    if e.remote and e.language in ("python", "doctest")  # bash blocks: see tests/test_docs.py
]


def test_the_vllm_examples_are_found() -> None:
    assert {e.location.split(":")[0] for e in REMOTE} == {"README.md", "docs/vllm.md"}


@pytest.mark.parametrize("example", REMOTE, ids=[e.location for e in REMOTE])
def test_example_runs_against_the_vllm_server(
    example: Example, vllm_url: str, vllm_model: str
) -> None:
    run(example, vllm_model, server_url=vllm_url)
