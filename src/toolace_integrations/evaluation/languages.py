"""BFCL's Java and JavaScript categories: arguments are source text, read back as BFCL reads them.

In ``simple_java`` and ``simple_javascript`` every parameter is bound as a string holding Java or
JavaScript source (``"new int[]{1, 2}"``, ``"[1, 'two']"``); BFCL's checker converts that text to
a value by its declared type before comparing. These readers follow BFCL's ``java_type_converter``
and ``js_type_converter`` (v2026.3.23) rule for rule, lenient regexes included, so verdicts match;
text they cannot read stays a string (and then fails the type check), as in BFCL.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["JAVA_TYPES", "JS_TYPES", "NESTED_TYPES", "java_value", "js_value"]

JAVA_TYPES: dict[str, type] = {
    "byte": int,
    "short": int,
    "integer": int,
    "float": float,
    "double": float,
    "long": int,
    "boolean": bool,
    "char": str,
    "Array": list,
    "ArrayList": list,
    "Set": set,
    "HashMap": dict,
    "Hashtable": dict,
    "Queue": list,
    "Stack": list,
    "String": str,
    "any": str,
}
JS_TYPES: dict[str, type] = {
    "String": str,
    "integer": int,
    "float": float,
    "Bigint": int,
    "Boolean": bool,
    "dict": dict,
    "array": list,
    "any": str,
}
NESTED_TYPES = ("Array", "ArrayList", "array")
"""Declared types whose items BFCL converts (and type-checks) one by one."""

_INTEGER = re.compile(r"^-?\d+$")
_JAVA_FLOAT = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[fF]$")
_JAVA_DOUBLE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_JAVA_LONG = re.compile(r"^-?\d+[lL]$")


def java_value(text: str, declared: str, nested: str | None = None) -> Any:
    """The value BFCL reads from Java source ``text`` of the ``declared`` Java type.

    Raises:
        NotImplementedError: ``Set``, ``Hashtable``, ``Queue`` or ``Stack`` (BFCL reads none).
    """
    if declared in ("byte", "short", "integer"):
        return int(text) if _INTEGER.match(text) else text
    if declared == "float":
        return float(text[:-1]) if _JAVA_FLOAT.match(text) else text
    if declared == "double":
        return float(text) if _JAVA_DOUBLE.match(text) else text
    if declared == "long":
        return int(text[:-1]) if _JAVA_LONG.match(text) else text
    if declared == "boolean":
        return text == "true" if text in ("true", "false") else text
    if declared == "ArrayList":
        return _java_array_list(text, nested)
    if declared == "Array":
        return _java_array(text, nested)
    if declared == "HashMap":
        return _java_hash_map(text)
    if declared in ("char", "String", "any"):
        return text
    raise NotImplementedError(f"BFCL does not read Java {declared} values")


def _java_element(text: str, nested: str | None) -> Any:
    if nested in ("char", "String"):
        return text[1:-1]
    return java_value(text, nested) if nested else _java_literal(text)


def _java_array_list(text: str, nested: str | None) -> Any:
    as_list = re.search(r"new\s+ArrayList<\w*>\(Arrays\.asList\((.+?)\)\)", text)
    if as_list:
        return [_java_element(item.strip(), nested) for item in as_list.group(1).split(",")]
    added = re.search(r"new\s+ArrayList<\w*>\(\)\s*\{\{\s*(.+?)\s*\}\}", text, re.DOTALL)
    if added:
        items = re.findall(r"add\((.+?)\)", added.group(1))
        return [_java_element(item.strip(), nested) for item in items]
    return [] if re.search(r"new\s+ArrayList<\w*>\(\)", text) else text


def _java_array(text: str, nested: str | None) -> Any:
    match = re.search(r"new\s+\w+\[\]\s*\{(.*?)\}", text)
    if not match:
        return text
    items = [item.strip() for item in match.group(1).split(",") if item.strip()]
    if nested:
        return [java_value(item, nested) for item in items]
    return [_java_literal(item) for item in items]


def _java_hash_map(text: str) -> Any:
    match = re.search(r"new\s+HashMap<.*?>\s*\(\)\s*\{\s*\{?\s*(.*?)\s*\}?\s*\}", text, re.DOTALL)
    if match:
        puts = re.findall(r"put\(\"(.*?)\",\s*(.*?)\)", match.group(1))
        return {key: _java_literal(value.strip()) for key, value in puts}
    return {} if re.search(r"new\s+HashMap<.*?>\s*\(\)", text) else text


def _java_literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if _JAVA_LONG.match(text):
        return int(text[:-1])
    if _JAVA_FLOAT.match(text):
        return float(text[:-1])
    return _number_or_text(text)


def _number_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def js_value(text: str, declared: str, nested: str | None = None) -> Any:
    """The value BFCL reads from JavaScript source ``text`` of the ``declared`` type.

    Raises:
        ValueError: ``declared`` is not one of BFCL's JavaScript types.
    """
    if declared not in JS_TYPES:
        raise ValueError(f"BFCL has no JavaScript type {declared!r}")
    if declared == "String":
        quoted = len(text) >= 1 and text[0] == text[-1] and text[0] in "\"'"
        return text[1:-1] if quoted else text
    if declared == "integer":
        return int(text) if _INTEGER.match(text) else text
    if declared == "float":
        return float(text) if re.match(r"^-?\d+(\.\d+)?$", text) else text
    if declared == "Bigint":
        return int(text[:-1]) if re.match(r"^-?\d+n$", text) else text
    if declared == "Boolean":
        return text == "true" if text in ("true", "false") else text
    if declared == "dict":
        return _js_object(text.strip())
    if declared == "array":
        return _js_array(text.strip(), nested)
    return text  # "any"


def _js_array(code: str, nested: str | None) -> Any:
    two_d = re.match(
        r"\[\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\]|\bnew\s+Array\(\s*\[.*?\]\s*(,\s*\[.*?\]\s*)*\)",
        code,
    )
    if two_d:
        rows = []
        for index, row in enumerate(re.findall(r"\[(.*?)\]", two_d.group(0))):
            row = row.strip()
            if index == 0 and row.startswith("["):
                row = row[1:]
            rows.append([_js_literal(item.strip()) for item in row.split(",")])
        return rows
    match = re.match(r"\[(.*?)\]|\bnew\s+Array\((.*?)\)", code)
    if not match:
        return code
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    items = inner.strip().split(",") if inner is not None and inner.strip() else []
    if not nested:
        return [_js_literal(item.strip()) for item in items]
    try:
        return [js_value(item.strip(), nested) for item in items]
    except ValueError:  # an item type BFCL cannot read: it gives the text back
        return code


def _js_object(code: str) -> Any:
    if code == "{}":
        return {}
    match = re.match(r"\{(.*?)\}", code)
    if not match:
        return code
    pairs = re.findall(r"([^:]+):\s*(.*?)(?:,\s*(?=[^,]+:)|$)", match.group(1))
    result: dict[str, Any] = {}
    for key, value in pairs:
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            result[key.strip().strip("'\"")] = _js_array(value, None)
        elif value.startswith("{") and value.endswith("}"):
            result[key.strip().strip("'\"")] = _js_object(value)
        else:
            result[key.strip().strip("'\"")] = _js_literal(value.strip("'\""))
    return result


def _js_literal(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if len(text) >= 1 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return _number_or_text(text)
