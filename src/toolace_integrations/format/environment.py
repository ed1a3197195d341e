"""The environment variables the package reads, each checked where it is first used.

Every variable goes through :func:`read_text`, :func:`read_count` or :func:`read_bytes`, so a
value the package cannot use raises one :class:`EnvironmentValueError` naming the variable, the
value and a valid example -- at first use, before any model work -- instead of a bare
``ValueError`` later or a limit that silently refuses everything. Pure: imports only errors.

Variables: ``TOOLACE_MAX_GRAMMAR_BYTES``, ``TOOLACE_PREFIX_CACHE_ENTRIES``,
``TOOLACE_PREFIX_CACHE_BYTES``, ``TOOLACE_CACHE``, ``TOOLACE_API_KEY`` (and ``OPENAI_API_KEY``),
``TOOLACE_VLLM_PYTHON``.
"""

from __future__ import annotations

import os
import re

from toolace_integrations.errors import ToolACEError

__all__ = ["EnvironmentValueError", "read_bytes", "read_count", "read_text"]

_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip
_SIZE = re.compile(r"([0-9]+)\s*([a-z]*)", re.IGNORECASE)


class EnvironmentValueError(ToolACEError, ValueError):
    """An environment variable holds a value the package cannot use.

    Attributes:
        name: The variable.
        value: Its value.
    """

    def __init__(self, name: str, value: str, expected: str, example: str) -> None:
        self.name, self.value = name, value
        super().__init__(
            f"The environment variable {name}={value!r} is not {expected}. Set it to, for "
            f"example, {name}={example}, or unset it for the default."
        )


def read_text(name: str) -> str | None:
    """The value of ``name``, or ``None`` when it is unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def read_count(name: str, default: int) -> int:
    """``name`` as a whole number >= 0 (such as ``32``), or ``default`` when unset or blank.

    Raises:
        EnvironmentValueError: the value is not a whole number >= 0.
    """
    value = read_text(name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit():
        raise EnvironmentValueError(name, value, "a whole number >= 0", str(default))
    return int(value)


def read_bytes(name: str, default: int) -> int:
    """``name`` as a size in bytes, or ``default`` when unset or blank.

    A whole number of bytes, optionally with a unit: ``KB``/``MB``/``GB``/``TB`` (powers of
    1000) or ``KiB``/``MiB``/``GiB``/``TiB`` (powers of 1024), e.g. ``2GiB`` or ``131072``.

    Raises:
        EnvironmentValueError: the value is not such a size.
    """
    value = read_text(name)
    if value is None:
        return default
    match = _SIZE.fullmatch(value)
    if match is None or match[2].lower() not in _UNITS:
        expected = "a whole number of bytes, optionally with a unit (KB, MB, GB, KiB, MiB, GiB)"
        example = f"{default // 1024**2}MiB" if default >= 1024**2 else str(default)
        raise EnvironmentValueError(name, value, expected, example)
    return int(match[1]) * _UNITS[match[2].lower()]
