"""BFCL conformance: the 1,000 non-live single-turn BFCL v4 entries, with the real Llama-3.1 vocab.

Every tool set must bind (or be refused with a listed reason), render and compile; every ground
truth that satisfies its own schema, written in ToolACE's syntax, must parse back to exactly
those calls and be accepted token by token by the grammar compiled for its tools under
``tool_choice="required"`` (the grammar's completeness). A random-weight model forced on a
sample of the tool sets is the soundness check: every call it completes validates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest

from bfcl_data import CATEGORIES, Entry, first_answer, load_entries
from toolace_integrations.core.encoding import PromptEncoder
from toolace_integrations.errors import ToolSpecError
from toolace_integrations.format.parsing import format_tool_calls, parse_tool_calls
from toolace_integrations.format.prompt import Message, render_messages
from toolace_integrations.format.schema import to_json_schema
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.local.grammar import GrammarConstraint, tool_call_grammar
from toolace_integrations.testing import llama3_tokenizer

xgrammar = pytest.importorskip("xgrammar")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

STOP = (128001, 128008, 128009)  # <|end_of_text|>, <|eom_id|>, <|eot_id|>


@dataclass
class Report:
    """What the conformance pass found, entry by entry."""

    entries: int = 0
    accepted: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    inconsistent: list[tuple[str, str]] = field(default_factory=list)
    checked: int = 0
    reordered: int = 0
    parse_failures: list[tuple[str, str]] = field(default_factory=list)
    grammar_failures: list[tuple[str, str]] = field(default_factory=list)
    specs: dict[str, list[FunctionSpec]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        parsed = self.checked - len(self.parse_failures)
        accepted = self.checked - len(self.grammar_failures)
        lines = [
            f"BFCL v4 {'/'.join(CATEGORIES)}: {self.entries} entries, "
            f"{self.accepted} tool sets accepted (bound, rendered, compiled), "
            f"{len(self.refused)} refused",
            f"  ground truths checked: {self.checked} (schema-consistent; {self.reordered} "
            "written in schema order), "
            f"parsed exactly: {parsed}/{self.checked}, accepted by the grammar token by token "
            f"(real tokenizer, tool_choice='required'): {accepted}/{self.checked}",
            f"  excluded, ground truth violates its own schema: {len(self.inconsistent)}",
        ]
        lines += [f"    {entry}: {reason}" for entry, reason in self.inconsistent]
        lines += [f"  refused tool set {entry}: {reason}" for entry, reason in self.refused]
        return lines


def _schema_problem(calls: list[tuple[str, dict[str, Any]]], specs: list[FunctionSpec]) -> str:
    by_name = {spec.name: spec for spec in specs}
    for name, arguments in calls:
        if name not in by_name:
            return f"calls {name!r}, which is not among its functions"
        if unknown := sorted(set(arguments) - set(by_name[name].properties)):
            return f"{name}: passes {unknown}, which are not among its parameters"
        validator = jsonschema.Draft202012Validator(to_json_schema(by_name[name].parameters))
        error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
        if error is not None:
            return f"{name}: at {error.json_path}: {error.message}"[:160]
    return ""


def _in_schema_order(
    calls: list[tuple[str, dict[str, Any]]], specs: list[FunctionSpec]
) -> list[tuple[str, dict[str, Any]]]:
    """Arguments in the schema's order: the order the grammar (and the prompt) fix."""
    by_name = {spec.name: spec for spec in specs}
    ordered = []
    for name, arguments in calls:
        order = list(by_name[name].properties)
        ordered.append((name, dict(sorted(arguments.items(), key=lambda kv: order.index(kv[0])))))
    return ordered


def _accepts(matcher: Any, tokens: list[int]) -> bool:
    return all(matcher.accept_token(token) for token in tokens) and matcher.is_terminated()


def _check(entry: Entry, report: Report, tokenizer: Any, constraint: GrammarConstraint) -> None:
    llm = ChatToolACE(model="bfcl-unloaded")  # construction loads nothing
    try:
        bound = llm.bind_tools(entry.functions, tool_choice="required")
        specs = normalize_tools(bound.kwargs["tools"])
    except ToolSpecError as error:
        report.refused.append((entry.id, str(error)))
        return
    prompt = PromptEncoder(tokenizer).encode(
        render_messages([Message("user", entry.question)], specs)
    )
    assert prompt[0] == tokenizer.bos_token_id and len(prompt) > 200
    compiled = constraint.compile(tool_call_grammar(specs, ToolChoice("required")))
    report.accepted += 1
    report.specs[entry.id] = specs
    calls = first_answer(entry)
    if problem := _schema_problem(calls, specs):
        report.inconsistent.append((entry.id, problem))
        return
    report.checked += 1
    ordered = _in_schema_order(calls, specs)
    report.reordered += [list(a) for _, a in ordered] != [list(a) for _, a in calls]
    text = format_tool_calls(ordered)
    parsed = parse_tool_calls(text, specs)
    if [(c.name, c.arguments) for c in parsed.calls] != calls or parsed.invalid or parsed.content:
        report.parse_failures.append((entry.id, f"{text[:120]} -> {parsed}"))
    tokens = tokenizer.encode(text, add_special_tokens=False) + [STOP[-1]]
    if not _accepts(xgrammar.GrammarMatcher(compiled), tokens):
        report.grammar_failures.append((entry.id, text[:200]))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return llama3_tokenizer()


