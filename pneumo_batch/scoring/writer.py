"""Writing predictions: one Parquet file (local engine) or a folder of Parquet part files (Ray engine).

Both take finished chunk tables in input order and write them in row groups
of :data:`~pneumo_batch.scoring.types.ROW_GROUP_ROWS` rows. Neither writes
in place: the caller gives a path inside its work or staging folder and
moves the result into place when it is complete.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pneumo_batch import predictions as columns
from pneumo_batch import storage
from pneumo_batch.errors import InputError
from pneumo_batch.inputs import InputSource
from pneumo_batch.scoring.types import ROW_GROUP_ROWS


class OutputWriter:
    """Appends chunk tables to the output under construction, in row groups of :data:`ROW_GROUP_ROWS`."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._path = path
        self._schema = schema
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer = pq.ParquetWriter(storage.create_file(path), schema)

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self._flush()
            self._writer.close()
            storage.sync_file(self._path)
        else:
            self._writer.close()

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table.replace_schema_metadata(self._schema.metadata))
        self._buffered += table.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=ROW_GROUP_ROWS)
            self._buffer, self._buffered = [], 0



#: Rows per part file of the Ray engine's output folder.
PART_ROWS = 4 * ROW_GROUP_ROWS


class PartWriter:
    """Writes tables in order into ``part-NNNNNNNN.parquet`` files of up to :data:`PART_ROWS` rows."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self._folder = folder
        self._schema = schema
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_part = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.parts = 0

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self._flush()
            if self.parts == 0:  # an empty input still leaves one (empty) part, so readers see the schema
                self._open_part()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write(self, table: pa.Table) -> None:
        if table.schema != self._schema:
            table = table.select(self._schema.names).cast(self._schema)
        while table.num_rows:
            room = min(ROW_GROUP_ROWS, PART_ROWS - self._rows_in_part) - self._buffered
            taken, table = table.slice(0, room), table.slice(room)
            self._buffer.append(taken)
            self._buffered += taken.num_rows
            if taken.num_rows == room:  # a full row group, or the part's last rows
                self._flush()

    def _flush(self) -> None:
        """Write the buffer as one row group; close the part when it is full."""
        if not self._buffered:
            return
        if self._writer is None:
            self._open_part()
        assert self._writer is not None
        self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=ROW_GROUP_ROWS)
        self._rows_in_part += self._buffered
        self._buffer, self._buffered = [], 0
        if self._rows_in_part >= PART_ROWS:
            self._writer.close()
            self._writer, self._rows_in_part = None, 0

    def _open_part(self) -> None:
        part = storage.create_file(self._folder / f"part-{self.parts:08d}.parquet")
        self._writer = pq.ParquetWriter(part, self._schema)
        self.parts += 1


def read_predictions_folder(path: str | Path) -> pa.Table:
    """A Ray engine's output folder as one table, in input order (parts in name order)."""
    files = sorted(Path(path).glob("part-*.parquet"))
    if not files:
        raise InputError(f"no part-*.parquet files in {path}")
    return pa.concat_tables([pq.read_table(file) for file in files])


def check_out_file(out: str | Path, source: InputSource, *, overwrite: bool = False) -> Path:
    """``out`` as an absolute file path in a folder we may write, created if missing.

    Refused with :class:`InputError`: a folder or anything but a regular
    file, the input manifest itself, and an existing file that is not a
    pneumo-batch predictions file (unless ``overwrite``).
    """
    path = Path(out).expanduser().absolute()
    if path.is_dir():
        raise InputError(f"--out is a directory; give a file name: {path}")
    if path.exists() and not path.is_file():
        raise InputError(f"--out exists and is not a regular file: {path}")
    if path.exists() and source.kind == "manifest" and path.samefile(source.location):
        raise InputError(f"--out would overwrite the input manifest: {path}")
    if path.exists() and not overwrite and not _is_predictions_file(path):
        raise InputError(f"--out exists and is not a pneumo-batch predictions file; pass --overwrite to replace it: {path}")
    return _with_parent(path)


def _is_predictions_file(path: Path) -> bool:
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return columns.PARQUET_METADATA_KEY in metadata


def check_out_folder(out: str | Path, source: InputSource) -> Path:
    """``out`` as an absolute folder path: new, empty, or an earlier run's output (only part files)."""
    path = Path(out).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise InputError(f"--out exists and is not a folder; the Ray engine writes a folder of part files: {path}")
    if path.is_dir():
        strangers = [entry.name for entry in path.iterdir() if not (entry.name.startswith("part-") and entry.suffix == ".parquet")]
        if strangers:
            raise InputError(
                f"--out folder holds files that are not an earlier run's part files ({', '.join(sorted(strangers)[:3])}); "
                f"give a new or empty folder: {path}"
            )
        if source.kind == "manifest" and source.location.parent == path:
            raise InputError(f"--out would overwrite the folder of the input manifest: {path}")
    return _with_parent(path)


def _with_parent(path: Path) -> Path:
    """``path``, once its folder exists and accepts a new file (a read-only or pseudo filesystem does not)."""
    try:
        storage.make_folder(path.parent)
    except OSError as error:
        raise InputError(f"cannot create the folder of --out: {error.strerror or error}: {path.parent}") from None
    try:
        storage.check_writable(path.parent)
    except OSError as error:
        raise InputError(f"cannot write in the folder of --out: {error.strerror or error}: {path.parent}") from None
    return path
