"""Write the seccomp filters of the shipped systemd unit as BPF files, for bubblewrap's --add-seccomp-fd.

Run with Debian's python3 (it has python3-seccomp; the project's venv does
not): ``/usr/bin/python3 tests/sandbox_seccomp.py FOLDER GROUP...``. Writes
three files, each one filter, the way systemd installs them for
``tests/test_systemd_unit.py``:

- ``syscalls.bpf``: ``SystemCallFilter=GROUP...`` with
  ``SystemCallErrorNumber=EPERM``: the groups' system calls (expanded with
  ``systemd-analyze syscall-filter``, nested groups included) are allowed,
  any other fails with EPERM;
- ``mdwe.bpf``: ``MemoryDenyWriteExecute=yes`` as systemd 252 does it: no
  mapping both writable and executable (``mmap``), no ``mprotect`` or
  ``pkey_mprotect`` adding execute, no ``shmat`` with ``SHM_EXEC``;
- ``families.bpf``: ``RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6``:
  ``socket`` of any other family fails with EAFNOSUPPORT.
"""

from __future__ import annotations

import errno
import mmap
import subprocess
import sys
from pathlib import Path

import seccomp

SHM_EXEC = 0o100000
ALLOWED_FAMILIES = {1, 2, 10}  # AF_UNIX, AF_INET, AF_INET6
AF_MAX = 46


def group_members(group: str, seen: set[str]) -> set[str]:
    """The system calls of ``group`` (``@name``), nested groups expanded."""
    if group in seen:
        return set()
    seen.add(group)
    listing = subprocess.run(["systemd-analyze", "syscall-filter", group], check=True, capture_output=True, text=True).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        names |= group_members(name, seen) if name.startswith("@") else {name}
    return names


def syscall_filter(groups: list[str]) -> seccomp.SyscallFilter:
    allowed = set()
    for group in groups:
        allowed |= group_members(group, set()) if group.startswith("@") else {group}
    bpf = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    for name in sorted(allowed):
        try:
            bpf.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):  # not a system call of this architecture (arm_fadvise64_64, ...)
            continue
    return bpf


def mdwe_filter() -> seccomp.SyscallFilter:
    bpf = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    write_exec = mmap.PROT_WRITE | mmap.PROT_EXEC
    bpf.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, write_exec, write_exec))
    for name in ("mprotect", "pkey_mprotect"):
        bpf.add_rule(seccomp.ERRNO(errno.EPERM), name, seccomp.Arg(2, seccomp.MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC))
    bpf.add_rule(seccomp.ERRNO(errno.EPERM), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
    return bpf


def families_filter() -> seccomp.SyscallFilter:
    bpf = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for family in range(AF_MAX):
        if family not in ALLOWED_FAMILIES:
            bpf.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
    return bpf


def main(folder: Path, groups: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, bpf in (("syscalls", syscall_filter(groups)), ("mdwe", mdwe_filter()), ("families", families_filter())):
        with open(folder / f"{name}.bpf", "wb") as out:
            bpf.export_bpf(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
