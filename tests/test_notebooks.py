"""The example notebooks run top to bottom on the tiny offline model and are stored executed.

The committed outputs come from the tiny random-weight model (``make notebooks`` writes them,
see ``tests/notebook_runner.py``); a fresh run must give the same cells with outputs of the same
kinds, and no error. What random weights write may differ from run to run, so the text of the
outputs is not compared, only what each notebook's cells must print (``EXPECTED``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from notebook_runner import NOTEBOOKS, errors, execute, leaks, structure

# Patterns each notebook's printed output must contain, beyond running without an error.
EXPECTED = {
    "01_langchain_quickstart.ipynb": [
        r"tool_choice='get_time':\n    calls: \[\"get_time\(\{'city': '(Paris|Tokyo|Lima)'\}\)",
        r"parallel_tool_calls=False:\n    1 call: \['\w+'\]",
        r"tool call:   get_weather \{'city': '(Paris|Tokyo|Lima)'\} call_\w+",
        r"tool result: Sunny and 21 degrees in \w+\. \| for call call_\w+",
        r"\nget_weather\|\{\"city\": \|",  # a streamed call: its name, then its arguments
        r"streamed tool_calls: \[\('get_weather'",
        r"Forecast\(city='\w+', sunny=(True|False)\)\nis a Forecast: True",
        r"<\|start_header_id\|>ipython<\|end_header_id\|>\n\n\[\{\"name\": \"get_weather\"",
        r"concurrent ainvoke calls: \[\('get_weather', .*\), \('get_weather', ",
    ],
    "02_langgraph_agent.ipynb": [
        r"Tool Message",
        r"\[tools\] =+ Tool Message",
        r"\d+ messages in thread 'trip-to-paris':\n\s+human: \"What's the weather in Paris\?\"",
        r"human: 'Book a table for two tonight\.'",
        r"messages in a fresh thread: 0",
    ],
    "03_llama_index.ipynb": [
        r"tool_id='call_\w+' tool_name='(get_weather|set_alarm)'",
        r"\[ToolSelection\(tool_id='call_\w+', tool_name='get_weather'",
        r"ran: (get_weather|set_alarm) \{.*\} -> (Sunny|Alarm set)",
        r"tool get_weather\(\{'city': '\w+'\}\) -> Sunny and 21 degrees",
        r"tool calls made: \[\('get_weather'",
        r"\d+ pieces; finish reason: (length|stop)",
        # a streamed call: the name first, then the arguments so far, then the whole call
        r"\nget_weather \{\} \| (get_weather \{.*\} \| )*"
        r"get_weather \{'city': '(Paris|Tokyo|Lima)'\} \| \n",
        r"acomplete: ",
    ],
}


def _stdout(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed, without terminal colour codes."""
    text = "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_as_committed(name: str, tmp_path: Path) -> None:
    committed = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb = execute(NOTEBOOKS / name, tmp_path)  # raises CellExecutionError on any error

    assert not errors(nb)
    fresh, stored = structure(nb), structure(committed)
    assert len(fresh) == len(stored)
    for index, (now, then) in enumerate(zip(fresh, stored, strict=True)):
        differs = [
            f"{what}: fresh {a!r}, committed {b!r}"
            for what, a, b in zip(("type", "source", "output kinds"), now, then, strict=True)
            if a != b
        ]
        assert not differs, (
            f"{name} cell {index} differs from the committed notebook (`make notebooks` saves "
            "a fresh run): " + "; ".join(differs)
        )
    stdout = _stdout(nb)
    assert "model: tiny random-weight stand-in" in stdout
    for pattern in EXPECTED[name]:
        assert re.search(pattern, stdout), f"{name}: no match for {pattern!r} in:\n{stdout}"
        assert re.search(pattern, _stdout(committed)), f"{name}: committed outputs lack {pattern!r}"


def test_every_notebook_is_checked() -> None:
    assert sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_is_stored_executed_and_clean(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    first = nb.cells[1]
    assert first.cell_type == "code" and "MODEL =" in first.source, "model cell comes first"
    notes = [cell.source for cell in nb.cells[:4] if cell.cell_type == "markdown"]
    assert any("outputs saved in this notebook come from" in note for note in notes), (
        f"{name} must say, before the first output, that its outputs come from the tiny model"
    )
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{name} is not stored as one top-to-bottom run (`make notebooks` saves it)"
    )
    assert all("execution" not in cell.metadata for cell in code), "no timing metadata"
    assert not errors(nb)
    assert not leaks(nb), f"{name} outputs hold paths of this machine or secrets: {leaks(nb)}"
