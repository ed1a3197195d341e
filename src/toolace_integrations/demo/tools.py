"""The demo tools: a safe calculator and a unit converter, plain and ready for each framework.

The functions are plain typed Python; :data:`DEMO_TOOLS` pairs each with the schema the demo
model is prompted with, and :func:`langchain_tools` / :func:`llama_index_tools` wrap them for
agents, turning a tool's ``ValueError`` into an error message the agent reads and goes on with.
"""


import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from toolace_integrations.format.tools import FunctionSpec

Unit = Literal["km", "mi", "m", "ft", "kg", "lb", "celsius", "fahrenheit"]
UNITS: tuple[Unit, ...] = get_args(Unit)
UNIT_KINDS: dict[str, tuple[str, float]] = {
    "km": ("length", 1000.0), "mi": ("length", 1609.344), "m": ("length", 1.0),
    "ft": ("length", 0.3048), "kg": ("mass", 1.0), "lb": ("mass", 0.45359237),
    "celsius": ("temperature", 1.0), "fahrenheit": ("temperature", 1.0),
}  # fmt: skip
_MAX_EXPRESSION_CHARS, _MAX_INT_BITS = 200, 4096
_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}  # fmt: skip


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return cast("int | float", node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        result: int | float = _OPERATORS[type(node.op)](_evaluate(node.operand))
        return result
    if not (isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS):
        raise ValueError(f"{ast.dump(node)[:60]} is not allowed: use numbers and + - * / ** %.")
    left, right = _evaluate(node.left), _evaluate(node.right)
    if isinstance(node.op, ast.Pow) and abs(right) > 1 and abs(left) > 1:
        if abs(right) * math.log2(abs(left)) > _MAX_INT_BITS:
            raise ValueError(f"{left} ** {right} is too large to compute.")
    try:
        result = _OPERATORS[type(node.op)](left, right)
    except ZeroDivisionError as error:
        raise ValueError("division by zero") from error
    except OverflowError as error:
        raise ValueError("the result is too large") from error
    if isinstance(result, int):
        finite = result.bit_length() <= _MAX_INT_BITS
    else:
        finite = isinstance(result, float) and math.isfinite(result)
    if not finite:
        raise ValueError("the result is not a real number of reasonable size")
    return result


def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression: numbers, + - * / ** % and parentheses.

    Args:
        expression: The arithmetic to compute, e.g. "(12 + 30) * 7".
    """
    if len(expression) > _MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {_MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as error:  # ValueError: NUL characters
        raise ValueError(f"{expression!r} is not an arithmetic expression") from error
    result = _evaluate(tree.body)
    return round(result, 4) if isinstance(result, float) else result


def convert_units(value: float, from_unit: Unit, to_unit: Unit) -> float:
    """Convert a value between units of length, mass or temperature.

    Args:
        value: The amount to convert.
        from_unit: The unit of the value.
        to_unit: The unit to convert to.
    """
    if from_unit not in UNIT_KINDS or to_unit not in UNIT_KINDS:
        raise ValueError(f"units must be among {', '.join(UNITS)}")
    kind, scale = UNIT_KINDS[from_unit]
    if kind != UNIT_KINDS[to_unit][0]:
        raise ValueError(f"cannot convert {kind} ({from_unit}) to {UNIT_KINDS[to_unit][0]}")
    if kind == "temperature":
        celsius = value if from_unit == "celsius" else (value - 32) / 1.8
        converted = celsius if to_unit == "celsius" else celsius * 1.8 + 32
    else:
        converted = value * scale / UNIT_KINDS[to_unit][1]
    return round(float(converted), 2)


@dataclass(frozen=True)
class DemoTool:
    """A demo tool: the function and the schema the model is trained and prompted with."""

    func: Callable[..., Any]
    spec: FunctionSpec


def _schema(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


_UNIT = {"type": "string", "enum": list(UNITS)}
DEMO_TOOLS = (
    DemoTool(calculator, FunctionSpec(
        "calculator",
        "Evaluate an arithmetic expression: numbers, + - * / ** % and parentheses.",
        _schema({"expression": {"type": "string"}}),
    )),
    DemoTool(convert_units, FunctionSpec(
        "convert_units",
        "Convert a value between units of length, mass or temperature.",
        _schema({"value": {"type": "number"}, "from_unit": _UNIT, "to_unit": _UNIT}),
    )),
)  # fmt: skip
"""The demo tools, in the order they are bound; ``spec`` is what the prompt shows."""


def _reporting_errors(func: Callable[..., Any], error_type: type[Exception]) -> Callable[..., Any]:
    def run(**kwargs: Any) -> Any:
        try:
            return func(**kwargs)
        except (TypeError, ValueError) as error:
            raise error_type(f"Error: {error}") from error

    return run


def langchain_tools() -> list[Any]:
    """The demo tools as LangChain ``StructuredTool``s with the schemas the demo model saw.

    A tool's error (``calculator("12 12")``) comes back to the agent as a tool message
    starting with ``Error:``, and the agent goes on.
    """
    from langchain_core.tools import StructuredTool, ToolException

    return [
        StructuredTool.from_function(
            func=_reporting_errors(tool.func, ToolException),
            name=tool.spec.name,
            description=tool.spec.description,
            args_schema=dict(tool.spec.parameters),
            handle_tool_error=True,
        )
        for tool in DEMO_TOOLS
    ]


def llama_index_tools() -> list[Any]:
    """The demo tools as LlamaIndex ``FunctionTool``s with the schemas the demo model saw.

    LlamaIndex agents report a tool's exception to the model as the tool's output.
    """
    from llama_index.core.tools import FunctionTool

    return [
        FunctionTool.from_defaults(
            fn=tool.func, name=tool.spec.name, description=tool.spec.description
        )
        for tool in DEMO_TOOLS
    ]
