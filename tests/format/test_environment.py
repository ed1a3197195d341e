"""Environment values: every variable read through one checker, bad values named at first use."""

from __future__ import annotations

import pytest

from toolace_integrations.errors import ToolACEError
from toolace_integrations.format.environment import (
    EnvironmentValueError,
    read_bytes,
    read_count,
    read_text,
)
from toolace_integrations.format.grammar_text import max_grammar_bytes

NAME = "TOOLACE_TEST_VALUE"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", 7), ("  ", 7), ("0", 0), ("32", 32), (" 32\n", 32)],
)
def test_counts(monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    monkeypatch.setenv(NAME, value)
    assert read_count(NAME, 7) == expected


@pytest.mark.parametrize("value", ["abc", "-1", "1e9", "2GiB", "3.5", "+4", "١٢", "0x10"])
def test_bad_counts_name_the_variable_value_and_an_example(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(NAME, value)
    with pytest.raises(EnvironmentValueError) as caught:
        read_count(NAME, 32)
    message = str(caught.value)
    assert f"{NAME}={value!r} is not a whole number >= 0" in message
    assert f"for example, {NAME}=32" in message
    assert isinstance(caught.value, ToolACEError) and caught.value.name == NAME


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", 99), ("0", 0), ("131072", 131072), ("2GiB", 2 * 1024**3), ("2 gib", 2 * 1024**3),
        ("512MiB", 512 * 1024**2), ("1GB", 10**9), ("64KB", 64_000), ("10b", 10),
    ],
)  # fmt: skip
def test_sizes(monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    monkeypatch.setenv(NAME, value)
    assert read_bytes(NAME, 99) == expected


@pytest.mark.parametrize("value", ["abc", "-5", "1e9", "2.5GiB", "256k", "2 GiBs", "GiB"])
def test_bad_sizes_name_the_variable_value_and_an_example(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(NAME, value)
    with pytest.raises(EnvironmentValueError) as caught:
        read_bytes(NAME, 2 * 1024**3)
    message = str(caught.value)
    assert f"{NAME}={value!r} is not a whole number of bytes" in message
    assert f"for example, {NAME}=2048MiB" in message


def test_text_is_none_when_unset_or_blank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)
    assert read_text(NAME) is None
    monkeypatch.setenv(NAME, "   ")
    assert read_text(NAME) is None
    monkeypatch.setenv(NAME, " key ")
    assert read_text(NAME) == "key"


@pytest.mark.parametrize(("value", "expected"), [("", 131072), ("0", 0), ("1MiB", 1024**2)])
def test_grammar_limit_reads_sizes(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: int
) -> None:
    monkeypatch.setenv("TOOLACE_MAX_GRAMMAR_BYTES", value)
    assert max_grammar_bytes() == expected


def test_negative_grammar_limit_is_refused_not_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    """-5 used to be taken as a limit every grammar is over."""
    monkeypatch.setenv("TOOLACE_MAX_GRAMMAR_BYTES", "-5")
    with pytest.raises(EnvironmentValueError, match="TOOLACE_MAX_GRAMMAR_BYTES='-5'.*131072"):
        max_grammar_bytes()
