"""Who runs when, for every backend: the model lock, grouping, coalescing, joining, cancelling.

Each backend has one :class:`Scheduler`: callers hand it prepared jobs (prompt encoded and
grammar compiled in the caller's own thread, so a slow compile never holds up anyone else) and
one worker thread runs them in batches while holding the model lock. What it decides:

- **Coalescing.** The first job waits at most :data:`COALESCE_WINDOW_S` for others (up to
  :data:`PREPARING_WAIT_S` while other callers are still encoding their prompts); then the
  oldest job's group (jobs with the same key: the same temperature and top-p) runs together, up to
  :data:`MAX_BATCH` rows. Constrained and free rows, different tools, budgets and stop strings
  share a batch (each row has its own grammar matcher and finish rules); seeded sampling and
  static caches get groups of their own, so their output is the same as alone.
- **Cost.** Batching never pads a prompt: the engine prefills each row's uncached prompt tokens
  alone, starting from its longest cached prefix (a prefix the rows share is computed once),
  so a batch costs at most the prefill of its rows run one after another. Only decoding is
  shared, one step for all rows, and a row leaves the moment it is finished (its caller gets its
  answer then, not when the batch ends). A batch that has lost at least half of its rows while
  :data:`JOIN_MIN_REMAINING` or more tokens remain is compacted to its live rows.
- **Joining.** A job that arrives while a batch of its group decodes does not wait for the
  batch: at the next token the batch yields, its rows keep their key/value caches, and the next
  batch continues them together with the newcomer (iteration-level scheduling on top of
  transformers' ``generate``). The engine yields only when the tokens left to wait for cost more
  (measured step time) than re-arranging the rows' caches (measured copy rate); otherwise the
  newcomer waits those few tokens. Jobs of another group wait for the running batch to end.
- **Cancelling.** A caller that leaves stops its own row within a token, while the batch goes on
  for the others; a caller still queued (behind a batch of other settings, or the lock) is
  released at once (:meth:`Scheduler.withdraw`, :meth:`Scheduler.wait`) and never runs.
- **Interrupts.** A ``KeyboardInterrupt`` or ``SystemExit`` raised in the worker thread stops
  the batch it was running; its callers get a :class:`~toolace_integrations.errors.GenerationError`
  (the interrupt as its cause), never the interrupt itself, which in asyncio would end the event
  loop, and the worker goes on serving later calls.

Limits: a newcomer's prefill runs while the batch it joins waits (no chunked prefill), and the
remote backend's batches are whole ``generate_batch`` calls (the server schedules them).

Lifetime: the worker thread exits after :data:`IDLE_S` seconds without work and holds only a
weak reference to its scheduler while idle; a backend without a scheduler of its own (the
remote client) gets one tied to it weakly, so dropping the backend frees both. After
``os.fork`` every scheduler starts with a fresh lock, queue and thread in the child.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolace_integrations.core.forking import reset_after_fork
from toolace_integrations.core.generation import (
    Backend,
    EveryoneLeft,
    GenerationRequest,
    GenerationResult,
)
from toolace_integrations.errors import GenerationError

logger = logging.getLogger(__name__)

COALESCE_WINDOW_S = 0.005
"""How long the first job waits for others to join its batch."""
PREPARING_WAIT_S = 0.1
"""How long it may wait longer for jobs still being prepared (callers encoding their prompts)."""
MAX_BATCH = 16
"""Rows decoded together at most."""
JOIN_MIN_REMAINING = 4
"""A running batch yields to newcomers (or is compacted) only if this many tokens remain."""
IDLE_S = 30.0
"""A worker thread with nothing to do for this long exits; the next job starts a new one."""
LEAVE_CHECK_S = 0.02
"""How often a caller whose job has not started (and a batch waiting for the model lock)
checks whether its caller has left."""
LEFT_BEFORE_START = GenerationResult("", "stop", 0, 0)
"""What a caller that left before its job ran gets: no text, nothing generated."""

Outcome = GenerationResult | BaseException
Done = Callable[["Job", Outcome, bool], None]
"""``done(job, outcome, now)``: a job finished; ``now`` hands the outcome over at once."""
ShouldYield = Callable[[int, int], bool]
"""``should_yield(live_rows, tokens_remaining)``: whether a running batch should stop early."""

_sequence = itertools.count()


@dataclass(eq=False)
class Job:
    """One request on its way through a scheduler.

    Attributes:
        request: What to generate.
        cancel: Set by the caller to leave; the job then ends within a token.
        state: The backend's own per-job state (the engine's row).
        key: Jobs with equal keys may share a batch.
        preemptible: Whether a batch holding this job may yield and resume later.
        future: Resolved with the job's result or error.
    """

    request: GenerationRequest
    cancel: threading.Event
    state: Any = None
    key: Hashable = None
    preemptible: bool = False
    future: Future[GenerationResult] = field(default_factory=Future)
    _order: int = field(default_factory=lambda: next(_sequence))
    _arrived: float = field(default_factory=time.monotonic)
    _staged: Outcome | None = None


class Batcher(Protocol):
    """What a scheduler needs from a backend."""

    def prepare(self, request: GenerationRequest, cancel: threading.Event) -> Job:
        """Everything that can be done before the model is free (runs in the caller's thread)."""

    def run(self, jobs: Sequence[Job], should_yield: ShouldYield, done: Done) -> None:
        """Run ``jobs`` as one batch, calling ``done`` for each that finishes."""


class Scheduler:
    """The queue, model lock and worker thread in front of one backend.

    Args:
        batcher: How jobs are prepared and run.
    """

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self._fresh()
        reset_after_fork(self)

    def _fresh(self) -> None:
        self.model_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[Job] = []
        self._thread: threading.Thread | None = None
        self._preparing = 0
        weakref.finalize(self, _wake, self._cond)  # a waiting worker sees it is gone and exits

    def prepare(self, request: GenerationRequest, cancel: threading.Event) -> Job:
        """Prepare a job in the calling thread (see :meth:`Batcher.prepare`)."""
        return self._batcher.prepare(request, cancel)

    def start(self, prepare: Callable[[], Job]) -> Future[GenerationResult]:
        """Prepare a job in the calling thread and queue it; the batch being formed waits."""
        with self._cond:
            self._preparing += 1
        try:
            job = prepare()
        finally:
            with self._cond:
                self._preparing -= 1
                self._cond.notify()
        return self.submit(job)[0]

    def withdraw(self, future: Future[GenerationResult]) -> bool:
        """Release the job of ``future`` at once if it has not started; returns whether it had not.

        The job leaves the queue and its future gets :data:`LEFT_BEFORE_START`. A started job
        stops within a token of its own once its ``cancel`` is set.
        """
        with self._cond:
            job = next((job for job in self._queue if job.future is future), None)
            if job is None or future.running():  # taken, or a resumable batch's row
                return False
            self._queue.remove(job)
        _resolve(future, LEFT_BEFORE_START)
        return True

    def wait(self, future: Future[GenerationResult], cancel: threading.Event) -> GenerationResult:
        """The result of ``future``, returned at once when ``cancel`` is set while it is queued.

        A job still queued then is withdrawn (:data:`LEFT_BEFORE_START`) whatever batch is
        running; a started one stops within a token of its own.
        """
        while True:
            try:
                return future.result(timeout=queued_check(future))
            except TimeoutError:
                if cancel.is_set():
                    self.withdraw(future)

    def submit(self, *jobs: Job) -> list[Future[GenerationResult]]:
        """Queue prepared jobs (together, so they can share a batch); one future each."""
        with self._cond:
            self._queue.extend(jobs)
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_serve,
                    args=(weakref.ref(self), self._cond),
                    name="toolace-scheduler",
                    daemon=True,
                )
                self._thread.start()
        return [job.future for job in jobs]

    def _next_batch(self) -> list[Job]:
        """The oldest job's group, after the coalescing window (the queue is not empty)."""
        with self._cond:
            first = min(self._queue, key=lambda job: job._order)
            while len(self._queue) < MAX_BATCH:
                window = PREPARING_WAIT_S if self._preparing else COALESCE_WINDOW_S
                wait = first._arrived + window - time.monotonic()
                if wait <= 0:
                    break
                self._cond.wait(wait)
            group = sorted(
                (job for job in self._queue if job.key == first.key), key=lambda job: job._order
            )[:MAX_BATCH]
            for job in group:
                self._queue.remove(job)
            # Started under the lock, so that a withdrawn job is either queued or running.
            return [job for job in group if job.future.running() or _start(job)]

    def _run(self, batch: list[Job]) -> None:
        while not self.model_lock.acquire(timeout=LEAVE_CHECK_S):
            for job in [job for job in batch if job.cancel.is_set()]:
                batch.remove(job)
                _resolve(job.future, LEFT_BEFORE_START)
            if not batch:
                return
        preemptible = all(job.preemptible for job in batch)
        started = len(batch)

        def should_yield(live: int, remaining: int) -> bool:
            if not preemptible or remaining < JOIN_MIN_REMAINING:
                return False
            if started > 1 and live * 2 <= started:
                return True
            with self._cond:
                return live < MAX_BATCH and any(
                    job.key == batch[0].key and not job.cancel.is_set() for job in self._queue
                )

        def done(job: Job, outcome: Outcome, now: bool) -> None:
            if now:
                _resolve(job.future, outcome)
            else:
                job._staged = outcome

        try:
            self._batcher.run(batch, should_yield, done)
        except BaseException as error:
            for job in batch:
                if job._staged is None and not job.future.done():
                    job._staged = error
        finally:
            self.model_lock.release()
        unfinished = []
        for job in batch:
            if job._staged is not None:
                _resolve(job.future, job._staged)
            elif not job.future.done():
                unfinished.append(job)
        if unfinished:
            logger.debug("a batch of %d rows yielded with %d unfinished; they continue with "
                         "the jobs waiting", started, len(unfinished))  # fmt: skip
            with self._cond:
                self._queue.extend(unfinished)

    def _after_fork(self) -> None:
        for job in self._queue:
            job.future.cancel()
        self._fresh()


