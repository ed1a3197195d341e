"""Shared fixtures: tiny offline ToolACE-shaped checkpoints built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolace_integrations.testing import make_tiny_toolace


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer random-weight Llama with the ToolACE tokenizer and chat template."""
    return make_tiny_toolace(Path(tmp_path_factory.mktemp("tiny-toolace")))


@pytest.fixture(scope="session")
def tiny_llama3_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same tiny model with the real Llama-3.1 tokenizer (128,256 tokens)."""
    folder = Path(tmp_path_factory.mktemp("tiny-toolace-llama3"))
    return make_tiny_toolace(folder, tokenizer="llama3")
