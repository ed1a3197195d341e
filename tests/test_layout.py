"""The package's layers import in one direction, read from the source with ``ast``.

format/ -> errors only; core/ -> format/; local/ and remote/ -> core/ and format/, never each
other; settings/backends -> the backends below; the adapters -> settings/backends and below,
never each other. (That the remote path loads without torch is checked in test_settings.py.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "toolace_integrations"
NAME = "toolace_integrations"

# What each part may import of the package (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "format": {"errors"},
    "core": {"errors", "format"},
    "local": {"errors", "format", "core"},
    "remote": {"errors", "format", "core"},
    "arguments": {"format"},
    "settings": {"errors", "format", "core", "backends", "arguments"},
    "backends": {"errors", "format", "core", "local", "remote"},
    "langchain": {"errors", "format", "core", "settings", "backends", "arguments"},
    "llama_index": {"errors", "format", "core", "settings", "backends", "arguments"},
    "testing": {"errors", "format"},
}
TOP_LEVEL_MODULES = {"errors", "settings", "backends", "arguments"}


def part_of(module: str) -> str:
    """The layer of a dotted module name inside the package (``toolace_integrations`` alone too)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else NAME


def package_imports(path: Path) -> set[str]:
    """Every module of the package that ``path`` imports, eagerly or inside a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == NAME)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == NAME:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    found.add(submodule if _is_module(submodule) else node.module)
    return found


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split(".")[1:])
    return (
        dotted == NAME
        or (PACKAGE / relative).with_suffix(".py").exists()
        or (PACKAGE / relative / "__init__.py").exists()
    )


def layered_modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        part = relative.parts[0]
        if part in ALLOWED or part in TOP_LEVEL_MODULES:
            modules.append((".".join((NAME, *relative.parts)), path))
    return modules


def upward_imports() -> list[str]:
    wrong = []
    for module, path in layered_modules():
        part = part_of(module)
        for imported in sorted(package_imports(path)):
            target = part_of(imported)
            if target != part and target not in ALLOWED[part]:
                wrong.append(f"{module} imports {imported} ({part} may not import {target})")
    return wrong


def test_every_layer_imports_only_what_lies_below_it() -> None:
    assert layered_modules(), "no modules found: has the package moved?"
    assert upward_imports() == []


def test_the_checker_sees_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An arrow against the direction, written into a copy of the package, is reported."""
    copy = tmp_path / NAME
    subprocess.run(["cp", "-r", str(PACKAGE), str(copy)], check=True)
    parsing = copy / "format" / "parsing.py"
    parsing.write_text(parsing.read_text() + "\nfrom toolace_integrations.core import chat\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert upward_imports() == [
        "toolace_integrations.format.parsing imports toolace_integrations.core.chat"
        " (format may not import core)"
    ]
