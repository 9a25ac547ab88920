"""Reading one row's bytes: a path confined to ``--root``, then the file, refused when it is not a plain file.

:func:`resolve_path` applies ``--root``: a path whose real location (after
``..`` and every symlink) is outside the root raises :class:`ImageError`, so
it becomes an error row and is never read. :func:`read_file` reads the file
or raises :class:`ImageError` naming why not.
"""

from __future__ import annotations

import os
import stat

from pneumo_batch.errors import ImageError, one_line

#: Files larger than this are refused before being read (no X-ray is near it).
MAX_FILE_BYTES = 1 << 30
#: What stands for the bytes of a file name that are not UTF-8 (see :mod:`~pneumo_batch.inputs.source`).
_UNDECODED = "\ufffd"



def resolve_path(value: str, base_dir: str, root: str | None) -> str:
    """The file to read for a row's ``path``: ``value`` joined to ``base_dir``, confined to ``root``.

    ``root`` must already be a real path (:func:`os.path.realpath`). With a
    root, the returned path is the real one that was checked, so a symlink
    swapped in after the check still cannot lead outside. Raises
    :class:`ImageError` for an empty path or one whose real location is
    outside ``root``.
    """
    if not value:
        raise ImageError("empty path")
    joined = os.path.join(base_dir, value)
    if root is None:
        return joined
    real = os.path.realpath(joined)
    if not _is_within(real, root):
        raise ImageError("path is outside --root")
    return real


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)



def read_file(path: str) -> bytes:
    """A file's bytes, or :class:`ImageError` naming why not (same wording as :func:`~pneumo_batch.imaging.raster.decode_image`)."""
    try:
        # O_NONBLOCK: a FIFO in a manifest must not hang the worker (no effect on regular files).
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageError("file name is not valid UTF-8" if _UNDECODED in path else "file not found") from None
    except IsADirectoryError:
        raise ImageError("is a directory, not an image file") from None
    except OSError as error:
        raise ImageError(f"cannot open file: {error.strerror or one_line(error)}") from None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise ImageError("is a directory, not an image file")
        if not stat.S_ISREG(status.st_mode):
            raise ImageError("not a regular file")
        if status.st_size > MAX_FILE_BYTES:
            raise ImageError(f"file too large: {status.st_size:,} bytes, over the limit of {MAX_FILE_BYTES:,}")
        # One read of the size fstat gave (plus one byte, to notice a file that grew meanwhile).
        data = os.read(descriptor, status.st_size + 1)
        if len(data) > status.st_size:
            rest = [data]
            while block := os.read(descriptor, 1 << 20):
                rest.append(block)
            data = b"".join(rest)
    except OSError as error:
        raise ImageError(f"cannot read file: {error.strerror or one_line(error)}") from None
    finally:
        os.close(descriptor)
    if not data:
        raise ImageError("empty file")
    return data
