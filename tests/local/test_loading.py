"""Issue 26.6: a first load from the Hub shows download progress; a load flips no global switch.

No Hub in tests: ``huggingface_hub.snapshot_download`` is replaced by a fake that, like the
real one, plans (``dry_run``) and downloads with progress bars of the ``tqdm_class`` it is
given, writing the tiny checkpoint into a Hugging Face cache folder; ``from_pretrained`` then
loads it from that cache offline.
"""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.file_download import DryRunFileInfo
from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars
from huggingface_hub.utils import enable_progress_bars as enable_hub_bars
from transformers.utils import logging as hf_logging

from toolace_integrations.core.generation import ModelSpec
from toolace_integrations.local import loading
from toolace_integrations.local.loading import load_model

REPO = "Team-ACE/tiny-toolace"


class FakeHub:
    """``snapshot_download`` over a Hub holding the tiny checkpoint under :data:`REPO`."""

    def __init__(self, source: str, cache: Path) -> None:
        self.source, self.cache = Path(source), cache
        self.downloads: list[Any] = []  # the tqdm_class of each real download

    def snapshot(self) -> Path:
        return self.cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / "c0ffee"

    def __call__(self, repo_id: str, *, dry_run: bool = False, **kwargs: Any) -> Any:
        assert repo_id == REPO and Path(kwargs["cache_dir"]) == self.cache
        kept = (".json", ".safetensors")
        files = [f for f in sorted(self.source.iterdir()) if f.name.endswith(kept)]
        if dry_run:
            return [
                DryRunFileInfo(
                    commit_hash="c0ffee",
                    file_size=f.stat().st_size,
                    filename=f.name,
                    local_path=str(self.snapshot() / f.name),
                    is_cached=(self.snapshot() / f.name).exists(),
                    will_download=not (self.snapshot() / f.name).exists(),
                )
                for f in files
            ]
        progress = kwargs.get("tqdm_class") or huggingface_hub.utils.tqdm  # the Hub's default
        self.downloads.append(kwargs.get("tqdm_class"))
        self.snapshot().mkdir(parents=True, exist_ok=True)
        (self.snapshot().parents[1] / "refs").mkdir(exist_ok=True)
        (self.snapshot().parents[1] / "refs" / "main").write_text("c0ffee")
        with progress(total=sum(f.stat().st_size for f in files), desc="Downloading bytes") as bar:
            for f in files:
                shutil.copy(f, self.snapshot() / f.name)
                bar.update(f.stat().st_size)
        return str(self.snapshot())


@pytest.fixture
def hub(tiny_model_path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub(tiny_model_path, tmp_path / "hf-cache")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # from_pretrained: the cache only
    return fake


@pytest.fixture
def hub_bars_off() -> Any:
    """The Hub's bars turned off, as transformers' disable_progress_bar (and our CLI) does."""
    disable_progress_bars()
    yield
    enable_hub_bars()


@pytest.mark.usefixtures("hub_bars_off")
def test_a_first_load_from_the_hub_shows_download_progress(
    hub: FakeHub, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = ModelSpec(model=REPO, model_kwargs={"cache_dir": str(hub.cache)})
    load_model(spec)
    assert hub.downloads and hub.downloads[0] is not None  # a bar class of our choosing
    shown = capfd.readouterr().err
    assert "Downloading bytes: 100%" in shown
    load_model(spec)  # now from the cache: nothing to download, nothing shown
    assert len(hub.downloads) == 1 and "Downloading" not in capfd.readouterr().err


def test_hf_hub_disable_progress_bars_still_hides_it(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    load_model(ModelSpec(model=REPO, model_kwargs={"cache_dir": str(hub.cache)}))
    assert hub.downloads == [None]  # the Hub's own bars, which the variable turns off


def test_a_local_folder_asks_the_hub_nothing(
    tiny_model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Any] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: asked.append(a))
    load_model(ModelSpec(model=tiny_model_path))
    assert asked == []


def test_an_unreachable_hub_leaves_the_load_to_from_pretrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: Any, **kwargs: Any) -> Any:
        raise huggingface_hub.errors.DryRunError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert not loading.download_missing_weights(ModelSpec(model=REPO))


def test_a_quiet_load_flips_no_library_wide_switch(
    tiny_model_path: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """While one thread loads quietly, another thread's bars and the global switches are on."""
    seen: dict[str, Any] = {}
    real = loading.AutoModelForCausalLM

    class Spy:
        @staticmethod
        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            seen["transformers bars on"] = hf_logging.is_progress_bar_enabled()
            seen["hub bars off"] = are_progress_bars_disabled()
            other = threading.Thread(
                target=lambda: seen.update(bar=hf_logging.tqdm(range(2), file=io.StringIO()))
            )
            other.start()
            other.join()
            return real.from_pretrained(*args, **kwargs)

    monkeypatch.setattr(loading, "AutoModelForCausalLM", Spy)
    load_model(ModelSpec(model=tiny_model_path))
    assert seen["transformers bars on"] and not seen["hub bars off"]
    assert not isinstance(seen["bar"], hf_logging.EmptyTqdm)  # the other thread's bar is real
    assert "Loading weights" not in capfd.readouterr().err  # this load itself stayed quiet
