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


class Interrupted(BaseException):
    """The run was stopped by SIGINT or SIGTERM; finished work is kept for the rerun.

    A :class:`BaseException`, like :class:`KeyboardInterrupt`, so that no
    ``except Exception`` (say, around one bad row) swallows it. The CLI
    raises it from its signal handler; an engine fills in how far it got.
    """

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number
        self.rows_done: int | None = None
        self.rows_total: int | None = None

    def __str__(self) -> str:
        if self.rows_done is None or self.rows_total is None:
            return "interrupted; run the same command again"
        return f"interrupted after {self.rows_done} of {self.rows_total} rows; run the same command again to resume"


class StepFailedError(PneumoBatchError):
    """A step after scoring failed (sending reports, monitoring); the night's predictions stay published.

    Its exit code is its cause's (a PACS that is down: 6; anything else: 1).
    The message names the step and the cause, never an unexpected
    exception's text (it may quote a header value), and says that a rerun
    finishes what is missing.
    """

    def __init__(self, step: str, cause: BaseException, published: str) -> None:
        reason = one_line(cause) if isinstance(cause, PneumoBatchError) else f"unexpected {type(cause).__name__}"
        super().__init__(
            f"{step} failed: {reason}; the predictions are published ({published}); "
            "run the same command again to finish what is missing"
        )
        self.step = step
        self.cause = cause


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


class PacsError(PneumoBatchError):
    """The PACS link failed (issue 17); messages name the PACS base URL, never a credential."""


class PacsConfigError(PacsError):
    """A PACS URL, study date or credentials source is malformed or unsafe (exit code 2)."""


class PacsUnavailableError(PacsError):
    """The PACS cannot be reached (connection refused, timeouts, 5xx) after the retries (exit code 6).

    Raised before anything is written when the PACS is down at the start; mid-run,
    what was finished stays in the work folder and a rerun resumes from it.
    """


class PacsAuthError(PacsError):
    """The PACS refused our credentials (HTTP 401 or 403) (exit code 2)."""


class ReportError(PacsError):
    """One film's screening report cannot be built; its row says why (a keyword and VR, never a value)."""


class PacsStoreError(PacsError):
    """The PACS did not accept a STOW-RS store of our reports (exit code 1)."""
