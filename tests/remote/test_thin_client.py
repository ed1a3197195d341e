"""A machine that only talks to a server needs neither torch nor weights.

A subprocess hides torch, accelerate and xgrammar (as a venv without them would), then builds both
adapters with ``base_url``, renders and encodes a prompt, and runs a forced tool call through a
loopback stub server that answers it, so the whole remote path runs without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    r'''
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    HIDDEN = ("torch", "accelerate", "xgrammar")
    for name in HIDDEN:
        sys.modules[name] = None  # import torch (or torch.x) now raises ImportError

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            text = '[get_weather(city="Paris")]'
            lines = [{"choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for line in lines:
                self.wfile.write(f"data: {json.dumps(line)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    from toolace_integrations import ChatToolACE
    from toolace_integrations.llama_index import ToolACELLM

    model = sys.argv[1]
    chat = ChatToolACE(base_url=url, model=model, max_tokens=16)
    llm = ToolACELLM(base_url=url, model=model, max_new_tokens=16)
    assert chat.get_prompt_text("Hi <|eot_id|>").startswith("<|begin_of_text|>")
    ids = llm._load().prompt_ids([{"role": "user", "content": "Hi <|eot_id|>"}])
    assert ids and all(isinstance(i, int) for i in ids)

    def get_weather(city: str) -> str:
        """Get the weather for a city."""
        return "sunny"

    answer = chat.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?")
    assert answer.tool_calls[0]["args"] == {"city": "Paris"}, answer
    loaded = [n for n in sys.modules if n.split(".")[0] in HIDDEN and sys.modules[n] is not None]
    assert not loaded, loaded
    print("thin client ok")
    '''
)


def test_remote_adapters_run_without_torch_accelerate_or_xgrammar(tiny_model_path: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, tiny_model_path],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "thin client ok" in done.stdout
