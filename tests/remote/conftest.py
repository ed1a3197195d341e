"""A real vLLM server on 127.0.0.1 serving a tiny checkpoint, shared by the remote tests.

The server needs vLLM's own environment (``make test`` creates it; ``TOOLACE_VLLM_PYTHON`` names
another). When vLLM cannot start, the tests that need it fail with the server's log tail; set
``TOOLACE_SKIP_VLLM=1`` to skip them instead on a machine that cannot run vLLM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _servers import Proxy, running_vllm

from toolace_integrations.local.engine import ModelSpec, TransformersEngine, load_engine
from toolace_integrations.testing import make_tiny_toolace


@pytest.fixture(scope="session")
def vllm_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny checkpoint with Meta's Llama-3.1 tokenizer and hidden size 128.

    vLLM-CPU needs a head size of 32 or more; the real 128k vocabulary makes the ids on the
    wire, the grammar's token masks and the server's detokenization those of ToolACE-8B.
    """
    folder = Path(tmp_path_factory.mktemp("vllm-model"))
    return make_tiny_toolace(folder, hidden=128, tokenizer="llama3")


@pytest.fixture(scope="session")
def vllm_url(vllm_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``/v1`` URL of a vLLM server on ``vllm_model``, stopped at the end of the session."""
    with running_vllm(vllm_model, tmp_path_factory.mktemp("vllm") / "server.log") as url:
        yield url


@pytest.fixture(scope="session")
def vllm_engine(vllm_model: str) -> TransformersEngine:
    """The local engine on the very checkpoint the server serves."""
    return load_engine(ModelSpec(model=vllm_model))


@pytest.fixture
def proxy(vllm_url: str) -> Iterator[Proxy]:
    """A recording proxy in front of the vLLM server."""
    front = Proxy(vllm_url)
    yield front
    front.close()
