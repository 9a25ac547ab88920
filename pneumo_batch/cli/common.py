"""What every command shares: exit codes and turning domain errors into messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

import typer

from pneumo_batch.errors import (
    DatasetError,
    InputError,
    JobLockedError,
    MissingDependencyError,
    ModelError,
    PacsAuthError,
    PacsConfigError,
    PacsUnavailableError,
    PneumoBatchError,
)


class ExitCode(IntEnum):
    """Exit codes of every ``pneumo-batch`` command (also listed in the README)."""

    OK = 0
    JOB_FAILED = 1
    """The job itself failed: an unexpected error; nothing trustworthy was written."""
    USAGE = 2
    """Bad options or unusable input as a whole (missing input, bad manifest, bad model or data path)."""
    ROWS_FAILED = 3
    """The output is complete but some rows are ``error`` rows."""
    ALERT = 4
    """Monitoring raised a drift or class-balance alert (``monitor --fail-on-drift``, ``nightly``)."""
    LOCKED = 5
    """Another run holds the lock on this output root; nothing was touched."""
    PACS_UNAVAILABLE = 6
    """The PACS could not be reached (at the start: nothing written; mid-run: the rerun resumes)."""


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


def exit_code_for(error: PneumoBatchError) -> ExitCode:
    for kind, code in _CODES.items():
        if isinstance(error, kind):
            return code
    return ExitCode.JOB_FAILED


@contextmanager
def domain_errors() -> Iterator[None]:
    """Turn a :class:`PneumoBatchError` into ``Error: <message>`` on stderr and its exit code."""
    try:
        yield
    except PneumoBatchError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(exit_code_for(error)) from None
