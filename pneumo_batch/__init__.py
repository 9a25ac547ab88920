"""pneumo-batch: nightly batch screening of pediatric chest X-rays for pneumonia.

The library is typed and silent: functions raise :class:`PneumoBatchError`
subclasses and never print or exit. The ``pneumo-batch`` CLI turns those
errors into one-line messages and exit codes.
"""

from importlib.metadata import PackageNotFoundError, version

from pneumo_batch.errors import PneumoBatchError

try:
    __version__ = version("pneumo-batch")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["PneumoBatchError", "__version__"]
