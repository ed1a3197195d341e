"""Synthetic ToolACE dialogs over the demo tools, and the tool renderings they are shown with.

A dialog is a question, the call it needs, the tool's own result and the final answer; a
conversation strings a few dialogs together so the model learns to call tools in later turns
too. :func:`tool_renderings` gives the tool lists as the model meets them in practice: the
schemas of :data:`~toolace_integrations.demo.tools.DEMO_TOOLS`, LangChain's ``@tool`` of the
plain functions (the docstring as description) and LlamaIndex's ``FunctionTool.from_defaults``
(signature and docstring, titled properties).
"""

from __future__ import annotations

import inspect
import json
import random
from dataclasses import replace
from typing import Any

from toolace_integrations.demo.tools import DEMO_TOOLS, UNIT_KINDS, UNITS, calculator, convert_units
from toolace_integrations.format.parsing import ToolCall
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.tools import FunctionSpec

_CALC_QUESTIONS = ("What is {}?", "Calculate {}.", "How much is {}?", "Compute {} please.")
_CONVERT_QUESTIONS = (
    "Convert {v} {a} to {b}.", "How many {b} is {v} {a}?", "What is {v} {a} in {b}?",
    "{v} {a} to {b}, please.",
)  # fmt: skip
_CHITCHAT = (
    ("Hello!", "Hello! I can do arithmetic and convert units."),
    ("Who are you?", "I am a tiny demo model that calls a calculator and a unit converter."),
    ("What is the capital of France?", "Sorry, none of my tools can answer that."),
    ("Tell me a joke.", "Sorry, none of my tools can answer that."),
)


def _number(rng: random.Random) -> str:
    if rng.random() < 0.75:  # as many one- and two-digit numbers as three-digit ones
        return str(rng.randint(0, 10 ** rng.randint(1, 3) - 1))
    return f"{rng.randint(0, 99)}.{rng.randint(1, 9)}"


def _expression(rng: random.Random) -> str:
    ops = ("+", "-", "*", "/", "%", "**")
    expression = f"{_number(rng)} {rng.choice(ops[:4])} {_number(rng)}"
    if rng.random() < 0.3:
        expression = f"({expression}) {rng.choice(ops[:3])} {rng.randint(1, 99)}"
    elif rng.random() < 0.1:
        expression = f"{rng.randint(2, 12)} ** {rng.randint(2, 5)}"
    return expression


def sample_dialog(rng: random.Random) -> list[Message]:
    """One synthetic dialog: a question, the call it needs, the result and the final answer.

    About one dialog in ten is chit-chat answered with text and no call.
    """
    draw = rng.random()
    if draw < 0.1:
        question, answer = rng.choice(_CHITCHAT)
        return [Message("user", question), Message("assistant", answer)]
    if draw < 0.55:
        expression = _expression(rng)
        while True:
            try:
                result = calculator(expression)
                break
            except ValueError:
                expression = _expression(rng)
        question = rng.choice(_CALC_QUESTIONS).format(expression)
        call = ToolCall("calculator", {"expression": expression})
        answer = f"The result is {json.dumps(result)}."
    else:
        kind = rng.choice(("length", "length", "mass", "temperature"))
        a, b = rng.sample([unit for unit in UNITS if UNIT_KINDS[unit][0] == kind], 2)
        value_text = _number(rng)
        value = float(value_text) if "." in value_text else int(value_text)
        result = convert_units(value, a, b)
        question = rng.choice(_CONVERT_QUESTIONS).format(v=value_text, a=a, b=b)
        call = ToolCall("convert_units", {"value": value, "from_unit": a, "to_unit": b})
        answer = f"{value_text} {a} is {json.dumps(result)} {b}."
    return [
        Message("user", question),
        Message("assistant", tool_calls=(call,)),
        Message("tool", json.dumps(result), tool_call_id=call.id),
        Message("assistant", answer),
    ]




def sample_conversation(rng: random.Random, *, max_questions: int = 3) -> list[Message]:
    """One to ``max_questions`` dialogs from :func:`sample_dialog`, one after another."""
    messages: list[Message] = []
    for _ in range(rng.randint(1, max_questions)):
        messages += sample_dialog(rng)
    return messages


def tool_renderings() -> list[list[FunctionSpec]]:
    """The demo tool lists as the prompt shows them, one list per way of wrapping the tools."""

    def described(spec: FunctionSpec, func: Any, style: str) -> FunctionSpec:
        doc = (func.__doc__ or "").strip()
        if style == "langchain":
            return replace(spec, description=doc)
        return replace(spec, description=f"{spec.name}{inspect.signature(func)}\n{doc}")

    def titled(spec: FunctionSpec) -> FunctionSpec:
        properties = {
            name: {"title": name.replace("_", " ").title(), **schema}
            for name, schema in spec.properties.items()
        }
        return replace(spec, parameters={**spec.parameters, "properties": properties})

    specs = [tool.spec for tool in DEMO_TOOLS]
    langchain = [described(t.spec, t.func, "langchain") for t in DEMO_TOOLS]
    llama_index = [titled(described(t.spec, t.func, "llama_index")) for t in DEMO_TOOLS]
    return [specs, langchain, llama_index, [titled(spec) for spec in specs]]
