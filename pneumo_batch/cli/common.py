"""What every command shares: exit codes, signals, and turning any failure into one line on stderr.

A command runs its work inside :func:`domain_errors`. There SIGINT and
SIGTERM raise :class:`~pneumo_batch.errors.Interrupted` (the library stops
cleanly, keeping finished work, and says how far it got), and every error,
expected or not, ends as one line and an exit code. ``--debug`` or
``PNEUMO_BATCH_DEBUG=1`` adds the traceback, for a bug report.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path

import typer

from pneumo_batch.errors import (
    DatasetError,
    InputError,
    Interrupted,
    JobLockedError,
    MissingDependencyError,
    ModelError,
    PacsAuthError,
    PacsConfigError,
    PacsUnavailableError,
    PneumoBatchError,
    StepFailedError,
    one_line,
)
from pneumo_batch.interruptions import raising_on_signals

#: Set to 1 (or pass ``--debug``) to print the traceback of an error as well.
DEBUG_ENV = "PNEUMO_BATCH_DEBUG"


class ExitCode(IntEnum):
    """Exit codes of every ``pneumo-batch`` command (also listed in the README)."""

    OK = 0
    JOB_FAILED = 1
    """The job itself failed: an unexpected error, a full disk; nothing trustworthy was written."""
    USAGE = 2
    """Bad options or unusable input as a whole (missing input, bad manifest, bad model or data path, bad --out)."""
    ROWS_FAILED = 3
    """The output is complete but some rows are ``error`` rows."""
    ALERT = 4
    """Monitoring raised a drift or class-balance alert (``monitor --fail-on-drift``, ``nightly``)."""
    LOCKED = 5
    """Another run holds the lock on this output root; nothing was touched."""
    PACS_UNAVAILABLE = 6
    """The PACS could not be reached (at the start: nothing written; mid-run: the rerun resumes)."""
    INTERRUPTED = 130
    """Stopped by SIGINT (Ctrl-C); finished work is kept, the same command resumes."""
    TERMINATED = 143
    """Stopped by SIGTERM (``timeout``, ``systemctl stop``); finished work is kept, the same command resumes."""


_CODES: dict[type[PneumoBatchError], ExitCode] = {
    InputError: ExitCode.USAGE,
    DatasetError: ExitCode.USAGE,
    ModelError: ExitCode.USAGE,
    MissingDependencyError: ExitCode.USAGE,
    JobLockedError: ExitCode.LOCKED,
    PacsConfigError: ExitCode.USAGE,
    PacsAuthError: ExitCode.USAGE,
    PacsUnavailableError: ExitCode.PACS_UNAVAILABLE,
}

_debug = False


def set_debug(enabled: bool) -> None:
    """Whether to print tracebacks along with the one-line errors (``--debug``)."""
    global _debug
    _debug = enabled


def debugging() -> bool:
    return _debug or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def check_report_folder(out: Path, option: str = "--out") -> None:
    """Refuse, before any work, a report folder that is a file or whose nearest existing folder is not writable."""
    from pneumo_batch import storage

    if out.exists() and not out.is_dir():
        raise InputError(f"{option} exists and is not a folder: {out}")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} is under a file, not a folder: {existing}")
    try:
        storage.check_writable(existing)
    except OSError as error:
        raise InputError(f"cannot write in the folder of {option}: {error.strerror or error}: {existing}") from None


#: ``--group`` of the commands that write: who besides the owner may read what they write.
GROUP_HELP = "Group that may read what this run writes (files 0640, folders 0750 in that group); default the account's group."


def warn_wider_outputs(*folders: Path | None, public: tuple[Path, ...] = ()) -> None:
    """Say on one stderr line which existing outputs others may read (or the group write); change nothing.

    Files written from now on are private whatever their folder; older ones
    (say, from before pneumo-batch made them private) stay as they are until
    someone decides, hence a warning and not a chmod.
    """
    from pneumo_batch import storage

    given = [folder for folder in folders if folder is not None]
    found = dict(entry for folder in given for entry in storage.wider_than_private(folder, public=public))  # once each
    if not found:
        return
    path, mode = next(iter(found.items()))
    places = " ".join(sorted({str(folder) for folder in given}))
    typer.echo(
        f"Warning: {len(found)} existing output(s) can be read by other accounts or written by the group "
        f"(e.g. {path} {mode:04o}); pneumo-batch leaves them as they are; to make them private run "
        f"chmod -R o-rwx,g-w {places} (README 'Operations')",
        err=True,
    )


def exit_code_for(error: PneumoBatchError) -> ExitCode:
    if isinstance(error, StepFailedError):
        return exit_code_for(error.cause) if isinstance(error.cause, PneumoBatchError) else ExitCode.JOB_FAILED
    for kind, code in _CODES.items():
        if isinstance(error, kind):
            return code
    return ExitCode.JOB_FAILED


@contextmanager
def domain_errors() -> Iterator[None]:
    """Run a command's work: signals stop it cleanly, and any error becomes ``Error: <one line>`` and its exit code.

    A :class:`PneumoBatchError` keeps its own code; an ``OSError`` (a full
    disk, a folder that vanished) and any other exception exit with
    :attr:`ExitCode.JOB_FAILED`.
    """
    try:
        with raising_on_signals():
            yield
    except Interrupted as stop:
        _stopped(stop)
    except PneumoBatchError as error:
        _fail(one_line(error), exit_code_for(error))
    except OSError as error:
        _fail(_describe_os_error(error), ExitCode.JOB_FAILED)
    except Exception as error:  # a bug: still one line, and the traceback on request
        stop = _interruption_behind(error)
        if stop is not None:
            _stopped(stop)
        # The type, never the text: an exception's text may quote a header value (a birth date, a name).
        hint = "" if debugging() else f" (set {DEBUG_ENV}=1 or pass --debug for the traceback)"
        _fail(f"unexpected {type(error).__name__}{hint}", ExitCode.JOB_FAILED)


def _stopped(stop: Interrupted) -> None:
    _traceback()
    typer.echo(str(stop), err=True)
    raise typer.Exit(ExitCode.TERMINATED if stop.signal_number == signal.SIGTERM else ExitCode.INTERRUPTED) from None


def _interruption_behind(error: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` that caused ``error``, if any: a signal that landed inside a C extension
    (Ray, Arrow) can come back as a ``SystemError`` or a library's own error wrapping it."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, Interrupted):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _fail(message: str, code: ExitCode) -> None:
    _traceback()
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code) from None


def _traceback() -> None:
    if debugging():
        traceback.print_exc()


def _describe_os_error(error: OSError) -> str:
    """The system's phrase for the error number first (``No space left on device``), then the file if known."""
    reason = os.strerror(error.errno) if error.errno else error.strerror or one_line(error)
    return f"{reason}: {error.filename}" if error.filename else reason
