"""No process outlives its run: a reaper process ends what the run started once the run is gone.

Some children cannot be told to die with their parent: a local Ray instance
starts agents and workers from its raylet, and when the run is SIGKILLed
the raylet dies with it (Ray's own fate sharing) but they are re-parented
and live on for a while, or for good. :func:`reaping` starts a small reaper
process first (``python -S -c``, none of this package's imports) that reads
a pipe from the run, and marks the processes the run starts in two ways:

- a thread of the run reports every descendant (pid and start time, from
  ``/proc``) to the reaper every :data:`SCAN_INTERVAL` seconds;
- the run's environment carries a token (:data:`TOKEN_ENV`) that every process
  started meanwhile inherits, for the ones too young to have been reported
  (a process that renames itself, as Ray's do, may overwrite what
  ``/proc/PID/environ`` shows, but by then it has been reported).

At end-of-file on the pipe (the run left the block, or died in any way) the
reaper SIGKILLs every reported process that is still the same one and every
process holding the token, in a few passes a moment apart so that one being
forked is caught too. Linux only (``/proc``); elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

#: The variable that marks the processes of a run.
TOKEN_ENV = "PNEUMO_BATCH_RUN_TOKEN"
#: How often the run reports its descendants to the reaper (seconds).
SCAN_INTERVAL = 0.2

_REAPER = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
marker = sys.argv[1].encode()
def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
def marked(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return marker in handle.read().split(b"\\0")
    except OSError:
        return False
reported = {}
for line in sys.stdin:  # until the run closes the pipe, or dies
    pid, start = line.split()
    reported[int(pid)] = start
for _ in range(5):
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            pid = int(name)
            if (pid in reported and start_time(pid) == reported[pid]) or marked(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    time.sleep(0.2)
"""


@contextlib.contextmanager
def reaping() -> Iterator[None]:
    """Every process started in the block is killed when this process leaves the block or dies (see the module doc)."""
    if not Path("/proc/self/stat").exists():
        yield
        return
    token = uuid.uuid4().hex
    reaper = subprocess.Popen(
        [sys.executable, "-S", "-c", _REAPER, f"{TOKEN_ENV}={token}"], stdin=subprocess.PIPE, text=True,
        close_fds=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    reporter = threading.Thread(target=_report, args=(reaper, stop), name="reaper-report", daemon=True)
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = token
    reporter.start()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous
        stop.set()
        reporter.join()
        with contextlib.suppress(OSError):
            assert reaper.stdin is not None
            reaper.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            reaper.wait(timeout=10)


def _report(reaper: subprocess.Popen[str], stop: threading.Event) -> None:
    """Tell the reaper each descendant this process gets from now on, until ``stop``."""
    assert reaper.stdin is not None
    reported = _descendants(os.getpid(), exclude=reaper.pid)  # older than the block: not the block's to end
    while True:
        for process in _descendants(os.getpid(), exclude=reaper.pid) - reported:
            try:
                reaper.stdin.write(f"{process[0]} {process[1]}\n")
                reaper.stdin.flush()
            except (OSError, ValueError):  # the reaper is gone: nothing more to tell
                return
            reported.add(process)
        if stop.wait(SCAN_INTERVAL):
            return


def _descendants(root: int, *, exclude: int) -> set[tuple[int, str]]:
    """(pid, start time) of every live process below ``root`` in the process tree, except ``exclude``."""
    children: dict[int, list[tuple[int, str]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append((int(name), fields[19]))
    found: set[tuple[int, str]] = set()
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child[0] != exclude and child not in found:
                found.add(child)
                pending.append(child[0])
    return found
