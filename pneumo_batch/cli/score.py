"""``pneumo-batch score``: a directory of X-rays or a Parquet manifest in, a predictions Parquet file out."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pneumo_batch import storage
from pneumo_batch.cli.common import GROUP_HELP, ExitCode, domain_errors
from pneumo_batch.inputs.pacs import pacs_options
from pneumo_batch.pacs.location import AUTH_ENV, is_pacs_url
from pneumo_batch.scoring import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, Engine, Progress, ScoreSummary, score_batch

#: Without a terminal, a progress line at most this often (seconds).
LOG_INTERVAL = 10.0


def score(
    input_path: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="A directory of images (scanned recursively), a Parquet manifest with a 'path' or 'image' column, "
            "or a PACS: dicomweb+http(s)://HOST:PORT/PATH (with --study-date).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="PREDICTIONS.parquet",
            help="The predictions Parquet file (with --engine ray: a folder of part files); it appears only when complete.",
            show_default=False,
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(metavar="MODEL_DIR", help="Model directory (default: the model named by models/DEFAULT).", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes that decode and score (default: all cores); with --engine ray, the CPUs of the local Ray instance.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(min=1, max=MAX_BATCH_SIZE, help="Rows per chunk at most (a small input gets smaller chunks, at least 64 rows, so every worker has work): the unit of work, of resuming and of progress."),
    ] = DEFAULT_BATCH_SIZE,
    root: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Refuse every image path outside DIR (via '..', an absolute path or a symlink): such rows become errors.",
            show_default=False,
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(help="local: worker processes on this machine. ray: Ray Data, on a local instance or a cluster (needs the ray extra)."),
    ] = Engine.LOCAL,
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="With --engine ray: the cluster to join (auto, HOST:PORT or ray://HOST:10001); default: start a local Ray instance.",
            show_default=False,
        ),
    ] = None,
    study_date: Annotated[
        str | None,
        typer.Option(metavar="YYYYMMDD[-YYYYMMDD]", help="PACS input: the study date or inclusive range to query (CR and DX films).", show_default=False),
    ] = None,
    send_results: Annotated[
        bool,
        typer.Option("--send-results", help="PACS input: store a DICOM SR per in-scope film in the PACS (STOW-RS); a rerun adds none."),
    ] = False,
    pacs_auth_file: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help=f"PACS credentials file (user:password or Bearer TOKEN; chmod 600); {AUTH_ENV} wins.", show_default=False),
    ] = None,
    pacs_timeout: Annotated[
        float | None,
        typer.Option(min=0.1, metavar="SECONDS", help="PACS read timeout per request (default 60; retried with backoff).", show_default=False),
    ] = None,
    pacs_retries: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="PACS: retries of a failed request, with doubling backoff (default 4).", show_default=False),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace an existing OUT that is not a predictions file (refused otherwise); from a PACS, score every film again."),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", help="No progress and no summary, except the summary line when some rows failed."),
    ] = False,
    group: Annotated[str | None, typer.Option(metavar="GROUP", help=GROUP_HELP, show_default=False)] = None,
    scope_rules: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.toml",
            help="DICOM header scope rules (a [header] table; see README 'DICOM'); default: CR/DX chest PA/AP, "
            "single frame, under 18 years.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score chest X-rays for pneumonia into one Parquet file, one row per input row.

    Bad images become 'error' rows with a reason; the exit code is 3 when
    any row is an error, 0 when all scored. If a run is killed, run the
    same command again: it resumes from OUT.partial/ without redoing
    finished chunks. From a PACS, a rerun fetches only the films OUT lacks
    (or whose rows are errors) when OUT was scored by the same model and
    settings; --overwrite scores them all again.

    With --engine ray, Ray Data decodes and scores (same rows and scores) and
    OUT is a folder of part files; an interrupted Ray run starts over.

    From a PACS, INPUT is its DICOMweb URL; credentials come from the
    environment variable PNEUMO_BATCH_PACS_AUTH or --pacs-auth-file, never
    from the command line. Exit code 6: the PACS is unavailable.

    Example: pneumo-batch score demo/images/manifest.parquet --out predictions.parquet
    """
    reporter = _SilentReporter() if quiet else _BarReporter() if sys.stderr.isatty() else _LogReporter()
    with domain_errors():
        pacs = None
        section = {"auth_file": pacs_auth_file, "read_timeout_s": pacs_timeout, "retries": pacs_retries}
        if is_pacs_url(input_path) or study_date or send_results or any(v is not None for v in section.values()):
            pacs = pacs_options({key: value for key, value in section.items() if value is not None},
                                study_date=study_date, send_results=send_results)
        try:
            with storage.readable_by(group):
                summary = score_batch(
                    input_path, out, engine=engine, model=model, workers=workers, batch_size=batch_size, root=root,
                    ray_address=ray_address, progress=reporter, pacs=pacs, overwrite=overwrite, scope_rules=scope_rules,
                )
        finally:
            reporter.close()
    if summary.errors or not quiet:
        typer.echo(_summary_line(summary), err=True)
    if summary.errors:
        raise typer.Exit(ExitCode.ROWS_FAILED)


def _summary_line(summary: ScoreSummary) -> str:
    interrupted = summary.rows_resumed - summary.rows_reused
    resumed = f", {interrupted:,} resumed from an earlier run" if interrupted else ""
    resumed += f", {summary.rows_reused:,} already in OUT (not fetched again)" if summary.rows_reused else ""
    resumed += summary.reports_phrase()
    return (
        f"scored {summary.rows:,} rows, {summary.errors:,} errors{resumed}, {summary.seconds:.1f} s, "
        f"{summary.images_per_second:,.0f} images/s -> {summary.out}"
    )


class _SilentReporter:
    """No progress at all (``--quiet``)."""

    def __call__(self, progress: Progress) -> None:
        pass

    def close(self) -> None:
        pass


class _LogReporter:
    """Plain lines on stderr (cron, CI, pipes): the start, then at most one every :data:`LOG_INTERVAL` seconds."""

    def __init__(self) -> None:
        self._last = 0.0
        self._started = False

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if not self._started:
            self._started, self._last = True, now
            typer.echo(f"scoring {progress.rows_total:,} rows", err=True)
        elif now - self._last >= LOG_INTERVAL:
            self._last = now
            typer.echo(
                f"{progress.rows_done:,}/{progress.rows_total:,} rows, {progress.errors:,} errors, "
                f"{progress.seconds:.0f} s",
                err=True,
            )

    def close(self) -> None:
        pass


class _BarReporter:
    """A progress bar on a terminal."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._done = 0

    def __call__(self, progress: Progress) -> None:
        if self._bar is None:
            self._bar = typer.progressbar(length=progress.rows_total, label="Scoring", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(progress.rows_done - self._done)
        self._done = progress.rows_done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
