"""``toolace-integrations`` in a real terminal: a pseudo-terminal, keystrokes and Ctrl-C.

The command runs as its own process with a pty as its controlling terminal, as in a shell: the
test types questions at the ``you>`` prompt and presses Ctrl-C (the terminal turns it into SIGINT
for the command's process group).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import toolace_integrations
from toolace_integrations.testing import make_tiny_toolace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

WAIT_S = 120.0
"""Longest wait for expected output: a guard against a hung command, not a timing assertion."""


def _command() -> list[str]:
    script = Path(sys.executable).with_name("toolace-integrations")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "toolace_integrations.cli"]


def _controlling_terminal() -> None:
    """In the child, after ``setsid``: make the pty on stdin its controlling terminal."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The command on a pseudo-terminal: what it printed so far, and keys to type."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            [*_command(), *argv],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_terminal,
        )
        os.close(slave)
        self.screen = ""
        self._seen = 0

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the command has exited and closed the terminal
            return False
        self.screen += data.decode("utf-8", "replace")
        return bool(data)

    def expect(self, text: str) -> None:
        """Wait until ``text`` appears after what earlier calls waited for."""
        while (found := self.screen.find(text, self._seen)) < 0:
            if not self._read(WAIT_S):
                pytest.fail(f"{text!r} never appeared; the terminal shows:\n{self.screen[-3000:]}")
        self._seen = found + len(text)

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self) -> int:
        """The command's exit status, once it ends; reads the rest of its output."""
        while self._read(WAIT_S):
            pass
        return self.process.wait(timeout=WAIT_S)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[list[str]], Terminal]]:
    """Opens terminals whose commands import this checkout and cache in ``tmp_path``."""
    source = str(Path(toolace_integrations.__file__).resolve().parents[1])
    env = dict(os.environ, TOOLACE_CACHE=str(tmp_path / "cache"), TERM="xterm")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    opened: list[Terminal] = []

    def open_terminal(argv: list[str]) -> Terminal:
        opened.append(Terminal(argv, env))
        return opened[-1]

    yield open_terminal
    for each in opened:
        each.close()


def test_sixty_chat_turns_in_a_small_window_drop_the_oldest_and_go_on(
    terminal: Callable[[list[str]], Terminal], tmp_path: Path
) -> None:
    """A 640-token window holds the tools and a few turns; 60 turns overflow it many times."""
    model = make_tiny_toolace(tmp_path / "model", max_position_embeddings=640)
    chat = terminal(["chat", "--model", model, "--max-new-tokens", "8", "--no-grammar"])
    for number in range(1, 61):
        chat.expect("you> ")
        chat.type(f"What is {number} * 7?\r")
    chat.expect("you> ")
    chat.type("exit\r")
    assert chat.wait() == 0
    screen = chat.screen.replace("\r\n", "\n")
    assert "Traceback" not in screen
    assert len(re.findall(r"^User: What is \d+ \* 7\?$", screen, re.MULTILINE)) == 60
    assert len(re.findall(r"^  total [\d.]+ s$", screen, re.MULTILINE)) == 60  # all answered
    dropped = re.findall(
        r"^  \(the conversation outgrew the model's 640-token window: dropped the oldest "
        r"(?:turn|\d+ turns)\)$",
        screen,
        re.MULTILINE,
    )
    assert len(dropped) >= 5


def test_ctrl_c_while_the_demo_model_trains_leaves_no_partial_folder(
    terminal: Callable[[list[str]], Terminal], tmp_path: Path
) -> None:
    demo = terminal(["demo"])
    demo.expect("Training the tiny demo model into ")
    demo.expect("  step ")  # training is under way
    assert list((tmp_path / "cache").glob("*.partial-*")), "training writes a partial folder"
    demo.type("\x03")  # Ctrl-C
    assert demo.wait() == 128 + signal.SIGINT
    screen = demo.screen.replace("\r\n", "\n")
    assert "Traceback" not in screen
    assert screen.rstrip().endswith("Interrupted.")
    assert list((tmp_path / "cache").iterdir()) == []
