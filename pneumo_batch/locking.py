"""One run at a time per output, without stale locks.

A lock is an advisory ``flock`` on a file (``OUTPUT_ROOT/.nightly.lock`` for
the nightly job, ``OUT.partial/lock`` for a scoring run). The kernel
releases it when the holding process ends in any way, SIGKILL and power loss
included, so a killed run never blocks the next one: the file may stay
behind, but nobody holds it. A run that ends by itself (or by SIGINT or
SIGTERM) removes the file. The file carries the holder's pid, host and
start time for the refusal message (written in place, never replaced: the
lock belongs to the file, so a rename would drop it). Needs a local
filesystem or one with working ``flock`` (NFSv4 has it); without ``fcntl``
(not POSIX) runs are not locked.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from pneumo_batch import storage
from pneumo_batch.errors import JobLockedError

LOCK_FILE = ".nightly.lock"


@contextmanager
def exclusive_run(output_root: Path) -> Iterator[None]:
    """Hold the output root's lock for the duration, or raise :class:`JobLockedError` at once."""
    storage.make_folder(output_root)
    path = output_root / LOCK_FILE
    with hold_lock(path, lambda holder: f"another run holds {path} ({holder}); try again when it ends"):
        yield


@contextmanager
def hold_lock(path: Path, refusal: Callable[[str], str]) -> Iterator[None]:
    """Hold ``path``'s lock for the duration, or raise :class:`JobLockedError` with ``refusal(holder)`` at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    while True:
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise JobLockedError(refusal(_describe(handle.read()))) from None
            if not _still_named(path, handle.fileno()):
                continue  # the holder removed this file as we opened it: lock the new one
            with suppress(PermissionError):  # a stale lock file of another account stays as it is
                storage.make_private(path)  # ours now: private like every output
            handle.seek(0)
            handle.truncate()
            handle.write(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    }
                )
            )
            handle.flush()
            try:
                yield
            finally:
                # Removed while still held, so that a run waiting on this file
                # notices (see _still_named) instead of locking a deleted file.
                path.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)
            return


def _still_named(path: Path, descriptor: int) -> bool:
    """Whether ``path`` is still the file open at ``descriptor``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _describe(content: str) -> str:
    try:
        holder = json.loads(content)
        return f"pid {holder['pid']} on {holder['host']} since {holder['started_at']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
