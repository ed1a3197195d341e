"""Run the example notebooks on the tiny offline model; as a script, save them with outputs.

``make notebooks`` (``python tests/notebook_runner.py``) executes every notebook in
``notebooks/`` and writes it back with its outputs, after checking that no cell raised and
that no output holds an absolute path or a secret. ``tests/test_notebooks.py`` executes them
the same way and compares the fresh run with the committed one.

Each notebook runs in a fresh ``python3`` kernel whose spec points at this interpreter (the
project's virtual environment), never at a python3 kernel installed elsewhere on the machine.
``TOOLACE_MODEL`` is removed from the kernel's environment so the tiny model is used, and
``HF_HUB_OFFLINE=1`` keeps it off the network. Progress bars (writing the tiny checkpoint)
and tqdm's warning that ipywidgets is missing are turned off in the kernel: they print timings
and this machine's paths, not anything the notebooks show.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 120

# What must never be committed in an output: this machine's paths, and things that look like keys.
_LEAKS = re.compile(
    "|".join(
        [
            r"(?<![\w.])/(?:tmp|work|home|root|Users|var|private|opt|usr|mnt)/",
            r"[A-Za-z]:\\\\?Users",
            r"\bhf_[A-Za-z0-9]{20,}",
            r"\bsk-[A-Za-z0-9_-]{20,}",
            re.escape(str(ROOT)),
            re.escape(sys.prefix),
        ]
    )
)


def kernel_manager(kernel_dir: Path) -> AsyncKernelManager:
    """A manager for a ``python3`` kernel that runs this very interpreter."""
    spec = kernel_dir / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    specs = KernelSpecManager(kernel_dirs=[str(kernel_dir)], ensure_native_kernel=False)
    manager = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)
    assert manager.kernel_spec is not None and manager.kernel_spec.argv[0] == sys.executable
    return manager


def kernel_environment() -> dict[str, str]:
    """This process's environment for the kernel, pointed at the tiny model and offline."""
    env = {name: value for name, value in os.environ.items() if name != "TOOLACE_MODEL"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TQDM_DISABLE="1",
        PYTHONWARNINGS="ignore::Warning:tqdm.auto",
    )
    return env


def execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    """The notebook at ``path``, outputs cleared, executed top to bottom in ``workdir``.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised (the message has the cell and
            the traceback).
    """
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        nb,
        km=kernel_manager(workdir / "kernels"),
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        coalesce_streams=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=kernel_environment(), cleanup_kc=True)  # stop the kernel we made
    return nb


def structure(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    """Per cell: its type, its source and the kinds of its outputs, but not what they say.

    A stream output's kind names its stream (``stream:stdout``); others name their
    ``output_type`` and MIME types, so a table that turns into plain text shows as a change.
    """
    cells = []
    for cell in nb.cells:
        kinds = []
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                kinds.append(f"stream:{output.name}")
            elif output.output_type == "error":
                kinds.append(f"error:{output.ename}")
            else:
                kinds.append(f"{output.output_type}:{','.join(sorted(output.get('data', {})))}")
        cells.append((cell.cell_type, cell.source, kinds))
    return cells


def errors(nb: nbformat.NotebookNode) -> list[str]:
    """``ename: evalue`` of every error output."""
    return [
        f"cell {index}: {output.ename}: {output.evalue}"
        for index, cell in enumerate(nb.cells)
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]


def leaks(nb: nbformat.NotebookNode) -> list[str]:
    """Outputs and metadata that hold an absolute path of this machine or something like a key."""
    places = [("notebook metadata", json.dumps(nb.metadata))]
    for index, cell in enumerate(nb.cells):
        places.append((f"cell {index} metadata", json.dumps(cell.metadata)))
        places += [(f"cell {index}", json.dumps(output)) for output in cell.get("outputs", [])]
    return [
        f"{place}: {text[max(0, match.start() - 40) : match.end() + 40]!r}"
        for place, text in places
        if (match := _LEAKS.search(text))
    ]


def save_executed(path: Path) -> None:
    """Execute the notebook at ``path`` and write it back with its outputs.

    Raises:
        RuntimeError: a cell raised, or an output holds a path of this machine or a secret
            (nothing is written then).
    """
    with tempfile.TemporaryDirectory(prefix="toolace-notebook-") as workdir:
        nb = execute(path, Path(workdir))
    problems = errors(nb) + leaks(nb)
    if problems:
        raise RuntimeError(f"{path.name} not saved:\n" + "\n".join(problems))
    nb.metadata.kernelspec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.validate(nb)
    nbformat.write(nb, path)


def main() -> None:
    """Execute and save every notebook, or the ones named on the command line."""
    paths = [Path(name) for name in sys.argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in paths:
        save_executed(path)
        print(f"saved {path.relative_to(ROOT) if path.is_absolute() else path} with outputs")


if __name__ == "__main__":
    main()
