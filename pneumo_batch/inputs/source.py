"""Finding the rows of a batch: a directory of image files or a Parquet manifest.

:func:`open_input` turns the command's ``INPUT`` into an :class:`InputSource`
whose :meth:`~InputSource.chunks` streams the rows in a fixed order as Arrow
tables of exactly ``size`` rows (the last one shorter), so that a chunk's
number always names the same rows from one run to the next. Every chunk has

- ``image_id`` (string, null where the manifest has none),
- ``path`` (string: relative to :attr:`InputSource.base_dir` or absolute;
  null where the manifest has none) or ``image`` (binary: the encoded file),
- the manifest's other columns, passed through unchanged.

A directory is scanned recursively for image files, in sorted order: by
suffix (Pillow's raster formats, ``.dcm``, ``.dicom``, in any case), and
any other file that reads as DICOM (the ``DICM`` magic at byte 128, or a
data set without the Part-10 preamble), since PACS exports often name files
by UID or not at all. Hidden files, symlinked directories and ``DICOMDIR``
(an export's index, not an image) are skipped; broken symlinks with an image
suffix are kept so that they become error rows. The scan finds rows, it
does not judge them: a ``.dcm`` that is not DICOM becomes an error row.
Each row's id is its path relative to the scanned directory. A manifest is streamed with
:meth:`pyarrow.parquet.ParquetFile.iter_batches`, so its size does not bound
memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch.errors import InputError, one_line
from pneumo_batch.imaging.dicom import DICOM_SUFFIXES, looks_like_dicom, looks_like_headerless_dicom

if TYPE_CHECKING:
    from pneumo_batch.inputs.pacs import PacsFetcher, PacsOptions, PacsRows

PATH_COLUMN = "path"
IMAGE_COLUMN = "image"
ID_COLUMN = "image_id"

#: Files a directory scan picks up by name alone (compared in lower case); others are sniffed for DICOM.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
) | DICOM_SUFFIXES
#: A DICOM export's directory file: it lists the images and holds none.
DICOMDIR = "DICOMDIR"

InputKind = Literal["directory", "manifest", "pacs"]


@dataclass(frozen=True)
class InputSource:
    """Where the rows of a batch come from, and how to read them in order."""

    kind: InputKind
    location: Path | str
    """The directory or manifest file, absolute; or a PACS's DICOMweb base URL."""
    base_dir: Path
    """What relative paths are relative to: the scanned directory, or the manifest's folder."""
    source_column: Literal["path", "image"]
    """The column that holds each row's image: a path, or the encoded bytes."""
    num_rows: int
    passthrough: pa.Schema = field(default_factory=lambda: pa.schema([]))
    """The manifest's other columns, carried to the output unchanged."""
    pacs: PacsRows | None = None
    """The instances a PACS query found (kind ``pacs``); their bytes are fetched per chunk."""

    @property
    def fetcher(self) -> PacsFetcher | None:
        """Fetches a chunk's ``image`` bytes where they are not in the chunk (PACS input), else None."""
        from pneumo_batch.inputs.pacs import PacsFetcher

        return None if self.pacs is None else PacsFetcher(self.pacs.source)

    def chunks(self, size: int) -> Iterator[pa.Table]:
        """Stream the rows as tables of exactly ``size`` rows (the last one may be shorter)."""
        if size < 1:
            raise ValueError(f"chunk size must be at least 1, got {size}")
        if self.pacs is not None:
            yield from self.pacs.chunks(size)
        elif self.kind == "directory":
            yield from _directory_chunks(Path(self.location), size)
        else:
            yield from _manifest_chunks(self, size)

    def identity(self) -> dict[str, object]:
        """What identifies this input for resuming: a changed manifest file starts over."""
        if self.pacs is not None:
            return self.pacs.identity()
        identity: dict[str, object] = {"kind": self.kind, "location": str(self.location), "rows": self.num_rows}
        if self.kind == "manifest":
            stat = Path(self.location).stat()
            identity.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        return identity


def open_input(path: str | Path, pacs: PacsOptions | None = None) -> InputSource:
    """Open a directory, a Parquet manifest or a PACS (``dicomweb+http(s)://...``, with ``pacs``).

    Raises :class:`InputError` if it is unusable as a whole; a PACS raises
    :class:`~pneumo_batch.errors.PacsUnavailableError` or
    :class:`~pneumo_batch.errors.PacsAuthError` before anything is written.
    """
    from pneumo_batch.pacs.location import is_pacs_url

    if isinstance(path, str) and is_pacs_url(path):
        return _open_pacs(path, pacs)
    if pacs is not None:
        raise InputError("--study-date and the PACS options need a dicomweb+http(s):// INPUT")
    location = Path(path).expanduser().absolute()
    if location.is_dir():
        return InputSource(
            kind="directory",
            location=location,
            base_dir=location,
            source_column="path",
            num_rows=sum(1 for _ in iter_image_files(location)),
        )
    if not location.exists():
        raise InputError(f"input not found: {location}")
    return _open_manifest(location)