def _serve(ref: weakref.ref[Scheduler], cond: threading.Condition) -> None:
    """The worker loop; while it waits for work it holds its scheduler only weakly."""
    while True:
        with cond:
            scheduler = ref()
            if scheduler is not None and not scheduler._queue:
                del scheduler
                cond.wait(IDLE_S)
                scheduler = ref()
            if scheduler is None or scheduler._cond is not cond:  # collected, or reset by fork
                return
            if not scheduler._queue:
                scheduler._thread = None
                return
        batch = scheduler._next_batch()
        if batch:
            scheduler._run(batch)
        del scheduler, batch


def _wake(cond: threading.Condition) -> None:
    with cond:
        cond.notify_all()


def queued_check(future: Future[GenerationResult]) -> float | None:
    """How long a caller may wait for ``future`` before checking whether it has left.

    A job that started stops on its own within a token, so only a queued one needs checking.
    """
    return None if future.running() or future.done() else LEAVE_CHECK_S


def _start(job: Job) -> bool:
    return job.future.set_running_or_notify_cancel()


def _resolve(future: Future[GenerationResult], outcome: Outcome) -> None:
    if future.done() or not (future.running() or future.set_running_or_notify_cancel()):
        return
    if isinstance(outcome, BaseException):
        future.set_exception(error_for_caller(outcome))
    else:
        future.set_result(outcome)


