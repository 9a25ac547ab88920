"""The one place that writes files: every file appears whole or not at all.

Each writer builds the file under a temporary name in the target's own folder
(so the final rename never crosses a filesystem), flushes it to disk with
``fsync``, then moves it over the target with :func:`os.replace`, which is
atomic on POSIX and Windows. A reader, or a run that dies half-way, therefore
sees the old file or the new one, never a torn one; a failed write leaves no
temporary file behind. :func:`replace_folder` does the same for a folder
built beside its target.

Everything written here is private: files ``0640`` and folders ``0750``
(:data:`FILE_MODE`, :data:`FOLDER_MODE`), whatever the process's umask, set
explicitly on each new file and folder before it gets its final name.
Predictions carry SOP Instance UIDs, ages and sexes; like PostgreSQL with its
data directory, we keep them from other accounts on the machine. Who besides
the owner may read them is a group's decision: inside :func:`readable_by`
every new file and folder is given that group (``chgrp``), so the data team
reads reports without any account gaining write access. The Prometheus
textfile is the one exception (:data:`PUBLIC_FILE_MODE`), written
world-readable for node_exporter; it holds counts, nothing about a patient.

Existing outputs are never re-moded: :func:`wider_than_private` lists
those that others may read (or the group write), for the one-line warning
the commands show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


#: Mode of every file written here: the owner reads and writes, the group reads, others nothing.
FILE_MODE = 0o640
#: Mode of every folder made here: the owner may add files, the group may list and enter, others nothing.
FOLDER_MODE = 0o750
#: The documented exception: the Prometheus textfile, which node_exporter (another account) reads.
PUBLIC_FILE_MODE = 0o644

_reader_group: int | None = None


@contextlib.contextmanager
def readable_by(group: str | int | None) -> Iterator[None]:
    """Give every file and folder made in the block to ``group`` (a name or gid), which may then read them.

    ``None`` changes nothing: new outputs keep the process's group. Raises
    :class:`~pneumo_batch.errors.InputError` for a group this system does not
    know. Applies to this process (worker processes write only temporary parts).
    """
    global _reader_group
    gid = None if group is None else group_id(group)
    if gid is not None and os.geteuid() != 0 and gid not in (os.getegid(), *os.getgroups()):
        from pneumo_batch.errors import InputError

        raise InputError(f"this account is not in group {group!r}, so it cannot give files to it (see id -Gn)")
    previous, _reader_group = _reader_group, gid
    try:
        yield
    finally:
        _reader_group = previous


def group_id(group: str | int) -> int:
    """The gid of ``group`` (a name or a number); :class:`InputError` when there is no such group."""
    import grp

    from pneumo_batch.errors import InputError

    try:
        return grp.getgrgid(int(group)).gr_gid if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise InputError(f"no group {group!r} on this system (see getent group)") from None


def make_private(path: str | Path, mode: int | None = None) -> None:
    """Set a file or folder this run just created to ``mode`` (default: private) and to the reader group."""
    target = Path(path)
    is_folder = target.is_dir()
    if mode is None:
        mode = FOLDER_MODE if is_folder else FILE_MODE
    if _reader_group is not None:
        os.chown(target, -1, _reader_group)
    # chmod after chown: a chown may clear the setgid bit, which a folder keeps so that its new entries share its group
    os.chmod(target, mode | (target.stat().st_mode & stat.S_ISGID if is_folder else 0))


def make_folder(path: str | Path) -> Path:
    """``path`` as a folder, made with its missing parents; each folder made here is private (existing ones keep their mode)."""
    folder = Path(path)
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for level in reversed(missing):
        try:
            level.mkdir()
        except FileExistsError:  # made meanwhile by another process: its mode is its maker's business
            continue
        make_private(level)
    return Path(path)


def create_file(path: str | Path) -> Path:
    """Create ``path`` empty and private if it does not exist (for a file another library writes in place)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        return Path(path)
    make_private(path)
    return Path(path)


@contextlib.contextmanager
def private_new_entries(folder: str | Path) -> Iterator[None]:
    """Make private every file and folder that appears under ``folder`` during the block.

    For a tree another library writes itself (the Evidently workspace): what
    it adds (or replaces by a rename) gets the private modes and the reader
    group; what was there before, or was rewritten in place, is left alone.
    """
    root = Path(folder)
    before = _inodes(root)
    try:
        yield
    finally:
        for entry, inode in _inodes(root).items():
            if before.get(entry) != inode:  # new, or replaced by a rename: written in the block
                with contextlib.suppress(FileNotFoundError):
                    make_private(entry)


