"""Outputs are private (files 0640, folders 0750) whatever the umask; --group names who else may read them.

The commands run under umask 022, the usual default that made every output
world-readable before; the output trees are then walked and every mode checked.
"""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pneumo_batch import storage
from pneumo_batch.cli.app import app
from pneumo_batch.errors import InputError
from pneumo_batch.export import export_split
from pneumo_batch.prometheus import METRICS_FILE

DATE = "2026-11-20"


@pytest.fixture()
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture(scope="module")
def images(pneumoniamnist, tmp_path_factory) -> Path:
    """24 real training images (PNG) and one broken file."""
    folder = tmp_path_factory.mktemp("incoming")
    export_split(pneumoniamnist, "train", folder, limit=24)
    (folder / "images" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder / "images"


def modes(root: Path) -> dict[str, int]:
    """Every file and folder under ``root`` (itself included), relative path -> permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for entry in root.rglob("*"):
        found[entry.relative_to(root).as_posix()] = stat.S_IMODE(entry.lstat().st_mode)
    return found


def assert_private(root: Path, *, public: tuple[str, ...] = ()) -> None:
    """Files 0640 and folders 0750 under ``root``; the ``public`` entries 0644 (files) or 0755 (folders)."""
    found = modes(root)
    assert len(found) > 1, f"nothing written under {root}"
    wrong = {}
    for name, mode in found.items():
        folder = (root / name).is_dir()
        expected = (0o755 if folder else 0o644) if name in public else (0o750 if folder else 0o640)
        if mode & ~stat.S_ISGID != expected:
            wrong[name] = oct(mode)
    assert not wrong, f"modes other than 0640/0750 under {root}: {wrong}"


def other_group() -> grp.struct_group:
    """A group this account may give files to: not its own one where it can (root: any group)."""
    candidates = [g.gr_gid for g in grp.getgrall()] if os.geteuid() == 0 else os.getgroups()
    others = [gid for gid in candidates if gid != os.getegid()]
    return grp.getgrgid(others[0] if others else os.getegid())


def run(*args: str) -> "CliRunner.Result":
    return CliRunner().invoke(app, list(args))


def test_score_nightly_and_monitor_leave_nothing_others_can_read(images, shipped_default_model, tmp_path, umask_022):
    scored = tmp_path / "scored" / "new" / "predictions.parquet"
    result = run("score", str(images), "--out", str(scored), "--workers", "1")
    assert result.exit_code == 3, result.output  # the broken image: an error row, the output still complete
    assert_private(tmp_path / "scored")

    monitored = run("monitor", str(scored), "--out", str(tmp_path / "monitor" / "report"),
                    "--workspace", str(tmp_path / "monitor" / "workspace"))
    assert monitored.exit_code == 0, monitored.output
    assert (tmp_path / "monitor" / "workspace").is_dir()
    assert_private(tmp_path / "monitor")

    root = tmp_path / "nightly"
    result = run("nightly", "--input", str(images), "--output-root", str(root), "--date", DATE, "--workers", "1")
    assert result.exit_code == 3, result.output
    assert {"predictions", "reports", "workspace", "logs", "metrics"} <= {p.name for p in root.iterdir()}
    assert_private(root, public=("metrics", f"metrics/{METRICS_FILE}"))
    assert "Warning" not in result.output


def test_a_group_reads_new_outputs_and_older_wide_ones_are_reported_once_and_left_alone(
        images, shipped_default_model, tmp_path, umask_022):
    readers = other_group()
    root = tmp_path / "nightly"
    old = root / "predictions" / "date=2026-01-01" / "predictions.parquet"
    old.parent.mkdir(parents=True)  # under umask 022: the root and both folders 0755
    old.write_bytes(b"an earlier run's file")
    old.chmod(0o644)
    result = run("nightly", "--input", str(images), "--output-root", str(root), "--date", DATE, "--workers", "1",
                 "--group", readers.gr_name)
    assert result.exit_code == 3, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1, result.output
    assert "4 existing output(s)" in warnings[0], warnings  # the file, its two folders and the root
    earlier = {old, old.parent, old.parent.parent, root}
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in earlier} == {
        old: 0o644, old.parent: 0o755, old.parent.parent: 0o755, root: 0o755}
    assert {p.stat().st_gid for p in earlier} == {os.getegid()}
    new = {entry for entry in root.rglob("*") if entry not in earlier}
    assert {entry.relative_to(root).parts[0] for entry in new} == {"predictions", "reports", "workspace", "logs", "metrics"}
    assert {entry.stat().st_gid for entry in new} == {readers.gr_gid}
    public = {root / "metrics", root / "metrics" / METRICS_FILE}
    for entry in new:
        expected = (0o755 if entry.is_dir() else 0o644) if entry in public else (0o750 if entry.is_dir() else 0o640)
        assert stat.S_IMODE(entry.stat().st_mode) & ~stat.S_ISGID == expected, entry


def test_an_unknown_group_is_refused_before_any_work(images, tmp_path):
    result = run("nightly", "--input", str(images), "--output-root", str(tmp_path / "out"), "--group", "no-such-group-26")
    assert result.exit_code == 2
    assert "no group 'no-such-group-26'" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_storage_sets_private_modes_whatever_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        folder = storage.make_folder(tmp_path / "a" / "b")
        storage.write_text(folder / "x.txt", "x")
        storage.create_file(folder / "y.log")
        storage.write_bytes(folder / "z.prom", b"z 1\n", mode=storage.PUBLIC_FILE_MODE)
    finally:
        os.umask(previous)
    assert modes(tmp_path / "a") == {".": 0o750, "b": 0o750, "b/x.txt": 0o640, "b/y.log": 0o640, "b/z.prom": 0o644}


def test_storage_leaves_existing_folders_and_files_as_they_are(tmp_path, umask_022):
    tmp_path.chmod(0o755)
    (tmp_path / "old.log").write_text("kept")
    (tmp_path / "old.log").chmod(0o666)
    storage.make_folder(tmp_path)
    storage.create_file(tmp_path / "old.log")
    assert (stat.S_IMODE(tmp_path.stat().st_mode), stat.S_IMODE((tmp_path / "old.log").stat().st_mode)) == (0o755, 0o666)
    assert storage.wider_than_private(tmp_path) == [(tmp_path, 0o755), (tmp_path / "old.log", 0o666)]


def test_files_another_library_writes_become_private_but_earlier_ones_do_not(tmp_path, umask_022):
    (tmp_path / "earlier.json").write_text("{}")
    (tmp_path / "replaced.json").write_text("{}")
    with storage.private_new_entries(tmp_path):
        (tmp_path / "new" / "deeper").mkdir(parents=True)
        (tmp_path / "new" / "deeper" / "snapshot.json").write_text("{}")
        (tmp_path / "earlier.json").write_text('{"rewritten": "in place"}')
        (tmp_path / "new" / "replacement.json").write_text("{}")
        (tmp_path / "new" / "replacement.json").replace(tmp_path / "replaced.json")
    found = modes(tmp_path)
    assert found == {".": found["."], "earlier.json": 0o644, "replaced.json": 0o640, "new": 0o750, "new/deeper": 0o750,
                     "new/deeper/snapshot.json": 0o640}


def test_readable_by_refuses_an_unknown_group():
    with pytest.raises(InputError, match="no group"), storage.readable_by("no-such-group-26"):
        pass
