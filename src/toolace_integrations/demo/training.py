"""Training the tiny demo model, and the folder it is cached in.

:func:`train_demo_model` fine-tunes a tiny checkpoint from
:func:`~toolace_integrations.testing.make_tiny_toolace` on synthetic conversations over the demo
tools, tokenized by the same :class:`~toolace_integrations.core.encoding.PromptEncoder` that encodes
prompts at inference, with the tools rendered every way the frameworks wrap them. Training is
seeded and runs on one CPU thread; weights still differ across machines (kernels), so nothing
may depend on how well the result answers: :mod:`~toolace_integrations.demo.evaluation` measures it.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toolace_integrations.demo.dialogs import sample_conversation, sample_dialog, tool_renderings
from toolace_integrations.errors import ToolACEError
from toolace_integrations.format.prompt import Message, render_messages
from toolace_integrations.format.tools import FunctionSpec
from toolace_integrations.testing.checkpoints import cache_dir

DEMO_MODEL_VERSION = "demo-model-v2"

def default_demo_model_dir() -> Path:
    """Where the demo model is cached: ``$TOOLACE_CACHE``, else the user's cache folder."""
    return cache_dir() / DEMO_MODEL_VERSION


Progress = Callable[[int, int, float], None]
"""Called after each training step with ``(step, total_steps, loss)``."""


