"""The Ray engine's session with Ray: connect or start, stop cleanly, say nothing, fail in one line.

- :func:`ray_session` connects to a cluster, to the running instance, or
  starts a local one that is this run's (reaped if the run is killed), and
  shuts it down after; Ray's SIGTERM handler during start-up becomes our
  :class:`~pneumo_batch.errors.Interrupted`.
- Quiet under cron: Ray's own logs stay in its session folder
  (:func:`ray_session`), Ray Data's INFO lines are hidden
  (:func:`quiet_ray_data_logs`), and the core worker's native notice per
  actor is discarded (:func:`started_quietly`).
- :func:`domain_errors_from_ray` unwraps a pneumo-batch error raised in an
  actor, and turns any other Ray failure into one line.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from pneumo_batch import native_stderr
from pneumo_batch.errors import InputError, Interrupted, PneumoBatchError, one_line
from pneumo_batch.reaper import reaping
from pneumo_batch.scoring import default_workers


def started_quietly(batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The batches, the first one awaited with native stderr discarded.

    Ray Data starts its actors while the first batch is awaited, and Ray's
    core worker prints a notice for each (see :mod:`pneumo_batch.native_stderr`);
    failures in that window still arrive as exceptions.
    """
    with native_stderr.discarded():
        first = next(batches, None)
    if first is not None:
        yield first
        yield from batches




@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[Any]:
    """Yield the ``ray`` module, connected: to ``address``, to the running instance, or to a new local one."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    # Quiet under cron: worker failures come back as exceptions; Ray's own logs stay in its session folder.
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    # A local instance is this run's: if the run is killed, its processes go too (see pneumo_batch.reaper).
    with reaping() if address is None else contextlib.nullcontext():
        try:
            stop_handler = signal.getsignal(signal.SIGTERM)
            try:
                if address is None:
                    ray.init(num_cpus=num_cpus or default_workers(), **options)
                else:
                    ray.init(address=address, **options)
            except SystemExit as exit:  # Ray's SIGTERM handler, while it starts, is a bare sys.exit(15)
                if exit.code == signal.SIGTERM:
                    raise Interrupted(signal.SIGTERM) from None
                raise
            if threading.current_thread() is threading.main_thread():  # ours again, for a clean stop
                signal.signal(signal.SIGTERM, stop_handler)
        except (ConnectionError, ValueError, RuntimeError) as error:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise InputError(f"cannot start or reach {where}: {one_line(error)}") from None
        try:
            yield ray
        except BaseException as error:
            # The failed frames hold object references (the input blocks, the model); freed after the
            # shutdown below, one makes Ray's core worker end the process with exit 1 ("the core worker
            # has already been shutdown"), whatever the stop's own code. Free them while Ray still runs.
            traceback.clear_frames(error.__traceback__)
            gc.collect()
            raise
        finally:
            ray.shutdown()


def cluster_cpus(ray_module: Any) -> int:
    return max(1, int(ray_module.cluster_resources().get("CPU", 1)))


@contextlib.contextmanager
def domain_errors_from_ray(ray_module: Any) -> Iterator[None]:
    """Re-raise a pneumo-batch error from an actor as itself (Ray wraps it), any other Ray failure as one line."""
    wrapper = ray_module.exceptions.RayError
    try:
        yield
    except Exception as error:
        if isinstance(error, PneumoBatchError) and not isinstance(error, wrapper):
            raise
        seen: set[int] = set()
        cause: BaseException | None = error
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            if isinstance(cause, PneumoBatchError) and not isinstance(cause, wrapper):
                # Ray Data appends its retry advice to the message; ours are one line.
                raise type(cause)(str(cause).split("\n", 1)[0]) from None
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(error, wrapper):
            raise PneumoBatchError(f"the Ray job failed: {type(error).__name__}: {one_line(error)}") from error
        raise


@contextlib.contextmanager
def quiet_ray_data_logs() -> Iterator[None]:
    """A library does not chat on stderr: hide Ray Data's per-execution INFO lines and its progress-bar notice."""
    levels = {"ray.data": logging.WARNING, "ray.data._internal.progress": logging.ERROR}
    previous = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(max(previous[name], level))
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)
