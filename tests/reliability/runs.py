"""Running `pneumo-batch` as a real process and looking at what it leaves: processes, locks, files.

Each run starts in a session of its own (``start_new_session``), so every
process it creates, the fork server and workers included, carries that
session id in the process table (``/proc/PID/stat``) even after the main
process is gone and they are re-parented. That is what "no process of the
run is left" is checked against.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: The console script of the environment running the tests.
CLI = [sys.executable, "-m", "pneumo_batch.cli"]


def start(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``pneumo-batch ARGS`` in a new session, stderr captured."""
    return subprocess.Popen(
        [*CLI, *args], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def session_processes(session: int) -> list[str]:
    """``PID command`` of every live process (zombies excluded) of the session ``session``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # ended while we looked
            continue
        # Fields after the command name (which is in parentheses and may hold spaces).
        state, _parent, _group, process_session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(process_session) == session and state != "Z":
            found.append(f"{entry.name} {command[:120]}")
    return found


def wait_for_no_processes(session: int, seconds: float = 5.0) -> list[str]:
    """Poll the process table for up to ``seconds``; return what is still alive of the session then."""
    deadline = time.monotonic() + seconds
    while (alive := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def lock_is_held(path: Path) -> bool:
    """Whether any process holds a ``flock`` on ``path``, by its inode in ``/proc/locks``."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return False
    wanted = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter has "->" after the number
        device_inode = fields[6] if fields[1] == "->" else fields[5]
        if device_inode == wanted:
            return True
    return False


def count_files(folder: Path, pattern: str) -> int:
    try:
        return sum(1 for _ in folder.glob(pattern))
    except OSError:
        return 0
