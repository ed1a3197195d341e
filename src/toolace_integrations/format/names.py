"""What ToolACE's call syntax can name: the one definition of tool and argument names.

Binding (:mod:`~toolace_integrations.format.tools`, :mod:`~toolace_integrations.format.schema`),
the parsers and the formatter ask here; the grammar and the closer write the names binding let
through. Argument names are Python identifiers, reserved words included: a flight-search tool
has ``from`` and ``class`` arguments, and the model writes
``[search_flights(from="NYC", class="economy")]``. :mod:`ast` refuses reserved words as keyword
names, so :func:`mask_reserved_names` gives the parser a spelling it reads; nothing is evaluated.
"""

from __future__ import annotations

import keyword
import re
import unicodedata

from toolace_integrations.format.literals import string_end

__all__ = ["is_argument_name", "is_expressible_name", "mask_reserved_names"]

_SEPARATORS = re.compile(r"[.\- ]")
_RESERVED = "|".join(sorted(keyword.kwlist, key=len, reverse=True))
_RESERVED_HEAD = re.compile(rf"\s*({_RESERVED})\s*=(?!=)")
"""An argument that starts with a reserved word and ``=`` (not ``==``)."""
_MAYBE_RESERVED = re.compile(rf"(?<![\w.])(?:{_RESERVED})\s*=(?!=)")
_PLACEHOLDER_PREFIX = re.compile(r"(?<=_reserved)_+")
_ARGUMENT_SPECIAL = re.compile(r"[\"'()\[\]{},#]")


def is_argument_name(name: object) -> bool:
    """Whether ``name`` can be passed as ``name=value``: a Python identifier, reserved words too.

    ``from``, ``class``, ``lambda`` and ``True`` count, and so do non-ASCII identifiers such as
    ``año_vehiculo``; names Python would rewrite on parsing (NFKC normalisation, e.g. ``ﬁle`` ->
    ``file``) do not, as the call would come back renamed.
    """
    return (
        isinstance(name, str)
        and name.isidentifier()
        and unicodedata.normalize("NFKC", name) == name
    )


def is_expressible_name(name: str) -> bool:
    """Whether ToolACE's call syntax can spell this tool name.

    A Python identifier (``año_vehiculo`` and reserved words included, by Python's own rule), or
    identifiers and digit runs joined by single dots (``finance.npv``, ``api.class.get``),
    hyphens (``get-weather``) or inner spaces, as in ToolACE's own training data
    (``Market Trends API``). Tool names are read as text, never by :mod:`ast`.
    """
    first, *rest = _SEPARATORS.split(name)
    return first.isidentifier() and all(part and f"_{part}".isidentifier() for part in rest)


def mask_reserved_names(arguments: str) -> tuple[str, dict[str, str]]:
    """Spell reserved-word argument names in a call's argument text so that :mod:`ast` reads them.

    Args:
        arguments: The call's text after its ``(``, e.g. ``from="NYC", class="economy")``.

    Returns:
        The text with each reserved word that starts a top-level argument and is followed by
        ``=`` replaced by a placeholder identifier, and the reserved word of each placeholder.
        Strings and comments are skipped. No placeholder occurs in ``arguments``, even after
        Python's NFKC normalisation of identifiers, so a keyword the parse names by one was
        written as its reserved word, and one that does not come back as a keyword's name was
        not an argument name (the caller refuses the call).
    """
    if not _MAYBE_RESERVED.search(arguments):
        return arguments, {}
    taken = _PLACEHOLDER_PREFIX.findall(unicodedata.normalize("NFKC", arguments))
    prefix = "_reserved" + "_" * (max(map(len, taken), default=0) + 1)
    heads = (_RESERVED_HEAD.match(arguments, start) for start in _argument_starts(arguments))
    matches = [match for match in heads if match is not None]
    names = {f"{prefix}{index}": match[1] for index, match in enumerate(matches)}
    pieces, copied = [], 0
    for placeholder, match in zip(names, matches, strict=True):
        pieces += [arguments[copied : match.start(1)], placeholder]
        copied = match.end(1)
    return "".join([*pieces, arguments[copied:]]), names


def _argument_starts(arguments: str) -> list[int]:
    """Where top-level arguments start: the beginning and after each top-level comma."""
    starts, depth, position = [0], 0, 0
    while (special := _ARGUMENT_SPECIAL.search(arguments, position)) is not None:
        char, position = special.group(), special.end()
        if char in "\"'":
            position = string_end(arguments, special.start())
        elif char == "#":  # a comment, to the end of the line
            position = arguments.find("\n", position)
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            starts.append(position)
        if position < 0:
            break
    return starts
