"""The nightly job: score a night's input, monitor it, keep a partitioned history.

Layout under the output root (Hive-style partitions, so DuckDB, pandas,
Spark and Ray read the whole history as one dataset)::

    OUTPUT_ROOT/
      predictions/date=YYYY-MM-DD/predictions.parquet      (engine "ray": part-NNNNNNNN.parquet files)
      reports/date=YYYY-MM-DD/{index.html (the verdict), summary.json, report.html, report.json, class_balance.csv}
      workspace/            Evidently workspace, one snapshot per night (a rerun replaces it)
      logs/nightly-YYYY-MM-DD.log
      metrics/pneumo_batch.prom   Prometheus textfile (or ``metrics_dir``), rewritten by every run
      .nightly.lock         held (flock) while a run is active

A run builds the new partition under a dot-prefixed staging folder (which
dataset readers skip) and swaps it in only when complete, so rerunning a
date replaces it and never doubles rows. A killed run resumes its scoring
from the staging folder when the same date runs again; from a PACS, a rerun
takes the published partition's rows and fetches only the films it lacks.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import date as Date
from pathlib import Path
from typing import Any

from pneumo_batch import prometheus, storage
from pneumo_batch.errors import InputError
from pneumo_batch.inputs.pacs import PacsOptions, pacs_options
from pneumo_batch.locking import exclusive_run
from pneumo_batch.model import ModelArtifact, load_model
from pneumo_batch.pacs.location import is_pacs_url
from pneumo_batch.monitoring import (
    MonitoringSummary,
    build_monitoring_report,
    read_predictions,
    resolve_reference,
    write_verdict_page,
)
from pneumo_batch.scoring import DEFAULT_BATCH_SIZE, Engine, Progress, ScoreSummary, ScorerFactory, score_batch
from pneumo_batch.toml_files import read_toml

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.parquet"


@dataclass(frozen=True)
class NightlyOptions:
    input: Path | str
    """A folder, a Parquet manifest, or a PACS URL (``dicomweb+http(s)://...``, with ``pacs``)."""
    output_root: Path
    date: Date
    model: Path | None = None
    workers: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    root: Path | None = None
    workspace: Path | None = None
    """Evidently workspace; default ``OUTPUT_ROOT/workspace``."""
    engine: Engine = Engine.LOCAL
    """``ray`` scores on Ray Data; the partition is then a folder of part files (and ``workers`` sizes a local Ray)."""
    ray_address: str | None = None
    """With the Ray engine: the cluster to join; default a local Ray instance."""
    metrics_dir: Path | None = None
    """Folder of the Prometheus textfile ``pneumo_batch.prom``; default ``OUTPUT_ROOT/metrics``."""
    scope_rules: Path | None = None
    """TOML file of DICOM header scope rules (a ``[header]`` table); default the built-in rules."""
    pacs: PacsOptions | None = None
    """A PACS input's study dates (default: the night's date), credentials file, settings, send_results."""
    group: str | None = None
    """Group that may read what the run writes (see :func:`pneumo_batch.storage.readable_by`); default the account's."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", Engine.parse(self.engine))
        if self.ray_address is not None and self.engine is not Engine.RAY:
            raise InputError("ray_address (--ray-address) needs engine ray (--engine ray)")
        if self.group is not None:
            storage.group_id(self.group)  # an unknown group fails here, before any work


@dataclass(frozen=True)
class NightlyResult:
    date: Date
    predictions: Path
    reports: Path
    scoring: ScoreSummary
    monitoring: MonitoringSummary
    seconds: float

    @property
    def needs_attention(self) -> bool:
        return self.scoring.errors > 0 or self.monitoring.alert

    def summary_line(self) -> str:
        """One line for a cron mail: what ran, what failed, what alerted."""
        verdict = "ALERT: " + "; ".join(self.monitoring.alerts) if self.monitoring.alert else "no alert"
        if self.monitoring.batch_size_rule.get("applied") == "too_few_rows" and not self.monitoring.alert:
            verdict = "no alert (too few rows for a verdict)"
        empty = " (empty input)" if self.scoring.rows == 0 else ""
        if self.scoring.reports_sent is not None:
            empty += f", {self.scoring.reports_sent} reports sent to the PACS"
            empty += f" ({self.scoring.reports_present} already there)" if self.scoring.reports_present else ""
        return (
            f"nightly {self.date.isoformat()}: {self.scoring.rows} rows{empty}, {self.scoring.errors} errors, "
            f"{verdict}; {self.seconds:.1f} s; predictions {self.predictions}"
        )


def partition(output_root: Path, kind: str, day: Date) -> Path:
    return output_root / kind / f"date={day.isoformat()}"


def run_nightly(options: NightlyOptions, *, scorer_factory: ScorerFactory | None = None) -> NightlyResult:
    """Score, monitor and publish one date's partition while holding the output root's lock.

    Raises :class:`~pneumo_batch.errors.JobLockedError` at once, touching
    nothing, when another run holds the lock. Progress goes to the
    ``pneumo_batch.nightly`` logger and, while the lock is held, to
    ``OUTPUT_ROOT/logs/nightly-DATE.log``.
    """
    started = time.perf_counter()
    root = options.output_root
    log = root / "logs" / f"nightly-{options.date.isoformat()}.log"
    with storage.readable_by(options.group), exclusive_run(root), _log_file(log), \
            _metrics_file(options, started) as record_success:
        logger.info("nightly %s: input %s, output root %s", options.date, options.input, root)
        artifact = load_model(options.model)
        reference, metadata = resolve_reference(artifact.directory)
        _remove_leftovers(root)

        predictions = partition(root, "predictions", options.date)
        staging = predictions.with_name(f".staging-{predictions.name}")
        logger.info("scoring with model %s %s on the %s engine", artifact.name, artifact.version, options.engine.value)
        scoring = _score(options, artifact, staging, predictions, scorer_factory)
        logger.info(
            "scored %d rows (%d errors, %d resumed, %d of them already in the partition) in %.1f s",
            scoring.rows, scoring.errors, scoring.rows_resumed, scoring.rows_reused, scoring.seconds,
        )
        storage.replace_folder(staging, predictions)

        reports = partition(root, "reports", options.date)
        report_staging = reports.with_name(f".staging-{reports.name}-{uuid.uuid4().hex[:8]}")
        scored = predictions if options.engine is Engine.RAY else predictions / PREDICTIONS_FILE
        monitoring = build_monitoring_report(
            [scored],
            reference,
            report_staging,
            model_metadata=metadata,
            workspace=options.workspace or root / "workspace",
            night=options.date,
        )
        write_verdict_page(report_staging, monitoring.as_dict(), read_predictions([str(scored)]))
        storage.replace_folder(report_staging, reports)
        for alert in monitoring.alerts:
            logger.warning("alert: %s", alert)
        if scoring.errors:
            logger.warning("%d of %d images could not be scored; see the error column", scoring.errors, scoring.rows)
        result = NightlyResult(
            date=options.date,
            predictions=predictions,
            reports=reports,
            scoring=scoring,
            monitoring=monitoring,
            seconds=time.perf_counter() - started,
        )
        record_success(result)
        logger.log(logging.WARNING if result.needs_attention else logging.INFO, "%s", result.summary_line())
    return result


@contextmanager
def _metrics_file(options: NightlyOptions, started: float) -> Iterator[Callable[[NightlyResult], None]]:
    """Rewrite the Prometheus textfile when the run ends, successful or not (a failed night can page someone).

    Yields the function that records the finished night; a run that never
    calls it is written as failed. A metrics write that fails is logged and
    never fails the night.
    """
    finished: list[NightlyResult] = []
    try:
        yield finished.append
    finally:
        run = run_metrics(finished[0] if finished else None, finished_at=time.time(),
                          duration_seconds=time.perf_counter() - started)
        try:
            prometheus.write_run_metrics(prometheus.metrics_path(options.output_root, options.metrics_dir), run)
        except InputError as error:
            logger.error("%s", error)


def public_outputs(options: NightlyOptions) -> tuple[Path, ...]:
    """The outputs meant to be world-readable: the Prometheus textfile and its folder (for node_exporter)."""
    path = prometheus.metrics_path(options.output_root, options.metrics_dir)
    return path, path.parent


def run_metrics(result: NightlyResult | None, *, finished_at: float, duration_seconds: float) -> prometheus.RunMetrics:
    """What Prometheus gets from a night (``None``: the run failed)."""
    if result is None:
        return prometheus.RunMetrics(finished_at=finished_at, success=False, duration_seconds=duration_seconds)
    summary = result.monitoring
    screening = [share.count for share in summary.class_balance if share.name == "screening"]
    # issue 15's summary fields; read defensively so older summaries still report
    prevalence = getattr(summary, "prevalence_estimate", None)
    return prometheus.RunMetrics(
        finished_at=finished_at,
        success=True,
        duration_seconds=duration_seconds,
        rows_by_status={"ok": result.scoring.rows - result.scoring.errors, "error": result.scoring.errors},
        out_of_scope=getattr(summary, "n_out_of_scope", None),
        screening_positives=screening[0] if screening else None,
        prevalence_estimate=_part(prevalence, "value"),
        prevalence_low=_part(prevalence, "low"),
        prevalence_high=_part(prevalence, "high"),
        training_prevalence=_part(prevalence, "training"),
        alerts={
            "drift": summary.drift_detected,
            "class_balance": summary.class_balance_alert,
            "out_of_scope": bool(getattr(summary, "out_of_scope_alert", False)),
            "performance": summary.performance_alert,
        },
    )


def _part(value: Any, key: str) -> float | None:
    """``value[key]`` or ``value.key`` as a float, ``None`` when absent."""
    found = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return None if found is None else float(found)


def _score(options: NightlyOptions, artifact: ModelArtifact, staging: Path, published: Path,
           scorer_factory: ScorerFactory | None) -> ScoreSummary:
    """Score into ``staging``: a resumable ``predictions.parquet`` (local engine) or a folder of parts (Ray).

    From a PACS, the night's ``published`` partition (an earlier run's) lends
    its rows, so a rerun fetches only the films that arrived since.
    """

    def progress(done: Progress) -> None:
        logger.debug("scored %d/%d rows", done.rows_done, done.rows_total)

    out = staging if options.engine is Engine.RAY else staging / PREDICTIONS_FILE
    earlier = published if options.engine is Engine.RAY else published / PREDICTIONS_FILE
    if options.engine is Engine.RAY:
        shutil.rmtree(staging, ignore_errors=True)  # a Ray run does not resume: start from an empty folder
    return score_batch(
        options.input,
        out,
        engine=options.engine,
        model=artifact,
        workers=options.workers,
        batch_size=options.batch_size,
        root=options.root,
        scorer_factory=scorer_factory,
        ray_address=options.ray_address,
        progress=progress,
        pacs=options.pacs,
        scope_rules=options.scope_rules,
        reuse_from=earlier if options.pacs is not None and earlier.exists() else None,
    )


def _remove_leftovers(root: Path) -> None:
    """Delete retired partitions and report staging left by a killed run (prediction staging is kept to resume)."""
    for kind in ("predictions", "reports"):
        folder = root / kind
        if folder.is_dir():
            for leftover in [*folder.glob(".*.old-*"), *folder.glob("..staging-*.ray-*")]:
                shutil.rmtree(leftover, ignore_errors=True)
    reports = root / "reports"
    if reports.is_dir():
        for leftover in reports.glob(".staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """Copy the package's log records (INFO and up) to ``path`` for the duration of a run."""
    storage.make_folder(path.parent)
    storage.create_file(path)  # private before logging appends to it
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    package = logging.getLogger("pneumo_batch")
    previous_level = package.level
    package.addHandler(handler)
    if previous_level == logging.NOTSET or previous_level > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield
    except BaseException as error:
        logger.error("nightly run failed: %s", error)
        raise
    finally:
        package.removeHandler(handler)
        package.setLevel(previous_level)
        handler.close()


