"""The documented thin install, in a venv of its own, runs both agent loops against vLLM.

The module builds a fresh venv from the same base Python (``python -m venv``), installs this
checkout (not editable) with ``[langchain,llama-index,remote]`` as docs/vllm.md says, and runs
``thin_agents.py`` there against the session's vLLM server. Nothing in the dev venv is hidden or
blocked: what the thin venv lacks, it lacks. The install takes a minute or two (pip's cache helps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = "[langchain,llama-index,remote]"


def _base_python() -> str:
    """The Python the dev venv was made from, so the thin venv runs the same interpreter."""
    base = Path(sys.base_prefix, "bin", "python{}.{}".format(*sys.version_info))
    return str(base) if base.exists() else shutil.which("python3") or sys.executable


@pytest.fixture(scope="module")
def thin_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Python of a fresh venv holding only the package and the thin client's extras."""
    work = tmp_path_factory.mktemp("thin")
    source = work / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = work / "venv"
    subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", f"{source}{EXTRAS}"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    return python


def _run(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)  # the installed package, not the checkout's src
    return subprocess.run(
        [python, *args], capture_output=True, text=True, timeout=280, env=env, cwd="/"
    )


def test_the_thin_venv_has_no_torch(thin_python: str) -> None:
    freeze = _run(thin_python, "-m", "pip", "freeze").stdout.lower().split()
    assert not [p for p in freeze if p.split("==")[0] in ("torch", "accelerate", "xgrammar")]
    assert _run(thin_python, "-c", "import torch").returncode != 0
    where = _run(thin_python, "-c", "import toolace_integrations as t; print(t.__file__)").stdout
    assert str(ROOT) not in where  # the installed copy runs, not this checkout


def test_agents_run_from_the_thin_venv_without_torch_or_its_warning(
    thin_python: str, vllm_url: str, vllm_model: str
) -> None:
    script = str(Path(__file__).with_name("thin_agents.py"))
    tests_dir = str(ROOT / "tests")
    done = _run(thin_python, "-X", "importtime", script, vllm_url, vllm_model, tests_dir)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert done.stdout.rstrip().endswith("thin client ok")
    assert "max_input_tokens: 2048" in done.stdout and "context_window: 2048" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")]  # fmt: skip
    assert "transformers" in imported and "jinja2" in imported  # the prompt was rendered
    assert not [name for name in imported if name.split(".")[0] in ("torch", "xgrammar")]
    assert "PyTorch" not in done.stderr
