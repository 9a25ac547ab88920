"""SIGINT and SIGTERM as :class:`~pneumo_batch.errors.Interrupted`, raised only where stopping is safe.

A command runs its work inside :func:`raising_on_signals` (the CLI does): the
first SIGINT or SIGTERM raises ``Interrupted`` in the main thread, so the run
stops within moments, keeps its finished work and says how far it got; a
second one of the same kind acts at once (the default action).

An exception can leave a signal handler at any bytecode, also in the middle
of a library that keeps state of its own across a few calls. Two did not
survive it:

- ``ProcessPoolExecutor.submit`` starts worker processes. Cut while it waits
  for a new worker's pid, it never records that worker, so stopping the pool
  does not wait for it; the main process then unlinks the pool's named
  semaphores on its way out, and the worker, still unpickling them, printed
  a ``FileNotFoundError`` traceback after the one line of a Ctrl-C.
- Ray Data. Cut while it sets up a dataset's execution (planning, starting
  the actor pool), its iterator never gets to stop its scheduling thread;
  ``ray.shutdown()`` then destroys the core worker under that thread's
  ``ray.get``, and Ray's native code ends the process with exit code 1 ("The
  core worker has already been shutdown") instead of our 143.

Inside :func:`deferred`, a signal is therefore only recorded. It is raised
when the outermost such block ends (also when the block fails: the stop was
asked for first, and explains the failure), or earlier at
:func:`raise_if_stopped`, which a long block calls at its own safe points.
Only the main thread runs Python signal handlers, so elsewhere both do nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from pneumo_batch.errors import Interrupted

_STOPS = (signal.SIGINT, signal.SIGTERM)

_depth = 0
"""How many :func:`deferred` blocks the main thread is in."""
_pending: int | None = None
"""The signal received inside them, not raised yet."""


@contextmanager
def raising_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread (except inside :func:`deferred`)."""
    global _pending
    if not _in_main_thread():
        yield
        return
    _pending = None
    previous = {number: signal.signal(number, _interrupt) for number in _STOPS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _pending = None


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop asked for by a signal until the block is done (or it calls :func:`raise_if_stopped`)."""
    global _depth
    if not _in_main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            raise_if_stopped()


def raise_if_stopped() -> None:
    """Raise :class:`Interrupted` now if a signal arrived inside :func:`deferred`: call it where stopping is safe."""
    global _pending
    if _pending is not None:
        number, _pending = _pending, None
        raise Interrupted(number)


def _interrupt(number: int, frame: FrameType | None) -> None:
    global _pending
    signal.signal(number, signal.SIG_DFL)
    if _depth == 0:
        raise Interrupted(number)
    if _pending is None:
        _pending = number


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
