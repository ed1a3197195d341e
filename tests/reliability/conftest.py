"""Reliability fixtures: the tiny real model's shared engine and a forward-pass counter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _hooks import DTYPE, ForwardCounter, one_torch_thread

from toolace_integrations.local.engine import ModelSpec, TransformersEngine, load_engine


@pytest.fixture(scope="session")
def engine(tiny_model_path: str) -> TransformersEngine:
    """The engine every adapter built with ``dtype=DTYPE`` on the tiny checkpoint shares."""
    return load_engine(ModelSpec(model=tiny_model_path, dtype=DTYPE))


@pytest.fixture
def forwards(engine: TransformersEngine) -> Iterator[ForwardCounter]:
    counter = ForwardCounter(engine.model)
    try:
        yield counter
    finally:
        counter.remove()


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Run the tiny model on one intra-op thread while these tests run.

    The model is far too small to gain from more, and on a shared box another busy process
    makes a second OpenMP thread a straggler every parallel region waits for (10x slower).
    """
    with one_torch_thread():
        yield
