"""The shipped systemd unit: valid, rated 3.0 or lower by ``systemd-analyze security``, and the job runs in its sandbox.

systemd is not PID 1 where these tests run (a container, CI), so the
sandbox test rebuilds the unit's sandbox with bubblewrap from the unit's own
lines: the whole file system read-only (ProtectSystem=strict) but the output
root (ReadWritePaths=), the input bound read-only (ReadOnlyPaths=), an
empty /tmp (PrivateTmp=), empty home folders (ProtectHome=), a minimal /dev
(PrivateDevices=), no capabilities (CapabilityBoundingSet=), no new
privileges (bubblewrap sets NoNewPrivileges), the unit's umask, and its
seccomp filters (SystemCallFilter=, MemoryDenyWriteExecute=,
RestrictAddressFamilies=; built by tests/sandbox_seccomp.py). What it cannot
rebuild without systemd: IPAddressAllow= (cgroup BPF) and the Protect*
settings that only hide kernel interfaces. ``make test`` installs the tools
(.ci/install-sandbox: systemd, bubblewrap, python3-seccomp).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pneumo_batch.export import export_split
from pneumo_batch.prometheus import METRICS_FILE
from pneumo_batch.toml_files import read_toml

JOBS = Path(__file__).resolve().parents[1] / "jobs"
SERVICE = JOBS / "pneumo-batch-nightly.service"
TIMER = JOBS / "pneumo-batch-nightly.timer"
SECCOMP_SCRIPT = Path(__file__).with_name("sandbox_seccomp.py")
#: Debian's python3, which has python3-seccomp (the venv's Python does not).
SYSTEM_PYTHON = "/usr/bin/python3"
MAX_EXPOSURE = 3.0
DATE = "2026-11-20"


#: The line make test prints when it cannot install them (.ci/install-system-tools): the tests fail with it.
MISSING = ("systemd-analyze, bwrap or python3-seccomp is missing and cannot be installed here: run "
           "'sudo apt-get install -y systemd bubblewrap python3 python3-seccomp', or the tests that need it fail")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(MISSING)
    return path


def directives(unit: Path) -> dict[str, list[str]]:
    """The unit's ``Key=value`` lines, each key with its values in order (systemd allows a key more than once)."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_and_timer_pass_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart's program exists: point it at this checkout's installed command.
    command = Path(sys.executable).with_name("pneumo-batch")
    assert command.is_file(), command
    unit = SERVICE.read_text().replace("/opt/pneumo-batch/.venv/bin/pneumo-batch", str(command))
    assert unit != SERVICE.read_text()
    (tmp_path / SERVICE.name).write_text(unit)
    shutil.copy(TIMER, tmp_path / TIMER.name)
    result = subprocess.run(
        [tool("systemd-analyze"), "verify", str(tmp_path / SERVICE.name), str(tmp_path / TIMER.name)],
        capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_unit_exposure_is_at_most_3():
    result = subprocess.run(
        [tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(SERVICE)],
        capture_output=True, text=True, timeout=60,
    )
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert overall, result.stdout + result.stderr
    assert float(overall.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_paths_match_the_example_config():
    """ReadWritePaths= is the example config's output root only; ReadOnlyPaths= its input."""
    config = read_toml(JOBS / "nightly.example.toml", "config")
    unit = directives(SERVICE)
    assert unit["ReadWritePaths"] == [config["output_root"]]
    assert unit["ReadOnlyPaths"] == [config["input"]]
    assert unit["UMask"] == ["0027"] and unit["ProtectSystem"] == ["strict"]


@pytest.fixture(scope="module")
def incoming(pneumoniamnist, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("incoming")
    export_split(pneumoniamnist, "train", folder, limit=40)
    return folder / "images"


def sandbox(unit: dict[str, list[str]], output_root: Path, input_folder: Path, filters: list[int]) -> list[str]:
    """The bubblewrap command line that rebuilds the unit's sandbox, the unit's paths mapped to the test's."""
    assert unit["ProtectSystem"] == ["strict"] and unit["PrivateTmp"] == ["yes"] and unit["ProtectHome"] == ["yes"]
    assert unit["PrivateDevices"] == ["yes"] and unit["NoNewPrivileges"] == ["yes"] and unit["CapabilityBoundingSet"] == [""]
    command = [tool("bwrap"), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]
    for home in ("/home", "/root", "/run/user"):
        if Path(home).is_dir():
            command += ["--tmpfs", home]
    # The unit's venv lives in /opt; this test's Python (pyenv), its venv and the checkout it is installed
    # from (editable) may live in a home folder or under /tmp (a CI clone): keep them visible, read-only.
    checkout = str(Path(__file__).resolve().parents[1])
    for prefix in sorted({sys.base_prefix, sys.prefix, checkout}):
        if prefix.startswith(("/home/", "/root/", "/tmp/", "/var/tmp/", "/run/user/")):
            command += ["--ro-bind", prefix, prefix]
    command += ["--bind", str(output_root), str(output_root), "--ro-bind", str(input_folder), str(input_folder)]
    command += ["--cap-drop", "ALL", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
    for descriptor in filters:  # open BPF files, one seccomp filter each
        command += ["--add-seccomp-fd", str(descriptor)]
    return command


#: Three things the unit forbids, each tried: a writable and executable mapping, a netlink socket, chroot.
FILTER_PROBE = """
import mmap, os, socket
for attempt in (lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC),
                lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW),
                lambda: os.chroot("/")):
    try:
        attempt()
        print("allowed")
    except OSError:
        print("refused")
"""


@pytest.mark.slow
def test_nightly_job_runs_in_the_units_sandbox(incoming, shipped_default_model, tmp_path):
    unit = directives(SERVICE)
    assert unit["MemoryDenyWriteExecute"] == ["yes"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]  # what sandbox_seccomp.py encodes
    assert unit["SystemCallErrorNumber"] == ["EPERM"]
    filters = tmp_path / "filters"
    if not Path(SYSTEM_PYTHON).is_file():
        pytest.fail(MISSING)
    subprocess.run([SYSTEM_PYTHON, str(SECCOMP_SCRIPT), str(filters), *unit["SystemCallFilter"]], check=True, timeout=120)
    output_root = tmp_path / "pneumo-batch"
    output_root.mkdir(mode=0o750)
    before = {p: p.stat().st_mtime_ns for p in incoming.parent.rglob("*")}
    bpf_files = sorted(filters.glob("*.bpf"))
    assert [p.name for p in bpf_files] == ["families.bpf", "mdwe.bpf", "syscalls.bpf"]
    handles = [open(p, "rb") for p in bpf_files]  # noqa: SIM115 - closed below, after the sandbox has read them
    try:
        descriptors = [handle.fileno() for handle in handles]

        def in_sandbox(*argv: str) -> subprocess.CompletedProcess[str]:
            for descriptor in descriptors:  # bubblewrap reads each filter from where the last run left it
                os.lseek(descriptor, 0, os.SEEK_SET)
            return subprocess.run(
                [*sandbox(unit, output_root, incoming.parent, descriptors), *argv],
                capture_output=True, text=True, timeout=600, umask=int(unit["UMask"][0], 8), pass_fds=descriptors,
            )

        probe = in_sandbox("sh", "-c", f"touch {incoming}/written-by-the-job; echo $?; umask")
        filtered = in_sandbox(sys.executable, "-c", FILTER_PROBE)
        result = in_sandbox(str(Path(sys.executable).with_name("pneumo-batch")), "nightly", "--input", str(incoming),
                            "--output-root", str(output_root), "--date", DATE, "--workers", "2", "--verbose")
    finally:
        for handle in handles:
            handle.close()
    assert probe.stdout.split() == ["1", "0027"], probe.stdout + probe.stderr  # the input is read-only in there
    assert "Read-only file system" in probe.stderr
    assert filtered.stdout.split() == ["refused"] * 3, filtered.stdout + filtered.stderr  # the filters are in force
    assert result.returncode == 0, result.stdout + result.stderr  # the real model scored all 40 films
    assert "40 rows, 0 errors" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in incoming.parent.rglob("*")} == before
    public = {output_root / "metrics", output_root / "metrics" / METRICS_FILE}
    for entry in output_root.rglob("*"):
        mode = stat.S_IMODE(entry.stat().st_mode)
        expected = (0o755 if entry.is_dir() else 0o644) if entry in public else (0o750 if entry.is_dir() else 0o640)
        assert mode == expected, (entry, oct(mode))
    assert (output_root / "predictions" / f"date={DATE}" / "predictions.parquet").is_file()
