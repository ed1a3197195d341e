"""A forked worker (gunicorn ``--preload``, Celery prefork) can still generate.

The parent makes an async call first, so its scheduler thread and locks exist before the fork;
the child, which inherits none of those threads, must still get its own answer. The fork runs
in a separate interpreter so a hang fails this test by its timeout instead of freezing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import asyncio, os, sys
import torch
torch.set_num_threads(1)
from toolace_integrations.langchain import ChatToolACE

llm = ChatToolACE(model=sys.argv[1], max_tokens=4)
assert asyncio.run(llm.ainvoke("Hi")).usage_metadata["output_tokens"] >= 1
pid = os.fork()
if pid == 0:
    try:
        message = asyncio.run(asyncio.wait_for(llm.ainvoke("Hi again"), 30))
        sync = llm.invoke("And once more")
        os._exit(0 if message.usage_metadata and sync.usage_metadata else 3)
    except BaseException:
        os._exit(2)
_, status = os.waitpid(pid, 0)
assert asyncio.run(llm.ainvoke("Parent again")).usage_metadata["output_tokens"] >= 1
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_async_call_in_a_forked_child_after_one_in_the_parent(tiny_model_path: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, tiny_model_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