def _inodes(root: Path) -> dict[Path, int]:
    found = {}
    for entry in _walk(root):
        with contextlib.suppress(FileNotFoundError):
            found[entry] = entry.lstat().st_ino
    return found


def wider_than_private(folder: str | Path, *, public: Iterable[str | Path] = ()) -> list[tuple[Path, int]]:
    """Files and folders under ``folder`` (itself included) that others may use, or the group write: (path, mode).

    ``public`` lists files allowed to be world-readable (the Prometheus
    textfile). Nothing is changed: the caller reports what it finds.
    """
    allowed = {Path(p) for p in public}
    found = []
    root = Path(folder)
    for entry in [root, *_walk(root)] if root.is_dir() else []:
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            continue
        wide = stat.S_IRWXO | stat.S_IWGRP
        if entry in allowed:
            wide = stat.S_IWOTH | stat.S_IWGRP
        if mode & wide:
            found.append((entry, stat.S_IMODE(mode)))
    return found


def _walk(root: Path) -> Iterator[Path]:
    for folder, folders, files in os.walk(root):
        for name in [*folders, *files]:
            yield Path(folder) / name


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mode: int = FILE_MODE) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, it becomes ``path``.

    The caller writes (and closes) the file at the yielded path; this then
    gives it ``mode`` (default private) and the reader group, syncs it and
    renames it into place. On an error the temporary file is removed.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        make_private(temporary, mode)
        sync_file(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    sync_folder(target.parent)


def write_bytes(path: str | Path, content: bytes, *, mode: int = FILE_MODE) -> Path:
    with atomic_path(path, mode=mode) as temporary:
        temporary.write_bytes(content)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """``text`` as UTF-8, byte for byte (no newline translation)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(
    path: str | Path,
    value: Any,
    *,
    default: Callable[[Any], Any] | None = None,
    allow_nan: bool = True,
) -> Path:
    """``value`` as indented JSON with a final newline (``allow_nan=False`` refuses NaN and infinities)."""
    return write_text(path, json.dumps(value, indent=2, default=default, allow_nan=allow_nan) + "\n")


def write_parquet(path: str | Path, table: pa.Table) -> Path:
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return Path(path)


def write_arrow(path: str | Path, table: pa.Table) -> Path:
    """``table`` as an Arrow IPC file (fast to memory-map back)."""
    with atomic_path(path) as temporary:
        with pa.ipc.new_file(str(temporary), table.schema) as writer:
            writer.write_table(table)
    return Path(path)


def replace_folder(new: Path, target: Path) -> None:
    """Swap the finished folder ``new`` (beside ``target``) in for ``target``.

    An earlier ``target`` is first renamed to ``.NAME.old-XXXXXXXX`` and
    deleted afterwards. If the process dies between the two renames,
    ``target`` is missing until the next run, but readers never see a
    half-written or doubled folder.
    """
    make_folder(target.parent)
    retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.replace(target, retired)
    os.replace(new, target)
    sync_folder(target.parent)
    shutil.rmtree(retired, ignore_errors=True)


def copy_folder(source: Path, target: Path, *, ignore: Callable[[str, list[str]], Any] | None = None) -> None:
    """A copy of the folder ``source`` at the new path ``target`` (build it under a staging name, then
    :func:`replace_folder` it into place)."""
    shutil.copytree(source, target, ignore=ignore)
    sync_folder(target)


def check_writable(folder: str | Path) -> None:
    """Raise :class:`OSError` unless a file can be created in ``folder`` (tried, then removed).

    Permission bits alone do not tell: root ignores them, a read-only mount
    or ``/proc`` refuses anyway.
    """
    probe = Path(folder) / f".pneumo-batch-probe-{uuid.uuid4().hex[:12]}"
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    probe.unlink()


#: Fault-injection seam for the reliability tests: when set, called with each
#: file about to be flushed to disk (every file this module writes, and the
#: output a scoring run builds), so a test can raise, say, ``ENOSPC`` there.
fault_injector: Callable[[Path], None] | None = None


def sync_file(path: str | Path) -> None:
    """Flush a closed file's content to disk."""
    if fault_injector is not None:
        fault_injector(Path(path))
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sync_folder(path: str | Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder: its renames are durable without this
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
