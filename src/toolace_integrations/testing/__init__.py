"""Helpers for tests, notebooks and benchmarks: tiny offline checkpoints and a test vLLM server.

:mod:`.checkpoints` writes random-weight ToolACE-shaped models (toy or real Llama-3.1 tokenizer)
that load through the real ``from_pretrained`` path; :mod:`.vllm_server` starts a real vLLM
server on loopback from a vLLM environment it is told about. The serving path (format, core,
local, remote, the adapters) never imports this package; only the demo and the CLI build their
small models with it.
"""

from toolace_integrations.testing.checkpoints import (
    cache_dir,
    llama3_tiktoken_file,
    llama3_tokenizer,
    make_tiny_toolace,
)

__all__ = ["cache_dir", "llama3_tiktoken_file", "llama3_tokenizer", "make_tiny_toolace"]
