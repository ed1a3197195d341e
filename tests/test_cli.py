"""The demo tools, the demo model's training, and the ``toolace-integrations`` command."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability._hooks import steer
from toolace_integrations import demo
from toolace_integrations.cli import main
from toolace_integrations.core.encoding import PromptEncoder, load_tokenizer
from toolace_integrations.core.generation import ModelSpec
from toolace_integrations.format.prompt import render_messages
from toolace_integrations.format.tool_json import tool_schema_for_prompt
from toolace_integrations.local.engine import load_engine


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A command that trains the default demo model by mistake does it in a scratch folder."""
    monkeypatch.setenv("TOOLACE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _progress_bars_restored() -> Iterator[None]:
    """The CLI turns transformers' progress bars off for its process; give them back after."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    yield
    if enabled:
        hf_logging.enable_progress_bar()


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A demo-shaped model after a few training steps: the plumbing is real, answers are noise.

    Tests that need particular answers script them with :func:`steer`; none depends on what
    training taught the model (that is measured by ``demo --evaluate``, not tested).
    """
    return demo.train_demo_model(tmp_path_factory.mktemp("demo") / "m", steps=4, copy_steps=2)


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, str]]]:
    """Every conversation the model generates from, in order, as role/content messages.

    Prompts only counted (the chat's window check) are not recorded.
    """
    from toolace_integrations.local.engine import TransformersEngine

    seen: list[list[dict[str, str]]] = []
    prepare = TransformersEngine.prepare

    def recording(self: TransformersEngine, request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append([dict(m) for m in request.messages])
        return prepare(self, request, *args, **kwargs)

    monkeypatch.setattr(TransformersEngine, "prepare", recording)
    return seen


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("12 * 7", 84),
        ("(12 + 30) * 7", 294),
        ("2 ** 10", 1024),
        ("-3 + 4.5", 1.5),
        ("10 / 4", 2.5),
        ("1 / 3", 0.3333),
        ("17 % 5", 2),
        ("  2*(3+4)  ", 14),
    ],
    ids=["mul", "parens", "pow", "unary", "div", "rounded", "mod", "spacing"],
)
def test_calculator_computes(expression: str, expected: float) -> None:
    assert demo.calculator(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo hi')",
        "x + 1",
        "abs(-1)",
        "(1).real",
        "[1, 2]",
        "'a' * 3",
        "True + 1",
        "1 if 1 else 2",
        "lambda: 1",
        "2 ** 100000",
        "10 ** 10 ** 10",
        "2 ** 4000 * 2 ** 4000",
        "1e308 * 10",
        "(-8) ** 0.5",
        "1 / 0",
        "5 % 0",
        "9" * 300,
        "",
        "1 +",
        "1\x00",
    ],
    ids=[
        "import", "name", "call", "attribute", "list", "string", "bool", "ifexp", "lambda",
        "huge-exponent", "tower", "huge-product", "overflow", "complex", "div-zero",
        "mod-zero", "too-long", "empty", "syntax", "nul",
    ],
)  # fmt: skip
def test_calculator_rejects_everything_but_bounded_arithmetic(expression: str) -> None:
    with pytest.raises(ValueError):
        demo.calculator(expression)


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (3.5, "km", "mi", 2.17),
        (100, "celsius", "fahrenheit", 212.0),
        (32, "fahrenheit", "celsius", 0.0),
        (10, "lb", "kg", 4.54),
        (1, "mi", "ft", 5280.0),
        (5, "m", "m", 5.0),
    ],
)
def test_convert_units(value: float, source: str, target: str, expected: float) -> None:
    assert demo.convert_units(value, source, target) == expected


@pytest.mark.parametrize(("source", "target"), [("kg", "km"), ("parsec", "m"), ("m", "celsius")])
def test_convert_units_rejects_unknown_or_mismatched_units(source: str, target: str) -> None:
    with pytest.raises(ValueError, match="unit|convert"):
        demo.convert_units(1, source, target)


