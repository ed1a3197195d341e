"""Our BFCL scorer against BFCL's own ``ast_checker``: the same verdict, answer for answer.

BFCL's checker is imported here only (never by the package): its ``model_config`` module, which
imports every API vendor's SDK, is replaced by a stub declaring our model name first. Every
ground truth of the scored categories is judged, then thousands of answers perturbed from it
with a fixed seed (a wrong value, a missing required argument, an extra argument, a wrong type,
the parallel calls reordered, a wrong function name).
"""

from __future__ import annotations

import copy
import random
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from bfcl_answers import ground_truth_calls
from toolace_integrations.evaluation.data import AST_CATEGORIES, Entry, load_entries
from toolace_integrations.evaluation.scoring import Call, Verdict, check_ast, check_relevance

MODEL = "Team-ACE/ToolACE-8B"
PERTURBATIONS_PER_ENTRY = 2
SEED = 28


@pytest.fixture(scope="module")
def bfcl_checker() -> Any:
    """BFCL's ``ast_checker`` and its ``Language`` enum, imported with the SDK imports stubbed."""
    pytest.importorskip("bfcl_eval")
    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = {MODEL: types.SimpleNamespace(underscore_to_dot=False)}  # type: ignore[attr-defined]
    saved = sys.modules.get(stub.__name__)
    sys.modules[stub.__name__] = stub
    try:
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    finally:
        if saved is None:
            del sys.modules[stub.__name__]
        else:
            sys.modules[stub.__name__] = saved
    return lambda entry, calls: ast_checker(
        list(entry.functions),
        [{name: dict(arguments)} for name, arguments in calls],
        list(entry.ground_truth),
        {"simple_java": Language.JAVA, "simple_javascript": Language.JAVASCRIPT}.get(
            entry.category, Language.PYTHON
        ),
        entry.category,
        MODEL.replace("/", "_"),
    )


_WRONG_TYPES: tuple[Any, ...] = ("text", 7, 2.5, True, [1], {"k": "v"}, None)


def _another_value(value: Any) -> Any:
    """A value of the same type that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, list) and value:
        return [*value, value[0]]
    return "changed"


def perturbations(entry: Entry, calls: list[Call], rng: random.Random) -> Iterator[list[Call]]:
    """Answers near the ground truth, each with one kind of mistake."""
    kinds = ["value", "missing", "extra", "type", "name", "order", "count"]
    for kind in rng.sample(kinds, len(kinds)):
        changed = copy.deepcopy([(name, dict(arguments)) for name, arguments in calls])
        index = rng.randrange(len(changed))
        name, arguments = changed[index]
        keys = sorted(arguments)
        if kind == "value" and keys:
            key = rng.choice(keys)
            arguments[key] = _another_value(arguments[key])
        elif kind == "missing" and keys:
            del arguments[rng.choice(keys)]
        elif kind == "extra":
            arguments[rng.choice(["unit", "extra_argument", "verbose"])] = rng.choice(_WRONG_TYPES)
        elif kind == "type" and keys:
            key = rng.choice(keys)
            arguments[key] = rng.choice(
                [
                    str(arguments[key]),
                    *(t for t in _WRONG_TYPES if type(t) is not type(arguments[key])),
                ]
            )
        elif kind == "name":
            others = [f["name"] for f in entry.functions if f["name"] != name]
            changed[index] = (rng.choice(others) if others else name + "_v2", arguments)
        elif kind == "order" and len(changed) > 1:
            rng.shuffle(changed)
        elif kind == "count":
            changed = changed[:-1] if len(changed) > 1 else changed * 2
        else:
            continue
        yield changed


def test_scorer_agrees_with_bfcl_ast_checker(bfcl_checker: Any) -> None:
    """Identical verdicts (valid and BFCL's error type) on ground truths and perturbed answers."""
    rng = random.Random(SEED)
    compared = disagreements = valid_truths = 0
    examples: list[str] = []
    per_kind = {"ground truth": 0, "perturbed": 0}
    for entry in load_entries(AST_CATEGORIES):
        truth = ground_truth_calls(entry)
        candidates = [("ground truth", truth)]
        candidates += [("perturbed", c) for c in perturbations(entry, truth, rng)][
            :PERTURBATIONS_PER_ENTRY
        ]
        for label, calls in candidates:
            theirs = bfcl_checker(entry, calls)
            ours = check_ast(entry.functions, calls, entry.ground_truth, entry.category)
            compared += 1
            per_kind[label] += 1
            valid_truths += label == "ground truth" and ours.valid
            their_type = "" if theirs["valid"] else theirs["error_type"]
            if (ours.valid, ours.error_type) != (theirs["valid"], their_type):
                disagreements += 1
                examples.append(f"{entry.id} {calls}: ours {ours} theirs {theirs}")
    print(
        f"\nBFCL ast_checker cross-check: {compared} verdicts compared "
        f"({per_kind['ground truth']} ground truths, {valid_truths} of them valid; "
        f"{per_kind['perturbed']} perturbed answers), disagreements: {disagreements}"
    )
    assert not examples, "\n".join(examples[:10])


@pytest.mark.parametrize(
    ("category", "calls", "valid"),
    [
        ("irrelevance", [], True),
        ("irrelevance", [("f", {})], False),
        ("live_irrelevance", [("f", {"a": 1})], False),
        ("live_relevance", [("f", {})], True),
        ("live_relevance", [], False),
    ],
)
def test_relevance_verdicts(category: str, calls: list[Call], valid: bool) -> None:
    """Irrelevance wants no call; relevance wants any call, right or wrong."""
    assert check_relevance(calls, category).valid is valid


def test_float_parameter_accepts_an_int_and_strings_ignore_case_and_punctuation() -> None:
    """Two of BFCL's leniencies a reader may not expect."""
    functions = [
        {
            "name": "geo.distance",
            "parameters": {
                "type": "dict",
                "properties": {"km": {"type": "float"}, "city": {"type": "string"}},
                "required": ["km"],
            },
        }
    ]
    truth = [{"geo.distance": {"km": [3.0], "city": ["New York", ""]}}]
    assert check_ast(
        functions, [("geo.distance", {"km": 3, "city": "new-york"})], truth, "simple_python"
    ).valid
    wrong = check_ast(functions, [("geo_distance", {"km": 3})], truth, "simple_python")
    assert wrong == Verdict(False, "simple_function_checker:wrong_func_name", wrong.error)
