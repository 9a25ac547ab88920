"""Native libraries that write to file descriptor 2 themselves, and the one way we silence them.

Two C++ runtimes print a notice on every run that no one can act on, and
under cron (``MAILTO``) any byte on stderr mails the data team:

- LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
  when it allocates tensors, in every process that builds a scorer;
- Ray's core worker prints, for every actor Ray Data starts, that the
  actor's constructor arguments are in the object store
  (ray-project/ray#53727: Ray Data always passes them that way).

Redirecting ``sys.stderr`` cannot catch a native write, so
:func:`discarded` points the descriptor itself at ``/dev/null``, for one
call only: real errors elsewhere still reach stderr, and errors inside the
call still come back as exceptions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def discarded() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration of the block, then restore it."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