def test_tool_specs_match_the_functions_and_the_ready_tools() -> None:
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from toolace_integrations.format.tools import normalize_tools

    for tool in demo.DEMO_TOOLS:
        arguments = list(tool.func.__code__.co_varnames[: tool.func.__code__.co_argcount])
        assert list(tool.spec.properties) == arguments == tool.spec.required
    ready = [convert_to_openai_tool(tool) for tool in demo.langchain_tools()]
    assert [tool_schema_for_prompt(spec) for spec in normalize_tools(ready)] == [
        tool_schema_for_prompt(tool.spec) for tool in demo.DEMO_TOOLS
    ]


def _renderings(tools: list[Any]) -> list[dict[str, Any]]:
    from toolace_integrations.format.tools import normalize_tools

    return [tool_schema_for_prompt(spec) for spec in normalize_tools(tools)]


def test_the_model_is_trained_on_every_way_the_frameworks_wrap_the_tools() -> None:
    """@tool, FunctionTool.from_defaults and the ready tools render as one of the training lists."""
    from langchain_core.tools import tool
    from langchain_core.utils.function_calling import convert_to_openai_tool
    from llama_index.core.tools import FunctionTool

    functions = [t.func for t in demo.DEMO_TOOLS]
    trained = [[tool_schema_for_prompt(spec) for spec in specs] for specs in demo.tool_renderings()]
    wrapped = {
        "langchain @tool": [convert_to_openai_tool(tool(f)) for f in functions],
        "langchain ready": [convert_to_openai_tool(t) for t in demo.langchain_tools()],
        "llama_index from_defaults": [
            FunctionTool.from_defaults(f).metadata.to_openai_tool() for f in functions
        ],
        "llama_index ready": [t.metadata.to_openai_tool() for t in demo.llama_index_tools()],
    }
    for how, tools in wrapped.items():
        assert _renderings(tools) in trained, how


def test_sample_dialog_is_seeded_and_its_results_are_the_tools_own() -> None:
    def texts(seed: int) -> list[list[dict[str, str]]]:
        rng = random.Random(seed)
        return [render_messages(demo.sample_dialog(rng)) for _ in range(50)]

    assert texts(3) == texts(3) != texts(4)
    functions = {tool.spec.name: tool.func for tool in demo.DEMO_TOOLS}
    rng = random.Random(5)
    for _ in range(100):
        dialog = demo.sample_dialog(rng)
        if len(dialog) == 4:
            (call,) = dialog[1].tool_calls
            assert dialog[2].content == json.dumps(functions[call.name](**call.arguments))
            assert dialog[2].content in dialog[3].content


def test_default_model_dir_follows_toolace_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOOLACE_CACHE", str(tmp_path))
    assert demo.default_demo_model_dir() == tmp_path / demo.DEMO_MODEL_VERSION


