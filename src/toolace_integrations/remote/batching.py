"""Calls to a server sent together: concurrent async calls gathered, equal settings grouped.

Calls that arrive within :data:`GATHER_WINDOW_S` of each other go to the backend's
``generate_batch`` together (equal settings become one list-prompt request, which costs the
server one request's overhead instead of many). Unlike the local engine's coalescer, a batch
never waits for the previous one: each runs on its own pool thread, so the server's scheduler,
not the client, decides what runs together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from toolace_integrations.core.generation import EveryoneLeft, GenerationRequest, GenerationResult
from toolace_integrations.core.scheduling import error_for_caller
from toolace_integrations.remote.answer import RemoteError

__all__ = ["GATHER_WINDOW_S", "RequestGatherer", "send_grouped"]

logger = logging.getLogger(__name__)

GATHER_WINDOW_S = 0.005
"""How long the first of several concurrent calls waits for others to share its request."""

_Batch = Callable[[Sequence[GenerationRequest], threading.Event], list[GenerationResult]]
_Item = tuple[GenerationRequest, threading.Event, "Future[GenerationResult]"]


class RequestGatherer:
    """Gathers concurrent calls into batches and runs every batch at once on a thread pool.

    Args:
        generate_batch: The backend's ``generate_batch``.
        max_batch: The most calls in one batch; also the number of batches in flight at once.
    """

    def __init__(self, generate_batch: _Batch, max_batch: int) -> None:
        self._generate_batch, self._max_batch = generate_batch, max(1, max_batch)
        self._pool = ThreadPoolExecutor(self._max_batch, "toolace-remote")
        self._waiting: list[_Item] = []
        self._lock = threading.Lock()

    def submit(
        self, request: GenerationRequest, cancel: threading.Event
    ) -> Future[GenerationResult]:
        """Queue one call; its result (or error) arrives on the returned future."""
        future: Future[GenerationResult] = Future()
        with self._lock:
            self._waiting.append((request, cancel, future))
            first, full = len(self._waiting) == 1, len(self._waiting) >= self._max_batch
        if full:
            self._flush()
        elif first:
            timer = threading.Timer(GATHER_WINDOW_S, self._flush)
            timer.daemon = True
            timer.start()
        return future

    def close(self) -> None:
        """Stop taking batches; running ones finish."""
        self._pool.shutdown(wait=False)

    def _flush(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        live = [item for item in batch if item[2].set_running_or_notify_cancel()]
        if live:
            self._pool.submit(self._run, live)

    def _run(self, items: Sequence[_Item]) -> None:
        requests = [request for request, _, _ in items]
        try:
            results = self._generate_batch(requests, EveryoneLeft([c for _, c, _ in items]))
        except BaseException as error:  # one caller's bad request must not fail the others
            if len(items) == 1 or not isinstance(error, Exception):  # an interrupt stops them all
                for _, _, future in items:
                    future.set_exception(error_for_caller(error))
                return
            for request, cancel, future in items:
                try:
                    future.set_result(self._generate_batch([request], cancel)[0])
                except BaseException as single_error:  # handed to its caller
                    future.set_exception(error_for_caller(single_error))
            return
        for (_, _, future), result in zip(items, results, strict=True):
            future.set_result(result)


def send_grouped(
    requests: Sequence[GenerationRequest],
    *,
    key: Callable[[GenerationRequest], Hashable],
    send_list: Callable[[Sequence[GenerationRequest]], list[GenerationResult]] | None,
    send_one: Callable[[GenerationRequest], GenerationResult],
    max_concurrency: int,
) -> list[GenerationResult]:
    """Results of ``requests`` in order: each group of equal ``key`` as one list request.

    ``send_list`` (``None``: never) sends a group as one list-prompt request; a server that
    refuses it (400/422) gets that group's prompts one by one. Single requests go concurrently,
    at most ``max_concurrency`` at once.
    """
    results: dict[int, GenerationResult] = {}
    single: list[int] = []
    groups: dict[Hashable, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(key(request), []).append(index)
    for indices in groups.values():
        if send_list is None or len(indices) == 1:
            single += indices
            continue
        try:
            batch = send_list([requests[i] for i in indices])
        except RemoteError as error:
            if error.status not in (400, 422):
                raise
            logger.info("The server refused a list prompt; sending prompts one by one.")
            single += indices
            continue
        results.update(zip(indices, batch, strict=True))
    if len(single) == 1:
        results[single[0]] = send_one(requests[single[0]])
    elif single:
        with ThreadPoolExecutor(max(1, min(max_concurrency, len(single)))) as pool:
            done = pool.map(send_one, [requests[i] for i in single])
            results.update(zip(single, done, strict=True))
    return [results[i] for i in range(len(requests))]
