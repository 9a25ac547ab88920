"""The domain errors of pneumo-batch.

Library code raises these; the CLI maps them to messages and exit codes.
Every message is one line that names what is wrong and, where it helps,
what to do about it.
"""


class PneumoBatchError(Exception):
    """Base class of every error pneumo-batch raises on purpose."""


class DatasetError(PneumoBatchError):
    """A PneumoniaMNIST file is missing, malformed or fails its checksum."""


class ModelError(PneumoBatchError):
    """A model directory is missing, incomplete or inconsistent with its metadata."""


class InputError(PneumoBatchError):
    """The batch input as a whole is unusable (missing, unreadable, wrong columns)."""


class ImageError(PneumoBatchError):
    """One image cannot be scored; it becomes an error row, never a crash."""


class PreprocessingError(PneumoBatchError):
    """Pixels handed to the model do not meet its input contract."""


class MissingDependencyError(PneumoBatchError):
    """An optional dependency is needed for this feature and is not installed."""


class JobLockedError(PneumoBatchError):
    """Another run holds the lock on this output root."""


def require(module: str, extra: str) -> None:
    """Raise :class:`MissingDependencyError` naming the extra that provides ``module``."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(
            f"{module} is not installed; install it with: pip install 'pneumo-batch[{extra}]'"
        )


def one_line(error: BaseException) -> str:
    """An exception's message on one line of at most 300 characters (its type name when it has none)."""
    return (" ".join(str(error).split()) or type(error).__name__)[:300]
