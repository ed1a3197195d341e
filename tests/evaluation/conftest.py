"""Evaluation fixtures: a smaller tiny model for the scripted BFCL runs, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability._hooks import one_torch_thread
from toolace_integrations.testing import make_tiny_toolace


@pytest.fixture(scope="session")
def bfcl_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One layer of hidden size 16, the real Llama-3.1 tokenizer and 8,192 positions.

    Scripted answers make the weights irrelevant, so the model is as small as the local engine
    allows: most of a step is then the 128k-token vocabulary (logits, grammar masks), the same
    for any size. The longest BFCL prompt is 6,240 tokens.
    """
    folder = Path(tmp_path_factory.mktemp("tiny-toolace-bfcl"))
    return make_tiny_toolace(
        folder, layers=1, hidden=16, tokenizer="llama3", max_position_embeddings=8192
    )


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run the tiny models on one intra-op thread while these tests run.

    Concurrent questions compile their grammars in the callers' threads while the model decodes;
    a second OpenMP thread spinning beside them made 120 scripted entries 5x slower (32 s
    against 6 s) on a 2-core box.
    """
    with one_torch_thread():
        yield
