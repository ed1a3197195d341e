"""Peak memory of model consumers, measured in a fresh interpreter per mode.

Usage: ``python benchmarks/_memory_probe.py MODE MODEL_FOLDER [--adapters]``. Prints one JSON
line: the peak resident set size (``VmHWM``, else ``ru_maxrss``) after the imports (the
baseline) and at the end, and how many model copies the process holds. Every mode imports the
same modules before the baseline, so the numbers differ only by what the mode loads and runs.

Modes:
    engine-1: ``load_engine`` once, generate once.
    engine-2: ``load_engine`` twice with equal specs (what both adapters do), generate with each.
    adapters-1: one LangChain ``ChatToolACE``, invoked once.
    adapters-2: a ``ChatToolACE`` and a LlamaIndex ``ToolACELLM`` on the same folder, each once.
    copies-1: one ``AutoModelForCausalLM.from_pretrained``, generate once (for contrast).
    copies-2: two independent ``from_pretrained`` copies, generate with each (for contrast).
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

NEW_TOKENS = 8


def _peak_mib() -> float:
    """Peak resident set size of this process's own address space, in MiB.

    On Linux ``ru_maxrss`` survives ``fork`` + ``exec``: a child started by a large parent
    reports the parent's peak. ``VmHWM`` in ``/proc/self/status`` is the same high-water mark
    for the new address space only, so it is used where it exists.
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024


def main() -> None:
    mode, folder = sys.argv[1], sys.argv[2]
    adapters = "--adapters" in sys.argv[3:]
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from toolace_integrations.local import engine as engine_module
    from toolace_integrations.local.engine import GenerationRequest, ModelSpec, SamplingParams

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if adapters:
        from toolace_integrations.langchain import ChatToolACE
        from toolace_integrations.llama_index import ToolACELLM
    request = GenerationRequest(
        ({"role": "user", "content": "Hello there"},), SamplingParams(max_new_tokens=NEW_TOKENS)
    )
    baseline = _peak_mib()
    keep: list[Any] = []
    copies = 0
    if mode.startswith("engine-"):
        for _ in range(int(mode[-1])):
            engine = engine_module.load_engine(ModelSpec(model=folder))
            engine.generate(request)
            keep.append(engine)
        copies = len({id(e.model) for e in keep})
    elif mode.startswith("adapters-"):
        chat_model = ChatToolACE(model=folder, max_tokens=NEW_TOKENS)
        chat_model.invoke("Hello there")
        keep.append(chat_model)
        if mode == "adapters-2":
            llm = ToolACELLM(model=folder, max_new_tokens=NEW_TOKENS)
            llm.complete("Hello there")
            keep.append(llm)
        copies = len(engine_module._engines)
    elif mode.startswith("copies-"):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        for _ in range(int(mode[-1])):
            model = AutoModelForCausalLM.from_pretrained(folder)
            encoded = tokenizer.apply_chat_template(
                list(request.messages),
                add_generation_prompt=True,
                return_dict=True,
                return_tensors="pt",
            )
            with torch.inference_mode():
                model.generate(**encoded, max_new_tokens=NEW_TOKENS, do_sample=False)
            keep.append(model)
        copies = len(keep)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(
        json.dumps(
            {"mode": mode, "baseline_mib": baseline, "peak_mib": _peak_mib(), "copies": copies}
        )
    )


if __name__ == "__main__":
    main()
