"""The nightly job: score a night's input, monitor it, keep a partitioned history.

Layout under the output root (Hive-style partitions, so DuckDB, pandas,
Spark and Ray read the whole history as one dataset)::

    OUTPUT_ROOT/
      predictions/date=YYYY-MM-DD/predictions.parquet      (engine "ray": part-NNNNNNNN.parquet files)
      reports/date=YYYY-MM-DD/{index.html (the verdict), summary.json, report.html, report.json, class_balance.csv}
      workspace/            Evidently workspace, one snapshot per night (a rerun replaces it)
      logs/nightly-YYYY-MM-DD.log
      metrics/pneumo_batch.prom   Prometheus textfile (or ``metrics_dir``), rewritten by every run
      labels/reads-HASH.parquet   the label store (``pneumo-batch labels add``), append-only
      realized/realized_performance.json   realized performance from the reads, recomputed when they change
      .nightly.lock         held (flock) while a run is active

A run builds the new partition under a dot-prefixed staging folder (which
dataset readers skip) and swaps it in only when complete, so rerunning a
date replaces it and never doubles rows.

Publish first, report after: the predictions partition is published as soon
as scoring ends. The steps after it (sending the screening reports to the
PACS, then monitoring) each run whatever became of the one before; a step
that fails never unpublishes the predictions, and the run ends with a
:class:`~pneumo_batch.errors.StepFailedError` naming the first step that
failed (exit code of its cause). A rerun of the date sends only the reports
the PACS lacks and rebuilds the monitoring report; from a PACS it also
fetches and scores nothing the published partition holds (a folder or
manifest input is scored again: seconds for a night). A killed run resumes its scoring
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
from dataclasses import dataclass, replace
from datetime import date as Date
from pathlib import Path
from typing import Any, TypeVar

from pneumo_batch import prometheus, storage
from pneumo_batch.errors import InputError, StepFailedError
from pneumo_batch.inputs.pacs import PacsOptions
from pneumo_batch.locking import exclusive_run
from pneumo_batch.model import ModelArtifact, load_model
from pneumo_batch.monitoring import (
    MonitoringSummary,
    build_monitoring_report,
    read_sample,
    refresh_realized,
    resolve_reference,
    window_gauges,
    write_verdict_page,
)
from pneumo_batch.scoring import DEFAULT_BATCH_SIZE, Engine, Progress, ScoreSummary, ScorerFactory, score_batch
from pneumo_batch.scoring.results import send_run_results

logger = logging.getLogger(__name__)
T = TypeVar("T")

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
        empty += self.scoring.reports_phrase()
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
        scored = predictions if options.engine is Engine.RAY else predictions / PREDICTIONS_FILE
        steps = _StepsAfterScoring(scored)
        if options.pacs is not None and options.pacs.send_results:
            sent = steps.run("sending reports", lambda: send_run_results(scored, str(options.input), options.pacs))
            if sent is not None:
                scoring = replace(scoring, reports_sent=sent.stored, reports_present=sent.present,
                                  reports_not_sent=sent.not_sent)
                logger.info("reports: %s", scoring.reports_phrase().lstrip(", "))

        realized = _realized(root)
        reports = partition(root, "reports", options.date)
        monitoring = steps.run("monitoring", lambda: _monitor(options, scored, reports, reference, metadata, realized))
        steps.raise_first_failure()
        assert monitoring is not None  # a failed step raised above
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


class _StepsAfterScoring:
    """Runs the steps after the predictions are published; each runs whatever became of the one before."""

    def __init__(self, published: Path) -> None:
        self._published = published
        self._failures: list[StepFailedError] = []

    def run(self, step: str, work: Callable[[], T]) -> T | None:
        try:
            return work()
        except Exception as error:  # noqa: BLE001 - any failure here must leave the published predictions alone
            failure = StepFailedError(step, error, str(self._published))
            failure.__cause__ = error
            logger.error("%s", failure)
            self._failures.append(failure)
            return None

    def raise_first_failure(self) -> None:
        if self._failures:
            raise self._failures[0]


def _monitor(options: NightlyOptions, scored: Path, reports: Path, reference: Any,
             metadata: dict[str, Any] | None, realized: dict[str, Any] | None) -> MonitoringSummary:
    """The night's monitoring report and verdict page, built beside ``reports`` and swapped in whole."""
    staging = reports.with_name(f".staging-{reports.name}-{uuid.uuid4().hex[:8]}")
    monitoring = build_monitoring_report(
        [scored],
        reference,
        staging,
        model_metadata=metadata,
        workspace=options.workspace or options.output_root / "workspace",
        night=options.date,
        realized=realized,
    )
    rules = monitoring.rules
    write_verdict_page(staging, monitoring.as_dict(), read_sample([scored], rules.sample_rows, rules.seed))
    storage.replace_folder(staging, reports)
    return monitoring


def _realized(root: Path) -> dict[str, Any] | None:
    """The realized-performance history, recomputed when labels or nights changed (issue 23); a broken
    label store is logged and never fails the night."""
    try:
        return refresh_realized(root)
    except InputError as error:
        logger.error("realized performance not computed: %s", error)
        return None


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
            "sensitivity": getattr(summary, "sensitivity_alert", False),
            "subgroup": getattr(summary, "subgroup_alert", False),
        },
        **realized_metrics(getattr(summary, "realized_performance", None)),
    )


def realized_metrics(realized: dict[str, Any] | None) -> dict[str, float | None]:
    """The realized-performance gauges: the 30-day window at the screening point, the sensitivity CUSUM."""
    return window_gauges(realized)


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
    # Reports go out only once the partition is published (run_nightly), never from inside scoring.
    pacs = None if options.pacs is None else replace(options.pacs, send_results=False)
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
        pacs=pacs,
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
