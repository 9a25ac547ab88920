"""``pneumo-batch nightly``: the cron job: score, monitor and keep a partitioned history."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date as Date
from pathlib import Path
from typing import Annotated, Any

import typer

from pneumo_batch.cli.common import GROUP_HELP, ExitCode, check_report_folder, domain_errors, warn_wider_outputs
from pneumo_batch.errors import InputError
from pneumo_batch.scoring import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, Engine


def nightly(
    input_path: Annotated[
        str | None,
        typer.Option("--input", help="Folder of images, Parquet manifest, or PACS (dicomweb+http(s)://HOST:PORT/PATH) to score.", show_default=False),
    ] = None,
    output_root: Annotated[
        Path | None,
        typer.Option(help="Root of predictions/, reports/, workspace/ and logs/.", show_default=False),
    ] = None,
    date: Annotated[str | None, typer.Option(metavar="YYYY-MM-DD", help="Partition date (default: today).", show_default=False)] = None,
    model: Annotated[Path | None, typer.Option(help="Model directory (default: the shipped model).", show_default=False)] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file whose keys mirror these options; the command line wins.", show_default=False),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Decoding processes (default: all cores).", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=MAX_BATCH_SIZE, help=f"Rows per chunk (default {DEFAULT_BATCH_SIZE}).", show_default=False)] = None,
    root: Annotated[Path | None, typer.Option(help="Refuse image paths outside this folder.", show_default=False)] = None,
    workspace: Annotated[Path | None, typer.Option(help="Evidently workspace (default: OUTPUT_ROOT/workspace).", show_default=False)] = None,
    engine: Annotated[
        Engine | None,
        typer.Option(help="local (default) or ray: Ray Data; the partition is then a folder of part files.", show_default=False),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(metavar="ADDRESS", help="With --engine ray: the cluster to join (default: a local Ray instance).", show_default=False),
    ] = None,
    metrics_dir: Annotated[
        Path | None,
        typer.Option(metavar="FOLDER", help="Folder for the Prometheus textfile pneumo_batch.prom, e.g. node_exporter's "
                     "textfile collector (default: OUTPUT_ROOT/metrics).", show_default=False),
    ] = None,
    scope_rules: Annotated[
        Path | None,
        typer.Option(metavar="FILE.toml", help="DICOM header scope rules (default: the built-in rules; README 'DICOM').",
                     show_default=False),
    ] = None,
    study_date: Annotated[
        str | None,
        typer.Option(metavar="YYYYMMDD[-YYYYMMDD]", help="PACS input: the study dates to query (default: the partition date).", show_default=False),
    ] = None,
    send_results: Annotated[
        bool | None,
        typer.Option("--send-results/--no-send-results", help="PACS input: store a DICOM SR per in-scope film in the PACS.", show_default=False),
    ] = None,
    group: Annotated[str | None, typer.Option(metavar="GROUP", help=GROUP_HELP, show_default=False)] = None,
    quiet: Annotated[
        bool | None,
        typer.Option(
            "--quiet/--verbose",
            help="--quiet prints nothing when all is well and the one-line summary when someone needs to look "
            "(the default without a terminal, as under cron); --verbose prints the log lines too.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score a night's images, monitor them, and publish date=YYYY-MM-DD partitions.

    Example: pneumo-batch nightly --input /data/incoming --output-root /data/pneumo-batch

    Exit codes: 0 all well; 3 some images failed; 4 monitoring alert, any
    kind (wins over 3); 5 another run holds the lock; 6 the PACS is
    unavailable; 2 usage error; 1 the job itself failed. Under cron (no
    terminal) it prints nothing on a good night and one line when someone
    needs to look; --verbose shows the log (whose last line is that
    summary). OUTPUT_ROOT/logs/ always has the log.
    """
    from pneumo_batch.nightly import NightlyOptions, public_outputs, run_nightly
    from pneumo_batch.nightly_config import load_config, parse_date, resolve_pacs

    with domain_errors():
        settings: dict[str, Any] = load_config(config) if config else {}
        given = {
            "input": input_path, "output_root": output_root, "model": model, "workers": workers,
            "batch_size": batch_size, "root": root, "workspace": workspace, "quiet": quiet,
            "engine": engine, "ray_address": ray_address, "metrics_dir": metrics_dir, "scope_rules": scope_rules,
            "group": group, "date": parse_date(date) if date else None,
        }
        settings.update({key: value for key, value in given.items() if value is not None})
        for required in ("input", "output_root"):
            if required not in settings:
                raise InputError(f"--{required.replace('_', '-')} is required (on the command line or in --config)")
        check_report_folder(Path(settings["output_root"]), "--output-root")
        quiet_mode = settings.pop("quiet", None)
        if quiet_mode is None:
            quiet_mode = not sys.stderr.isatty()  # cron mails whatever a job prints: print only what needs a look
        settings.setdefault("date", Date.today())
        resolve_pacs(settings, study_date=study_date, send_results=send_results)
        options = NightlyOptions(**settings)
        warn_wider_outputs(options.output_root, options.workspace, public=public_outputs(options))
        with _log_to_stderr(None if quiet_mode else logging.INFO):
            result = run_nightly(options)
    if quiet_mode and result.needs_attention:
        typer.echo(result.summary_line(), err=True)  # the log's last line; a failure printed its own one line
    code = ExitCode.ALERT if result.monitoring.alert else ExitCode.ROWS_FAILED if result.scoring.errors else ExitCode.OK
    raise typer.Exit(code)


@contextmanager
def _log_to_stderr(level: int | None) -> Iterator[None]:
    """Show the package's log records from ``level`` up on stderr; ``None`` shows none.

    With ``None`` a :class:`logging.NullHandler` still takes the records, so
    Python's last-resort handler never prints a stray warning.
    """
    package = logging.getLogger("pneumo_batch")
    handler: logging.Handler
    if level is None:
        handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handler.setLevel(level)
    previous_level = package.level
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(previous_level)