def _open_pacs(url: str, options: PacsOptions | None) -> InputSource:
    from pneumo_batch.inputs.pacs import open_pacs_input

    if options is None:
        raise InputError("a PACS input needs --study-date YYYYMMDD or YYYYMMDD-YYYYMMDD")
    rows = open_pacs_input(url, options)
    base = rows.source.location.base_url
    return InputSource(kind="pacs", location=base, base_dir=Path.cwd(), source_column="image",
                       num_rows=len(rows.refs), pacs=rows)


def iter_image_files(directory: Path) -> Iterator[str]:
    """Yield the image files under ``directory`` as sorted POSIX paths relative to it.

    Sorting is by name at every level, so the order is the same on every
    machine and run. Raises :class:`InputError` for a folder that cannot be
    listed: its files cannot become rows, so the run must not pretend they
    are not there.
    """
    yield from _walk(directory, "")


def _walk(directory: Path, prefix: str) -> Iterator[str]:
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        raise InputError(f"cannot list {directory}: {error.strerror or error}") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        relative = f"{prefix}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(Path(entry.path), f"{relative}/")
        elif _is_input_file(entry) and not _links_to_folder(entry):
            yield relative


def _is_input_file(entry: os.DirEntry[str]) -> bool:
    if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
        return True
    if entry.name.upper() == DICOMDIR:
        return False
    return looks_like_dicom(entry.path) or looks_like_headerless_dicom(entry.path)


def _links_to_folder(entry: os.DirEntry[str]) -> bool:
    """Whether a symlink leads to a folder; a loop or a dangling link is kept, to become an error row."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def chunk_digest(paths: list[str]) -> str:
    """A short digest of a chunk's paths, so that a changed directory never resumes onto other files."""
    return hashlib.blake2b("\0".join(paths).encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def _directory_chunks(directory: Path, size: int) -> Iterator[pa.Table]:
    batch: list[str] = []
    for relative in iter_image_files(directory):
        batch.append(relative)
        if len(batch) == size:
            yield _directory_table(batch)
            batch = []
    if batch:
        yield _directory_table(batch)


def _directory_table(paths: list[str]) -> pa.Table:
    # A name that is not UTF-8 (bytes the OS decodes as surrogates) cannot be
    # an Arrow string: it gets U+FFFD in their place, and its row the reason
    # "file name is not valid UTF-8" (see inputs.files.read_file).
    array = pa.array([path.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for path in paths], pa.string())
    return pa.table({ID_COLUMN: array, PATH_COLUMN: array})


def _open_manifest(location: Path) -> InputSource:
    try:
        parquet = pq.ParquetFile(location)
        schema = parquet.schema_arrow
        num_rows = parquet.metadata.num_rows
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"cannot read {location} as a Parquet manifest: {one_line(error)}") from None
    names = schema.names
    if len(set(names)) != len(names):
        raise InputError(f"{location}: manifest has duplicate column names")
    if IMAGE_COLUMN in names:
        source: Literal["path", "image"] = "image"
        if not _is_binary(schema.field(IMAGE_COLUMN).type):
            raise InputError(f"{location}: column {IMAGE_COLUMN!r} must hold bytes, not {schema.field(IMAGE_COLUMN).type}")
    elif PATH_COLUMN in names:
        source = "path"
    else:
        raise InputError(f"{location}: manifest needs a {PATH_COLUMN!r} or an {IMAGE_COLUMN!r} column (has: {', '.join(names)})")
    for column in (PATH_COLUMN, ID_COLUMN):
        if column in names and not _is_string_like(schema.field(column).type):
            raise InputError(f"{location}: column {column!r} must hold strings, not {schema.field(column).type}")
    reserved = {IMAGE_COLUMN, PATH_COLUMN, ID_COLUMN}
    passthrough = pa.schema([schema.field(name) for name in names if name not in reserved])
    return InputSource(
        kind="manifest",
        location=location,
        base_dir=location.parent,
        source_column=source,
        num_rows=num_rows,
        passthrough=passthrough,
    )


def _manifest_chunks(source: InputSource, size: int) -> Iterator[pa.Table]:
    parquet = pq.ParquetFile(source.location)
    names = parquet.schema_arrow.names
    columns = [name for name in (ID_COLUMN, PATH_COLUMN, IMAGE_COLUMN) if name in names] + source.passthrough.names
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        for batch in parquet.iter_batches(batch_size=size, columns=columns):
            pending.append(pa.Table.from_batches([batch]))
            pending_rows += batch.num_rows
            while pending_rows >= size:
                table = pa.concat_tables(pending)
                yield _normalise(table.slice(0, size))
                rest = table.slice(size)
                pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"cannot read {source.location} as a Parquet manifest: {one_line(error)}") from None
    if pending_rows:
        yield _normalise(pa.concat_tables(pending))


def _normalise(table: pa.Table) -> pa.Table:
    """One chunk, with ``image_id`` and ``path`` as plain strings and a copy of its own buffers."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if name in (ID_COLUMN, PATH_COLUMN) and column.type != pa.string():
            column = column.cast(pa.string())
        columns[name] = column.combine_chunks()
    if ID_COLUMN not in columns:
        columns = {ID_COLUMN: pa.nulls(table.num_rows, pa.string()), **columns}
    return pa.table(columns)


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)


def _is_string_like(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind) or pa.types.is_dictionary(kind)
