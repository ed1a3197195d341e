"""Stop strings over a text stream, in linear time: shared by the local and remote backends.

A stop string may arrive split over several deltas, so the end of the text seen so far is held
back until it can no longer begin a stop string. Each delta is searched together with at most
``longest stop - 1`` held-back characters, never the whole answer again.
"""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class StopScanner:
    """Feeds text deltas through, holding back what may be the start of a stop string.

    Example::

        scanner = StopScanner(["END"])
        scanner.feed("Hello EN")  # "Hello " ("EN" may start the stop string)
        scanner.feed("D, more")   # "" and scanner.stopped is now True

    Attributes:
        stopped: A stop string was found; later deltas are ignored.
        text: Everything released so far (the answer, cut at the stop string).
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._hold = max((len(s) - 1 for s in self._stop), default=0)
        self._held = ""
        self.stopped = False
        self.text = ""

    def feed(self, delta: str) -> str:
        """Release the part of ``held + delta`` that cannot be part of a stop string."""
        if self.stopped or not delta:
            return ""
        window = self._held + delta
        if self._stop:
            cut, found = cut_at_stop(window, self._stop)
            if found:
                self.stopped = True
                self._held = ""
                return self._release(cut)
        keep = min(self._hold, len(window))
        self._held = window[len(window) - keep :]
        return self._release(window[: len(window) - keep])

    @property
    def held(self) -> str:
        """Text seen but not yet released (it may begin a stop string)."""
        return self._held

    def flush(self) -> str:
        """Release what is still held back (the stream ended without a stop string)."""
        held, self._held = self._held, ""
        return self._release(held)

    def _release(self, text: str) -> str:
        self.text += text
        return text