class NotADemoModelError(ToolACEError, FileExistsError):
    """The demo model's folder holds something else, which is never deleted or overwritten."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(
            f"{folder} exists and is not a demo model (it has no {_MARKER}), so it is left as "
            "it is. Pass another path, or move that folder away and call again."
        )


def ensure_demo_model(path: str | Path | None = None, *, progress: Progress | None = None) -> str:
    """The cached demo model, trained (a few minutes on 2 CPU cores) on first use.

    Training writes to a fresh sibling ``<name>.partial-<pid>-<random>`` folder that is renamed
    into place when done, so an interrupted run (Ctrl-C, an error) leaves no half-written model
    behind; one left by a process that died without cleaning up (killed) is removed by the next
    call. Only a missing or empty ``path`` is filled; nothing this function did not create is
    deleted.

    Raises:
        NotADemoModelError: ``path`` holds something other than a demo model.
    """
    folder = Path(path) if path is not None else default_demo_model_dir()
    if (folder / _MARKER).is_file():
        return str(folder)
    _refuse_foreign(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(folder)
    prefix = f"{folder.name}{_PARTIAL}{os.getpid()}-"
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=folder.parent))
    try:
        train_demo_model(scratch, progress=progress)
        if (folder / _MARKER).is_file():  # another process finished first
            return str(folder)
        _refuse_foreign(folder)
        if folder.is_dir():
            folder.rmdir()  # empty, checked just above: fails rather than delete a late arrival
        os.replace(scratch, folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # the folder this call created, if still here
    return str(folder)


_PARTIAL = ".partial-"


def _refuse_foreign(folder: Path) -> None:
    """Raise unless ``folder`` is missing or an empty folder."""
    if folder.is_symlink() or folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
        raise NotADemoModelError(folder)


def _remove_stale_partials(folder: Path) -> None:
    """Remove ``folder``'s partial siblings whose training process no longer runs."""
    for partial in folder.parent.glob(f"{folder.name}{_PARTIAL}*"):
        pid = partial.name.rpartition(_PARTIAL)[2].partition("-")[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def train_demo_model(
    path: str | Path,
    *,
    steps: int = 500,
    copy_steps: int = 150,
    seed: int = 0,
    hidden: int = 128,
    layers: int = 2,
    progress: Progress | None = None,
) -> str:
    """Write a tiny checkpoint to ``path`` and teach it the demo tools on synthetic dialogs.

    Three phases share one optimizer: ``copy_steps`` on repeated random token spans (this grows
    the attention heads that copy text), then ``steps`` on single dialogs without the system
    prompt (the first 60%: short, so attention to the question learns fast), then on
    conversations of up to three questions rendered exactly as inference renders them, with
    one of the :func:`tool_renderings` in the system prompt. Loss is on assistant tokens only.
    Runs on one CPU thread, whatever the machine has.

    Args:
        path: Folder to write (created; a model there is overwritten).
        steps: Dialog steps of 16 dialogs each.
        copy_steps: Copy-task steps before the dialogs.
        seed: Seeds weights and data: equal arguments give equal weights on one machine.
        hidden: Hidden size.
        layers: Decoder layers.
        progress: Called after each step with ``(step, total_steps, loss)``.

    Returns:
        The folder, loadable by ``from_pretrained`` or ``ChatToolACE(model=...)``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and fastest on a small shared machine
    try:
        return _train(Path(path), steps, copy_steps, seed, hidden, layers, progress)
    finally:
        torch.set_num_threads(threads)


_MARKER = "demo-model.json"
_BATCH, _SPAN, _LR, _WARMUP, _SHORT_SHARE = 16, 24, 3e-3, 20, 0.6


def _train(folder: Path, steps: int, copy_steps: int, seed: int, hidden: int, layers: int,
           progress: Progress | None) -> str:  # fmt: skip
    import torch
    from transformers import AutoConfig, DynamicCache, GenerationConfig, LlamaForCausalLM

    from toolace_integrations.core.encoding import PromptEncoder, load_tokenizer
    from toolace_integrations.testing.checkpoints import LLAMA3_SPECIAL_TOKENS, make_tiny_toolace

    started = time.perf_counter()
    make_tiny_toolace(folder, layers=layers, hidden=hidden, seed=seed)
    encoder = DialogEncoder(PromptEncoder(load_tokenizer(str(folder))))
    config = AutoConfig.from_pretrained(folder)
    config.initializer_range = 0.02  # the checkpoint's wide random init trains poorly
    config.num_key_value_heads = config.num_attention_heads  # shared key/value heads learn slower
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig.from_pretrained(folder)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=_LR, betas=(0.9, 0.98), weight_decay=0)
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    renderings = tool_renderings()
    low, total = len(LLAMA3_SPECIAL_TOKENS), copy_steps + steps

    def copy_loss(rows: int) -> Any:
        span = torch.randint(low, config.vocab_size, (rows, _SPAN), generator=generator)
        ids = torch.cat([span, span], dim=1)
        return _loss(model, ids, torch.cat([torch.full_like(span, -100), span], dim=1))

    objective: Any
    for step in range(total):
        if step < copy_steps:
            rate, loss = min(1.0, (step + 1) / _WARMUP), copy_loss(2 * _BATCH)
            objective = loss
        else:
            dialog_step = step - copy_steps
            rate = min(1.0, (dialog_step + 1) / _WARMUP)
            rate *= 0.5 * (1 + math.cos(math.pi * dialog_step / steps))
            if dialog_step < _SHORT_SHARE * steps:
                batch, tools = [sample_dialog(rng) for _ in range(_BATCH)], []
            else:
                batch = [sample_conversation(rng) for _ in range(_BATCH)]
                tools = rng.choice(renderings)
            loss = _dialog_loss(model, DynamicCache, encoder, batch, tools)
            objective = loss + copy_loss(_BATCH)  # keeps the copying heads while dialogs train
        objective.backward()
        for group in optimizer.param_groups:
            group["lr"] = _LR * rate
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if progress is not None:
            progress(step + 1, total, loss.item())
    model.save_pretrained(folder)
    record = {"steps": steps, "copy_steps": copy_steps, "seed": seed, "final_loss": loss.item()}
    record["seconds"] = round(time.perf_counter() - started, 1)
    (folder / _MARKER).write_text(json.dumps(record, indent=2) + "\n")
    return str(folder)


class DialogEncoder:
    """Token ids and loss labels of dialogs, exactly as prompts are encoded at inference."""

    def __init__(self, prompts: Any) -> None:
        self.prompts = prompts
        self.eot = int(prompts.tokenizer.convert_tokens_to_ids("<|eot_id|>"))

    def encode(
        self, dialog: Sequence[Message], tools: Sequence[FunctionSpec]
    ) -> tuple[list[int], list[int]]:
        """Ids and labels (-100 outside assistant turns) of a dialog, rendered for inference."""
        ids: list[int] = []
        labels: list[int] = []
        for index, message in enumerate(dialog):
            if message.role != "assistant":
                continue
            prompt = self.prompts.encode(render_messages(dialog[:index], tools))
            if prompt[: len(ids)] != ids:
                raise AssertionError("a later prompt does not extend the earlier turns")
            content = render_messages(dialog[: index + 1], tools)[-1]["content"]
            answer = self.prompts.text.content_ids(content)
            labels += [-100] * (len(prompt) - len(ids)) + answer + [self.eot]
            ids = prompt + answer + [self.eot]
        return ids, labels


def _dialog_loss(
    model: Any,
    cache_type: Any,
    encoder: DialogEncoder,
    batch: list[list[Message]],
    tools: Sequence[FunctionSpec],
) -> Any:
    """Loss of a batch; the shared prompt prefix is run once and its cache broadcast."""
    import torch

    rows = [encoder.encode(dialog, tools) for dialog in batch]
    first = rows[0][0]
    shared = min(len(ids) for ids, _ in rows) - 1
    shared = next((i for i in range(shared) if any(ids[i] != first[i] for ids, _ in rows)), shared)
    width = max(len(ids) for ids, _ in rows) - shared
    ids = torch.tensor([r[shared:] + [0] * (width - len(r) + shared) for r, _ in rows])
    labels = torch.tensor([r[shared:] + [-100] * (width - len(r) + shared) for _, r in rows])
    prefix = model.model(input_ids=torch.tensor([first[:shared]]), use_cache=True)
    size = (len(rows), -1, -1, -1)
    broadcast = [
        (layer.keys.expand(size), layer.values.expand(size)) for layer in prefix.cache.layers
    ]
    cache = cache_type(ddp_cache_data=broadcast, config=model.config)
    return _loss(model, ids, labels, cache=cache)


def _loss(model: Any, ids: Any, labels: Any, cache: Any = None) -> Any:
    """Next-token cross-entropy on labelled positions; the LM head runs only where needed."""
    import torch

    hidden = model.model(input_ids=ids, cache=cache).last_hidden_state
    targets = labels[:, 1:]
    mask = targets != -100
    logits = model.lm_head(hidden[:, :-1][mask])
    return torch.nn.functional.cross_entropy(logits, targets[mask])


