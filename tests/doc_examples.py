"""The code examples of the README, docs/vllm.md and the package's docstrings, found and run.

``tests/test_docs.py`` runs the examples on the tiny model; ``tests/remote/test_docs_vllm.py``
runs the ones that name a vLLM server against the test vLLM server. Before an example runs,
two substitutions are made in its text, and no others:

- ``Team-ACE/ToolACE-8B`` (``MODEL_ID``) becomes the tiny random-weight checkpoint's folder;
  ``device_map="auto"`` stays (it loads on the CPU when there is no GPU).
- ``http://gpu-host:8000/v1`` (``SERVER_URL``) becomes the test vLLM server's URL; an example
  that names it runs only against that server.

What is run: every ``python`` block in the Markdown files, every ``.. code-block:: python`` or
fenced python block in a docstring (in its module's namespace, as a reader would have it), and
every ``>>>`` example in a docstring (as a doctest, with ``ELLIPSIS``). ``bash`` blocks are
commands for a terminal and are not run; every command in them must start with one of
``SKIPPED_COMMANDS``, which says why it is not run. A block in any other language fails.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
import re
import textwrap
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", ROOT / "docs" / "vllm.md"]
PACKAGE = ROOT / "src" / "toolace_integrations"
MODEL_ID = "Team-ACE/ToolACE-8B"
SERVER_URL = "http://gpu-host:8000/v1"

# Command prefixes of bash blocks, and why the suite does not run them.
SKIPPED_COMMANDS = {
    "make ": "the project's own entry points: `make test` is this suite, `make demo` trains the "
    "demo model (minutes) and `make notebooks` rewrites the notebooks "
    "(tests/test_notebooks.py runs them)",
    "toolace-integrations ": "the CLI: tests/test_cli.py runs demo and chat on tiny models",
    "pip install ": "installs packages",
    "vllm serve ": "serves the real ToolACE-8B weights on GPUs (tests/remote serves a tiny model)",
    "ray ": "needs a Ray cluster of GPU nodes",
    "curl ": "needs a running vLLM server (tests/remote reads its /v1/models)",
}

_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_CODE_BLOCK = re.compile(r"^(\s*)\.\. code-block:: python\s*$")


@dataclass(frozen=True)
class Example:
    """One code example: where it is, its language and its text (lines as in the file)."""

    path: Path
    line: int  # the file line of the example's first line
    language: str  # "python", "doctest", "bash" or whatever the fence says
    code: str
    module: str | None = None  # the module whose namespace a docstring example runs in

    @property
    def location(self) -> str:
        """``path:line``, relative to the repository."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def remote(self) -> bool:
        """Whether the example talks to a vLLM server."""
        return SERVER_URL in self.code


def _fenced_blocks(text: str, path: Path, first_line: int, module: str | None) -> Iterator[Example]:
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not _FENCE.match(lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{path}:{first_line + index}: a code fence that never closes")
        code = textwrap.dedent("\n".join(lines[index + 1 : end]))
        language = opening.group(2) or "(none)"
        yield Example(path, first_line + index + 1, language, code, module)
        index = end + 1


def markdown_examples() -> list[Example]:
    """Every fenced block of the Markdown documents."""
    return [
        example for path in MARKDOWN for example in _fenced_blocks(path.read_text(), path, 1, None)
    ]


def _code_blocks(text: str, path: Path, first_line: int, module: str) -> Iterator[Example]:
    lines = text.split("\n")
    for index, line in enumerate(lines):
        directive = _CODE_BLOCK.match(line)
        if not directive:
            continue
        indent, body = len(directive.group(1)), []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        start = next(i for i, text in enumerate(body) if text.strip())
        code = textwrap.dedent("\n".join(body[start:])).rstrip() + "\n"
        yield Example(path, first_line + index + 1 + start, "python", code, module)


def docstring_examples() -> list[Example]:
    """Every example in the package's docstrings: doctests and python code blocks."""
    examples = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            ):
                continue
            first = node.body[0] if node.body else None
            if not (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                continue
            text, line = first.value.value, first.lineno  # docstring line i is file line + i
            if ">>>" in text:
                examples.append(Example(path, line, "doctest", text, module))
            examples += _code_blocks(text, path, line, module)
            examples += [
                example
                for example in _fenced_blocks(text, path, line, module)
                if example.language in ("python", "py")
            ]
    return examples


def substitute(code: str, model: str, server_url: str | None = None) -> str:
    """The example's text with the model id (and the server URL) replaced; see the module doc."""
    code = code.replace(MODEL_ID, model)
    return code.replace(SERVER_URL, server_url) if server_url else code


def _namespace(example: Example) -> dict[str, Any]:
    if example.module is None:
        return {"__name__": "__doc_example__"}
    return dict(vars(importlib.import_module(example.module)))


def run(example: Example, model: str, server_url: str | None = None) -> None:
    """Run a python or doctest example; any failure raises ``AssertionError`` naming its place.

    Raises:
        AssertionError: the example raised, or a doctest printed something else; the message
            starts with ``path:line`` and holds the traceback or the doctest report.
    """
    code = substitute(example.code, model, server_url)
    if example.language == "doctest":
        _run_doctest(example, code)
        return
    # Blank lines in front, so tracebacks give the line numbers of the file itself.
    compiled = compile("\n" * (example.line - 1) + code, str(example.path), "exec")
    try:
        exec(compiled, _namespace(example))
    except Exception as error:
        report = "".join(traceback.format_exception(error))
        raise AssertionError(f"{example.location}: the example failed:\n{report}") from error


def _run_doctest(example: Example, code: str) -> None:
    name = f"{example.module} docstring at line {example.line}"
    test = doctest.DocTestParser().get_doctest(
        code, _namespace(example), name, str(example.path), example.line - 1
    )
    if any(item.options.get(doctest.SKIP) for item in test.examples):
        raise AssertionError(f"{example.location}: a doctest example is skipped; run them all")
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=report.write, clear_globs=True)
    if result.failed:
        raise AssertionError(f"{example.location}: the doctest failed:\n{report.getvalue()}")


def commands(example: Example) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blanks dropped."""
    joined = re.sub(r"\\\n\s*", " ", example.code)
    return [
        line.strip()
        for line in joined.split("\n")
        if line.strip() and not line.strip().startswith("#")
    ]


def skip_reason(command: str) -> str | None:
    """Why a bash command is not run, or ``None`` when no entry of ``SKIPPED_COMMANDS`` fits."""
    return next(
        (why for prefix, why in SKIPPED_COMMANDS.items() if command.startswith(prefix)), None
    )
