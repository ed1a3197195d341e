"""The demo tools, the demo model's training, and the ``toolace-integrations`` command."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from reliability._hooks import steer
from toolace_integrations import demo
from toolace_integrations.cli import main
from toolace_integrations.core.encoding import PromptEncoder, load_tokenizer
from toolace_integrations.core.generation import ModelSpec
from toolace_integrations.format.prompt import render_messages, tool_schema_for_prompt
from toolace_integrations.local.engine import load_engine


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A demo-shaped model after a few training steps: the plumbing is real, answers are noise.

    Tests that need particular answers script them with :func:`steer`; none depends on what
    training taught the model (that is measured by ``demo --evaluate``, not tested).
    """
    return demo.train_demo_model(tmp_path_factory.mktemp("demo") / "m", steps=4, copy_steps=2)


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, str]]]:
    """Every conversation the model is prompted with, in order, as role/content messages."""
    seen: list[list[dict[str, str]]] = []
    encode = PromptEncoder.encode

    def recording(self: PromptEncoder, messages: Any) -> list[int]:
        seen.append([dict(m) for m in messages])
        return encode(self, messages)

    monkeypatch.setattr(PromptEncoder, "encode", recording)
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


def test_chat_ends_on_eof(monkeypatch: pytest.MonkeyPatch, demo_model: str) -> None:
    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert main(["chat", "--model", demo_model]) == 0


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


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--model Team-ACE/ToolACE-8B" in out
    assert main([]) == 2
