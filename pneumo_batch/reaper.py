"""No process outlives its run: a reaper process ends what the run started once the run is gone.

Some children cannot be told to die with their parent: a local Ray instance
starts agents and workers from its raylet, and when the run is SIGKILLed
the raylet dies with it (Ray's own fate sharing) but they are re-parented
and live on for a while, or for good. Inside :func:`reaping`, the run's
environment carries a token (``PNEUMO_BATCH_RUN_TOKEN``) that every process
started meanwhile inherits, however deep. A small reaper process, started
just before (``python -S -c``, without the token, none of this package's
imports), waits on a pipe from the run; at end-of-file (the run left the
block, or died in any way) it SIGKILLs every process whose environment
holds the token, in a few passes a moment apart so that one being forked
is caught too. Linux only (``/proc``); elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

#: The variable that marks the processes of a run.
TOKEN_ENV = "PNEUMO_BATCH_RUN_TOKEN"

_REAPER = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
marker = sys.argv[1].encode()
sys.stdin.read()  # until the run closes the pipe, or dies
for _ in range(5):
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                marked = marker in handle.read().split(b"\\0")
        except OSError:
            continue
        if marked:
            try:
                os.kill(int(name), signal.SIGKILL)
            except OSError:
                pass
    time.sleep(0.2)
"""


@contextlib.contextmanager
def reaping() -> Iterator[None]:
    """Every process started in the block is killed when this process leaves the block or dies (see the module doc)."""
    if not Path("/proc/self/environ").exists():
        yield
        return
    token = uuid.uuid4().hex
    reaper = subprocess.Popen(
        [sys.executable, "-S", "-c", _REAPER, f"{TOKEN_ENV}={token}"], stdin=subprocess.PIPE, close_fds=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    assert reaper.stdin is not None
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = token
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous
        reaper.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            reaper.wait(timeout=10)
