""":func:`score_batch`, the library behind ``pneumo-batch score``: images in, predictions out, one row per input row."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pneumo_batch.errors import InputError, StepFailedError
from pneumo_batch.model import ModelArtifact
from pneumo_batch.scope.header import DEFAULT_HEADER_RULES, HeaderScopeRules, load_header_rules
from pneumo_batch.scoring.engines import engine_for
from pneumo_batch.scoring.types import (
    DEFAULT_BATCH_SIZE,
    Engine,
    ProgressCallback,
    ScoreRequest,
    ScorerFactory,
    ScoreSummary,
)

if TYPE_CHECKING:
    from pneumo_batch.inputs.pacs import PacsOptions


def score_batch(
    input_path: str | Path,
    out: str | Path,
    *,
    engine: Engine | str = Engine.LOCAL,
    model: ModelArtifact | str | Path | None = None,
    workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    root: str | Path | None = None,
    progress: ProgressCallback | None = None,
    scorer_factory: ScorerFactory | None = None,
    ray_address: str | None = None,
    pacs: PacsOptions | None = None,
    overwrite: bool = False,
    scope_rules: HeaderScopeRules | str | Path | None = None,
    reuse_from: str | Path | None = None,
) -> ScoreSummary:
    """Score every image of ``input_path`` (a directory or a Parquet manifest) into ``out``.

    ``engine`` chooses where: ``local`` (worker processes on this machine;
    ``out`` is one Parquet file, resumable after a crash) or ``ray`` (Ray
    Data, on a local instance or the cluster at ``ray_address``; ``out`` is a
    folder of part files, and an interrupted run starts over). ``model`` is a
    loaded artifact or a model directory (default: the shipped default
    model). ``workers`` is the number of worker processes (default: every
    usable core; 0 scores in this process), or with Ray the CPUs of the
    local instance. ``root`` confines every path. ``scorer_factory``
    replaces the model's ``.tflite`` (tests use a fake); the artifact still
    supplies thresholds and metadata. An existing ``out`` that is not a
    predictions file is refused unless ``overwrite``. ``scope_rules``: the
    DICOM header scope rules, or a TOML file of them (default:
    :data:`~pneumo_batch.scope.header.DEFAULT_HEADER_RULES`).

    ``input_path`` may be a PACS (``dicomweb+http(s)://HOST:PORT/PATH``, a
    string) with ``pacs`` saying which study dates and how to log in; with
    ``pacs.send_results`` each in-scope film then gets a DICOM SR in the
    PACS (:attr:`ScoreSummary.reports_sent`), once the predictions are
    written; a failure while sending them is a
    :class:`~pneumo_batch.errors.StepFailedError` that leaves them in place. PACS errors:
    :class:`~pneumo_batch.errors.PacsUnavailableError` (at the start nothing
    is written; mid-run the finished chunks are kept and a rerun resumes),
    :class:`~pneumo_batch.errors.PacsAuthError`. A rerun fetches and scores
    only the instances ``out`` (or ``reuse_from``: the nightly job's
    published partition) lacks and merges in the ``ok`` rows it holds, if
    they were scored the same way (pneumo-batch version, model, thresholds,
    scope rules; see :mod:`pneumo_batch.scoring.reuse`); ``overwrite``
    scores everything again.

    Raises :class:`InputError` for an unusable input or option,
    :class:`~pneumo_batch.errors.ModelError` for an unusable model,
    :class:`~pneumo_batch.errors.JobLockedError` when another run is writing
    ``out`` and :class:`~pneumo_batch.errors.MissingDependencyError` for an
    engine whose extra is not installed; a bad image is never an exception.
    """
    chosen = Engine.parse(engine)
    if ray_address is not None and chosen is not Engine.RAY:
        raise InputError("--ray-address needs --engine ray")
    if scope_rules is None:
        header_rules = DEFAULT_HEADER_RULES
    elif isinstance(scope_rules, HeaderScopeRules):
        header_rules = scope_rules
    else:
        header_rules = load_header_rules(scope_rules)
    request = ScoreRequest(
        input_path=input_path, out=out, model=model, workers=workers, batch_size=batch_size, root=root,
        progress=progress, scorer_factory=scorer_factory, ray_address=ray_address, pacs=pacs,
        overwrite=overwrite, header_rules=header_rules, reuse_from=None if reuse_from is None else Path(reuse_from),
    )
    summary = engine_for(chosen).score(request)
    if pacs is not None and pacs.send_results:
        from pneumo_batch.scoring.results import send_run_results

        try:
            sent = send_run_results(summary.out, str(input_path), pacs)
        except Exception as error:  # the predictions are written: say so, whatever stopped the reports
            raise StepFailedError("sending reports", error, str(summary.out)) from error
        summary = replace(summary, reports_sent=sent.stored, reports_present=sent.present, reports_not_sent=sent.not_sent)
    return summary
