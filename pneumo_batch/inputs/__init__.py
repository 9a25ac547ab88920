"""Finding the rows of a batch (a folder walk or a Parquet manifest) and reading each row's bytes.

:mod:`~pneumo_batch.inputs.source` turns ``INPUT`` into ordered chunks of
rows; :mod:`~pneumo_batch.inputs.files` confines a row's path to ``--root``
and reads its file. Decoding the bytes is :mod:`pneumo_batch.imaging`'s job.
"""

from pneumo_batch.inputs.files import MAX_FILE_BYTES, read_file, resolve_path
from pneumo_batch.inputs.source import (
    ID_COLUMN,
    IMAGE_COLUMN,
    IMAGE_SUFFIXES,
    PATH_COLUMN,
    InputSource,
    chunk_digest,
    iter_image_files,
    open_input,
)

__all__ = [
    "ID_COLUMN",
    "IMAGE_COLUMN",
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "PATH_COLUMN",
    "InputSource",
    "chunk_digest",
    "iter_image_files",
    "open_input",
    "read_file",
    "resolve_path",
]