CONFIG_KEYS = {f.name for f in fields(NightlyOptions)} | {"quiet"}
_PATH_KEYS = ("input", "output_root", "model", "root", "workspace", "metrics_dir", "scope_rules")
#: The TOML types a key accepts (a bool is not an integer here, though Python says it is).
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "workers": (int,), "batch_size": (int,), "quiet": (bool,), "date": (str, Date), "engine": (str,), "ray_address": (str,), "group": (str,),
    **{key: (str,) for key in _PATH_KEYS},
}
_TOML_NAMES: dict[type, str] = {
    str: "a string", int: "an integer", bool: "true or false", float: "a number", list: "an array", dict: "a table",
}


def load_config(path: Path) -> dict[str, Any]:
    """Read a TOML config whose keys mirror the options; relative paths are relative to the file."""
    raw = read_toml(path, "config")
    config = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise InputError(f"config {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(CONFIG_KEYS))}")
    section = config.get("pacs")
    if section is not None:
        if not isinstance(section, dict):
            raise InputError(f"config {path}: pacs must be a [pacs] table")
        for key in ("auth_file", "ca_bundle"):
            if key in section:
                section[key] = (path.parent / Path(str(section[key])).expanduser()).resolve()
        if "url" in section:
            config.setdefault("input", section["url"])
    for key, value in config.items():
        expected = _CONFIG_TYPES.get(key)
        if expected and (not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)):
            names = " or ".join("a date" if kind is Date else _TOML_NAMES[kind] for kind in expected)
            raise InputError(f"config {path}: {key} must be {names}, not {_TOML_NAMES.get(type(value), type(value).__name__)} {value!r}")
    for key in _PATH_KEYS:
        if key in config and not (key == "input" and is_pacs_url(str(config[key]))):
            config[key] = (path.parent / Path(str(config[key])).expanduser()).resolve()
    if "date" in config:
        config["date"] = parse_date(str(config["date"]))
    if "engine" in config:
        config["engine"] = str(config["engine"])  # checked by NightlyOptions
    return config


def resolve_pacs(settings: dict[str, Any], *, study_date: str | None, send_results: bool | None) -> None:
    """Turn a ``[pacs]`` section and the PACS options into ``settings["pacs"]`` for a PACS input.

    The study dates default to the night's date (``settings["date"]``).
    """
    section = settings.pop("pacs", None)
    if not is_pacs_url(str(settings.get("input", ""))):
        if section is not None or study_date is not None or send_results:
            raise InputError("the [pacs] section, --study-date and --send-results need a dicomweb+http(s):// input")
        return
    section = dict(section or {})
    section.pop("url", None)
    settings["pacs"] = pacs_options(
        section, study_date=study_date, send_results=send_results,
        default_study_date=settings["date"].strftime("%Y%m%d"),
    )


def parse_date(text: str) -> Date:
    try:
        return Date.fromisoformat(text)
    except ValueError:
        raise InputError(f"date must be YYYY-MM-DD, got {text!r}") from None