def error_for_caller(error: BaseException) -> BaseException:
    """``error`` as a caller sees it: an interrupt of the worker is a ``GenerationError``.

    As itself it would read as the caller's own Ctrl-C, and end an asyncio caller's event loop.
    """
    if isinstance(error, Exception):
        return error
    interrupted = GenerationError(
        f"The model's worker thread was interrupted ({type(error).__name__}) while it ran this "
        "call, which was stopped without an answer. Call again: later calls are served as usual."
    )
    interrupted.__cause__ = error
    return interrupted


class _WholeBatches:
    """A batcher for backends with ``generate_batch`` but neither a scheduler nor ``submit``.

    It refers to its backend weakly, so a scheduler never keeps a backend alive.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = weakref.ref(backend)

    def prepare(self, request: GenerationRequest, cancel: threading.Event) -> Job:
        return Job(request, cancel)

    def run(self, jobs: Sequence[Job], should_yield: ShouldYield, done: Done) -> None:
        backend = self._backend()
        if backend is None:
            raise GenerationError("the backend was closed while calls were waiting for it")
        requests = [job.request for job in jobs]
        try:
            results = backend.generate_batch(requests, EveryoneLeft([j.cancel for j in jobs]))
        except Exception as error:  # an interrupt stops the whole batch (see Scheduler._run)
            if len(jobs) == 1:
                done(jobs[0], error, False)
                return
            # One caller's bad request (e.g. too long) must not fail its neighbours.
            for job in jobs:
                try:
                    done(job, backend.generate_batch([job.request], job.cancel)[0], False)
                except Exception as single_error:  # handed to its caller
                    done(job, single_error, False)
            return
        for job, result in zip(jobs, results, strict=True):
            done(job, result, False)


_schedulers: weakref.WeakKeyDictionary[Any, Scheduler] = weakref.WeakKeyDictionary()
_schedulers_lock = threading.Lock()


def scheduler_for(backend: Backend) -> Scheduler:
    """The backend's own scheduler, or one tied to the backend's lifetime."""
    own = getattr(backend, "scheduler", None)
    if isinstance(own, Scheduler):
        return own
    with _schedulers_lock:
        scheduler = _schedulers.get(backend)
        if scheduler is None:
            scheduler = _schedulers[backend] = Scheduler(_WholeBatches(backend))
        return scheduler


def _after_fork_in_child() -> None:
    global _schedulers_lock
    _schedulers_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