def test_ensure_demo_model_trains_once_and_leaves_no_partial_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_training(monkeypatch)
    target = tmp_path / "model"
    assert demo.ensure_demo_model(target) == str(target)
    assert demo.ensure_demo_model(target) == str(target)
    assert len(calls) == 1 and calls[0] != target
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _fake_training(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace training by writing the marker alone; returns the folders it was asked to fill."""
    calls: list[Path] = []

    def fake_train(path: Path, **kwargs: object) -> str:
        calls.append(Path(path))
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "demo-model.json").write_text("{}")
        return str(path)

    monkeypatch.setattr(demo.training, "train_demo_model", fake_train)
    return calls


def test_ensure_demo_model_never_deletes_a_user_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = _fake_training(monkeypatch)
    user = tmp_path / "notes"
    user.mkdir()
    (user / "thesis.txt").write_text("five years of work")
    with pytest.raises(demo.NotADemoModelError, match="is not a demo model.*another path"):
        demo.ensure_demo_model(user)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(demo.NotADemoModelError):
        demo.ensure_demo_model(tmp_path / "file")
    assert (user / "thesis.txt").read_text() == "five years of work"
    assert (tmp_path / "file").read_text() == "mine"
    assert calls == []  # refused before minutes of training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "notes"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert demo.ensure_demo_model(empty) == str(empty)  # an empty folder is filled
    assert (empty / "demo-model.json").is_file()


def test_ensure_demo_model_keeps_a_folder_filled_while_it_trained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "model"

    def user_writes_during_training(path: Path, **kwargs: object) -> str:
        target.mkdir()
        (target / "mine.txt").write_text("keep")
        (Path(path) / "demo-model.json").write_text("{}")
        return str(path)

    monkeypatch.setattr(demo.training, "train_demo_model", user_writes_during_training)
    with pytest.raises(demo.NotADemoModelError):
        demo.ensure_demo_model(target)
    assert (target / "mine.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no scratch folder left


def test_training_is_deterministic_and_loadable(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    steps: list[tuple[int, int]] = []
    first = demo.train_demo_model(
        tmp_path / "a", steps=3, copy_steps=2, progress=lambda s, n, _: steps.append((s, n))
    )
    second = demo.train_demo_model(tmp_path / "b", steps=3, copy_steps=2)
    assert steps == [(i, 5) for i in range(1, 6)]
    weights = [load_file(Path(folder) / "model.safetensors") for folder in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])
    assert json.loads((Path(first) / "demo-model.json").read_text())["steps"] == 3
    AutoModelForCausalLM.from_pretrained(first)


def test_training_tokens_are_the_inference_prompt(demo_model: str) -> None:
    encoder = demo.training.DialogEncoder(PromptEncoder(load_tokenizer(demo_model)))
    rng = random.Random(7)
    conversation = demo.sample_conversation(rng)
    while len(conversation) < 8:
        conversation = demo.sample_conversation(rng)
    tools = demo.tool_renderings()[2]
    ids, labels = encoder.encode(conversation, tools)
    engine = load_engine(ModelSpec(demo_model))
    prompt = engine.encode(render_messages(conversation[:7], tools))
    assert ids[: len(prompt)] == prompt
    tail = engine.tokenizer.decode(ids[len(prompt) :])
    assert tail == conversation[7].content + "<|eot_id|>"
    learned = [token for token, label in zip(ids, labels, strict=True) if label != -100]
    trained = engine.tokenizer.decode(learned)
    assistant_turns = sum(m.role == "assistant" for m in conversation)
    assert trained.count("<|eot_id|>") == assistant_turns and conversation[3].content in trained


def _tool_messages(conversation: list[dict[str, str]]) -> list[str]:
    return [m["content"] for m in conversation if m["role"] == "ipython"]


def test_demo_runs_every_call_and_feeds_results_back(
    demo_model: str, prompts: list[list[dict[str, str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the model calls is printed and run; results and tool errors reach the model."""
    engine = load_engine(ModelSpec(demo_model))
    script = ['[calculator(expression="12 12")]', '[calculator(expression="12 * 7")]', "It is 84."]
    with steer(engine, *script) as unused:
        assert main(["demo", "--model", demo_model, "--question", "What is 12 * 7?"]) == 0
    assert not unused
    out = capsys.readouterr().out
    assert "User: What is 12 * 7?" in out
    assert '    call   calculator {"expression": "12 12"}  id=call_' in out
    assert "  tool   calculator -> Error: '12 12' is not an arithmetic expression" in out
    assert '    call   calculator {"expression": "12 * 7"}  id=call_' in out
    assert "  tool   calculator -> 84  (" in out
    assert re.search(r"^Assistant: It is 84\.$", out, re.MULTILINE)
    assert len(re.findall(r"model  [\d.]+ s, \d+ prompt \+ \d+ new tokens", out)) == 3
    assert [len(_tool_messages(p)) for p in prompts] == [0, 1, 2]
    assert "Error: '12 12' is not an arithmetic expression" in _tool_messages(prompts[1])[0]
    assert "84" in _tool_messages(prompts[2])[1]


def test_chat_keeps_the_conversation_and_calls_tools_in_later_turns(
    demo_model: str,
    prompts: list[list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = iter(["Convert 3.5 km to mi.", "", "What is 12 * 7?", "exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    script = [
        '[convert_units(value=3.5, from_unit="km", to_unit="mi")]',
        "3.5 km is 2.17 mi.",
        '[calculator(expression="12 * 7")]',
        "The result is 84.",
    ]
    with steer(load_engine(ModelSpec(demo_model)), *script) as unused:
        assert main(["chat", "--model", demo_model]) == 0
    assert not unused
    out = capsys.readouterr().out
    assert out.count("User: ") == 2
    assert "  tool   convert_units -> 2.17  (" in out and "  tool   calculator -> 84  (" in out
    second_turn = prompts[2]
    assert [m["content"] for m in second_turn if m["role"] == "user"] == [
        "Convert 3.5 km to mi.",
        "What is 12 * 7?",
    ]
    assert "3.5 km is 2.17 mi." in [m["content"] for m in second_turn]


def test_chat_ends_on_eof(
    monkeypatch: pytest.MonkeyPatch, demo_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert main(["chat", "--model", demo_model]) == 0
    assert "(toolace prompt)" in capsys.readouterr().out  # detected: the default family


def test_chat_takes_another_familys_prompt(
    monkeypatch: pytest.MonkeyPatch, demo_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _type(monkeypatch, "Hi")
    argv = ["chat", "--model", demo_model, "--prompt-format", "llama3.2", "--max-new-tokens", "8"]
    assert main([*argv, "--max-steps", "1"]) == 0
    assert "(llama3.2 prompt)" in capsys.readouterr().out


def test_random_weights_run_the_same_plumbing(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--random-weights", "--question", "Hi", "--max-new-tokens", "8"]
    assert main([*argv, "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "random weights" in out and "User: Hi" in out and "total" in out


def test_evaluate_reports_held_out_accuracy(
    demo_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--model", demo_model, "--evaluate", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"2 held-out questions: right tool \d+%, calls exactly right \d+%", out)


@pytest.mark.parametrize("command", ["demo", "chat"])
def test_help_shows_examples_one_a_line(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert "examples:" in lines and "  toolace-integrations demo" in lines
    assert any(line.startswith("  toolace-integrations demo --model Team-ACE/") for line in lines)
    assert main([]) == 2


@pytest.fixture(scope="module")
def small_window_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny model with a 640-token window: the demo tools' prompt and a few turns fill it."""
    from toolace_integrations.testing import make_tiny_toolace

    return make_tiny_toolace(tmp_path_factory.mktemp("window"), max_position_embeddings=640)


def _type(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    typed = iter([*lines, "exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))


def test_chat_drops_the_oldest_turns_when_the_window_fills(
    small_window_model: str,
    prompts: list[list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    questions = [f"What is {n} * 7?" for n in range(1, 21)]
    _type(monkeypatch, *questions)
    engine = load_engine(ModelSpec(small_window_model))
    with steer(engine, *[f"It is {7 * n}." for n in range(1, 21)]) as unused:
        assert main(["chat", "--model", small_window_model, "--max-new-tokens", "16"]) == 0
    assert not unused
    out = capsys.readouterr().out
    assert out.count("Assistant: It is ") == 20
    outgrew = r"^  \(the conversation outgrew the model's 640-token window: dropped the oldest "
    dropped = re.findall(outgrew + r"(?:turn|\d+ turns)\)$", out, re.MULTILINE)
    assert dropped and "Traceback" not in out
    assert len(prompts) == 20
    for asked, prompt in enumerate(prompts, start=1):
        users = [m["content"] for m in prompt if m["role"] == "user"]
        assert users == questions[asked - len(users) : asked]  # the latest turns, whole
        assert len(engine.encode(prompt)) + 16 <= 640
    assert len([m for m in prompts[-1] if m["role"] == "user"]) < 20


def test_chat_reports_a_message_too_long_alone_and_goes_on(
    small_window_model: str,
    prompts: list[list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _type(monkeypatch, "What is 2 * 3?", "pasted " * 300, "What is 12 * 7?")
    engine = load_engine(ModelSpec(small_window_model))
    with steer(engine, "It is 6.", "It is 84.") as unused:
        assert main(["chat", "--model", small_window_model, "--max-new-tokens", "16"]) == 0
    assert not unused
    out = capsys.readouterr().out
    refusals = [line for line in out.splitlines() if line.startswith("  (not answered:")]
    assert len(refusals) == 1 and "this turn is too long for the model" in refusals[0]
    assert "Assistant: It is 84." in out
    users = [m["content"] for m in prompts[-1] if m["role"] == "user"]
    assert users == ["What is 2 * 3?", "What is 12 * 7?"]  # the long one was never sent


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A local port nothing listens on (bound, never listening: connections are refused)."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["chat", "--model", "./no-such-folder"], "There is no folder './no-such-folder'"),
        (["chat", "--max-new-tokens", "0"], "argument --max-new-tokens: must be at least 1, got 0"),
        (["demo", "--max-new-tokens", "x"], "argument --max-new-tokens: expected a whole number"),
        (["demo", "--evaluate", "-3"], "argument --evaluate: must be at least 1, got -3"),
        (["demo", "--evaluate", "0"], "argument --evaluate: must be at least 1, got 0"),
        (["demo", "--max-steps", "0"], "argument --max-steps: must be at least 1, got 0"),
        (["chat", "--base-url", "http://x/v1", "--retrain"], "--base-url uses the server's model"),
        (["demo", "--base-url", "http://127.0.0.1:{port}/v1"], "is the server running?"),
    ],
    ids=["model-path", "max-new-tokens", "not-a-number", "evaluate-negative", "evaluate-zero",
         "max-steps", "base-url-retrain", "server-down"],
)  # fmt: skip
def test_user_errors_end_with_one_error_line(
    argv: list[str], message: str, refused_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [arg.replace("{port}", str(refused_port)) for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: toolace-integrations ") and "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"toolace-integrations {argv[0]}: error: ") and message in last


def test_max_new_tokens_filling_the_window_is_an_error(
    small_window_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["chat", "--model", small_window_model, "--max-new-tokens", "640"])
    assert exit_info.value.code == 2
    assert (
        "--max-new-tokens 640 leaves no room for a prompt in the model's 640-token"
        in (capsys.readouterr().err.splitlines()[-1])
    )


def test_demo_question_too_long_is_one_line_and_exit_1(
    small_window_model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--model", small_window_model, "--question", "pasted " * 300]
    assert main(argv) == 1
    assert "  (not answered: this turn is too long for the model: " in capsys.readouterr().out


def _interrupted_training(path: Path, **kwargs: object) -> str:
    Path(path).mkdir(parents=True, exist_ok=True)
    (Path(path) / "config.json").write_text("{}")
    raise KeyboardInterrupt


def test_interrupted_training_removes_its_partial_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(demo.training, "train_demo_model", _interrupted_training)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_model(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_partial_folders_of_dead_processes_are_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    dead = tmp_path / f"model.partial-{_dead_pid()}"
    alive = tmp_path / f"model.partial-{os.getppid()}"  # pytest's parent: running
    for folder in (dead, alive):
        folder.mkdir()
    monkeypatch.setattr(demo.training, "train_demo_model", _interrupted_training)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_model(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]


def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_ctrl_c_while_training_prints_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOOLACE_CACHE", str(tmp_path))
    monkeypatch.setattr(demo.training, "train_demo_model", _interrupted_training)
    assert main(["demo"]) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "Interrupted." and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
