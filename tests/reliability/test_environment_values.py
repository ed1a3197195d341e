"""Bad prefix-cache environment values fail at first use, before loading; processes exit cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import toolace_integrations.local.engine as engine_module
from toolace_integrations.format.environment import EnvironmentValueError
from toolace_integrations.local.engine import ModelSpec, TransformersEngine


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TOOLACE_PREFIX_CACHE_ENTRIES", "abc"),
        ("TOOLACE_PREFIX_CACHE_ENTRIES", "2GiB"),
        ("TOOLACE_PREFIX_CACHE_ENTRIES", "1e9"),
        ("TOOLACE_PREFIX_CACHE_ENTRIES", "-1"),
        ("TOOLACE_PREFIX_CACHE_BYTES", "abc"),
        ("TOOLACE_PREFIX_CACHE_BYTES", "1e9"),
        ("TOOLACE_PREFIX_CACHE_BYTES", "-1"),
    ],
)
def test_bad_prefix_cache_values_fail_before_loading(
    monkeypatch: pytest.MonkeyPatch, tiny_model_path: str, variable: str, value: str
) -> None:
    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("loaded the model although the environment is unusable")

    monkeypatch.setattr(engine_module, "load_model", no_loading)
    monkeypatch.setattr(engine_module, "cached_encoder", no_loading)
    monkeypatch.setenv(variable, value)
    with pytest.raises(EnvironmentValueError, match=f"{variable}={value!r}.*for example"):
        TransformersEngine(ModelSpec(model=tiny_model_path))


def test_sizes_with_units_are_accepted(
    monkeypatch: pytest.MonkeyPatch, tiny_model_path: str
) -> None:
    limits: list[tuple[int, int]] = []

    class RecordingCache(engine_module.PrefixCache):
        def __init__(self, config: object, *, max_entries: int, max_bytes: int) -> None:
            limits.append((max_entries, max_bytes))
            super().__init__(config, max_entries=max_entries, max_bytes=max_bytes)

    monkeypatch.setattr(engine_module, "PrefixCache", RecordingCache)
    monkeypatch.setenv("TOOLACE_PREFIX_CACHE_ENTRIES", "3")
    monkeypatch.setenv("TOOLACE_PREFIX_CACHE_BYTES", "64MiB")
    TransformersEngine(ModelSpec(model=tiny_model_path))
    assert limits == [(3, 64 * 1024**2)]


def test_negative_entries_end_in_a_clear_error_and_a_clean_exit(tiny_model_path: str) -> None:
    """ENTRIES=-1 used to raise a KeyError inside every generation and abort the process at exit."""
    script = textwrap.dedent(
        f"""
        from toolace_integrations.errors import ToolACEError
        from toolace_integrations.langchain import ChatToolACE
        try:
            ChatToolACE(model={tiny_model_path!r}, max_tokens=3).invoke("Hi")
        except ToolACEError as error:
            print(type(error).__name__, error)
        """
    )
    env = {**os.environ, "TOOLACE_PREFIX_CACHE_ENTRIES": "-1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("EnvironmentValueError The environment variable "
                                  "TOOLACE_PREFIX_CACHE_ENTRIES='-1'")  # fmt: skip