@pytest.fixture(scope="module")
def report(tokenizer: Any, request: pytest.FixtureRequest) -> Iterator[Report]:
    constraint = GrammarConstraint(tokenizer, len(tokenizer), STOP, cache_size=2048)
    result = Report()
    for entry in load_entries():
        result.entries += 1
        _check(entry, result, tokenizer, constraint)
    yield result
    _announce(request, result.lines())


def _announce(request: pytest.FixtureRequest, lines: list[str]) -> None:
    """Show ``lines`` in the test run's output, with or without ``-s``."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            terminal.write_line("")
            for line in lines:
                terminal.write_line(line)


def test_bfcl_has_the_four_categories(report: Report) -> None:
    assert report.entries == 1000


def test_every_bfcl_tool_set_binds_renders_and_compiles(report: Report) -> None:
    assert report.refused == []
    assert report.accepted == report.entries


def test_excluded_ground_truths_really_violate_their_schema(report: Report) -> None:
    # Each exclusion names the violation; the rest (the vast majority) is checked.
    assert all(reason for _, reason in report.inconsistent)
    assert report.checked + len(report.inconsistent) == report.accepted
    assert report.checked >= 0.9 * report.accepted, report.lines()


def test_every_consistent_ground_truth_parses_back_exactly(report: Report) -> None:
    assert report.parse_failures == []


def test_grammar_accepts_every_consistent_ground_truth_token_by_token(report: Report) -> None:
    assert report.grammar_failures == []


# --- soundness: a random-weight model forced onto BFCL tool sets ---------------------------------


class _CloseSooner(transformers.LogitsProcessor):
    """Boost tokens that close strings, lists and calls; reorders what the grammar allows only."""

    def __init__(self, tokenizer: Any) -> None:
        self.close = [i for t, i in tokenizer.get_vocab().items() if t[:1] in ('"', "]", "}", ")")]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, self.close] += 4.0
        return scores


SAMPLE = 16  # tool sets, spread over the four categories


def test_forced_random_model_completes_only_valid_calls(
    report: Report, tokenizer: Any, tiny_llama3_model_path: str, request: pytest.FixtureRequest
) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama3_model_path).eval()
    constraint = GrammarConstraint(tokenizer, model.config.vocab_size, STOP)
    ids = sorted(report.specs)[:: max(1, len(report.specs) // SAMPLE)][:SAMPLE]
    completed = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed, entry_id in enumerate(ids):
            specs = report.specs[entry_id]
            prompt = torch.tensor([tokenizer.encode("Call a function.")])
            torch.manual_seed(seed)
            with torch.no_grad():
                out = model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    logits_processor=[
                        constraint.logits_processor(specs, ToolChoice("required")),
                        _CloseSooner(tokenizer),
                    ],
                    do_sample=True,
                    max_new_tokens=96,
                )
            new = out[0, prompt.shape[1] :].tolist()
            finished = bool(set(new) & set(STOP))
            text = tokenizer.decode([t for t in new if t not in STOP])
            parsed = parse_tool_calls(text, specs, truncated=not finished)
            assert text.startswith("["), (entry_id, text)
            if finished:
                completed += 1
                assert parsed.calls and not parsed.invalid and not parsed.content, (entry_id, text)
                by_name = {spec.name: spec for spec in specs}
                for call in parsed.calls:
                    schema = to_json_schema(by_name[call.name].parameters)
                    jsonschema.Draft202012Validator(schema).validate(call.arguments)
            else:  # cut by max_new_tokens: only the last call may be incomplete
                assert all("truncated" in bad.error for bad in parsed.invalid), (entry_id, text)
    finally:
        torch.set_num_threads(threads)
    _announce(request, [f"forced random model: {completed}/{len(ids)} answers completed, valid"])
    assert completed >= len(ids) // 2  # the boost makes most answers end within the budget
