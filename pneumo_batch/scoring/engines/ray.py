"""The Ray engine: the same rows as the local engine, on Ray Data, on this machine or a cluster.

``score_batch(..., engine=Engine.RAY)`` (``pneumo-batch score --engine ray``) runs :class:`RayEngine`.
The driver (this process) streams the input listing (a directory scan or a
Parquet manifest, :func:`~pneumo_batch.inputs.open_input`) in blocks of
``batch_size`` rows, tags every row with its row number in the input, and
hands the blocks to Ray as a dataset. ``Dataset.map_batches`` runs
:class:`_ScoringActor`, a stateful callable class: one actor per CPU of the
cluster, each loading the LiteRT model once, then decoding and scoring
whole blocks with :func:`~pneumo_batch.scoring.score_rows`, the very function
the local engine runs in its worker processes. Rows, statuses, error reasons,
scores, decisions and features are therefore identical to the local
engine's for the same input; only ``run_id`` and ``scored_at`` differ. From
a PACS, each actor fetches its block's films over WADO-RS (the chunk's
fetcher, as in a local worker); a rerun reuses the earlier output's rows
(:mod:`pneumo_batch.scoring.reuse`) and scores only the rest.

Model shipping. The driver reads the ``.tflite`` file once, checks its
sha256 and puts its bytes into Ray's object store (``ray.put``); each actor
fetches them from there, checks the sha256 again and builds its interpreter
from memory. Workers never open the model directory, so it need not exist
on other nodes.

Output. ``out`` becomes a folder of Parquet part files,
``part-00000000.parquet``, ``part-00000001.parquet``... with the local
engine's columns (:func:`~pneumo_batch.predictions.output_schema`) and the same
``pneumo_batch`` key-value metadata in every part. Rows are in input order:
part by part in name order, then row by row (``pyarrow.dataset``, DuckDB,
pandas and Ray all read the folder as one table in that order). The folder
is built beside ``out`` under a dot-prefixed name and swapped in only when
complete, so ``out`` is never partial. Unlike the local engine, a run that
dies is not resumed: the next run starts over.

Stopping. A SIGINT or SIGTERM is held until the block in hand is written
(:func:`~pneumo_batch.interruptions.deferred`); then closing the Ray Data
iterator stops its execution, and only then is Ray shut down.

Exactly once. Every row is scored once and written once, even when a
worker dies and Ray retries:

- ``map_batches`` is a pure function of its input block: each block yields
  exactly one output block. When an actor or a node dies, Ray restarts the
  actor and re-runs the lost block's call (Ray Data's defaults for actor
  pools: ``max_restarts=-1``, ``max_task_retries=-1``); the retry *replaces*
  the lost output, it is never added to it. A call that finished before its
  worker died is not re-run. (A Python exception in a call is not retried:
  it fails the run, as in the local engine; but since the retries are
  unbounded, an image that crashes its decoder process every time would be
  retried forever, and Ray 2.60 only lets that be bounded through the
  deprecated ``ray_remote_args``.)
- Workers write nothing. Only the driver writes, as it consumes the output
  blocks in input order (``preserve_order``), so a retried task cannot leave
  a duplicate or half-written file behind.
- The driver checks that the row numbers it receives are exactly
  ``0, 1, ..., n - 1`` in that order, and fails the run (leaving ``out``
  untouched) if a row is missing, repeated or out of place, so a bug in
  that chain could never pass silently as a short or doubled output.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pneumo_batch import predictions as columns
from pneumo_batch import storage
from pneumo_batch.errors import InputError, ModelError, PneumoBatchError, require
from pneumo_batch.inputs import InputSource, open_input
from pneumo_batch.inputs.pacs import RESTART_HINT, PacsFetcher
from pneumo_batch.interruptions import deferred, raise_if_stopped
from pneumo_batch.model import ModelArtifact, Scorer, load_model
from pneumo_batch.scoring import (
    PartWriter,
    Predictor,
    Progress,
    ProgressCallback,
    ReusedRows,
    RowContext,
    ScoreRequest,
    ScorerFactory,
    ScoreSummary,
    check_batch_size,
    check_out_folder,
    check_root,
    now,
    row_identity,
    run_metadata,
    score_rows,
)
from pneumo_batch.scoring.engines.ray_session import (
    cluster_cpus,
    domain_errors_from_ray,
    quiet_ray_data_logs,
    ray_session,
    started_quietly,
)

#: The column that carries each row's number in the input through Ray (never written).
ROW_NUMBER_COLUMN = "__pneumo_batch_row"


@dataclass(frozen=True)
class RayScoreSummary(ScoreSummary):
    """What a finished Ray run did; ``out`` is the folder of part files."""

    parts: int
    ray_start_seconds: float
    """Time spent starting or connecting to Ray (included in ``seconds``)."""


class RayEngine:
    """Scores on Ray Data into a folder of part files.

    ``batch_size`` is the rows per Ray block (the unit of work and of
    retries). With ``ray_address`` (``auto``, ``HOST:PORT`` or
    ``ray://HOST:10001``) the run joins that cluster; otherwise it starts a
    local Ray instance on ``workers`` cores (default: every usable core) and
    shuts it down afterwards. If this process is already connected to Ray
    (``ray.is_initialized()``), that instance is used and left running.
    Raises :class:`~pneumo_batch.errors.MissingDependencyError` without Ray.
    """

    def score(self, request: ScoreRequest) -> RayScoreSummary:
        return _score(request, num_cpus=request.workers)


ENGINE = RayEngine()


def _score(request: ScoreRequest, *, num_cpus: int | None) -> RayScoreSummary:
    clock = time.perf_counter()
    batch_size, ray_address, scorer_factory, header_rules = (
        request.batch_size, request.ray_address, request.scorer_factory, request.header_rules)
    require("ray", "ray")
    check_batch_size(batch_size)
    if num_cpus is not None and num_cpus < 1:
        raise InputError(f"num_cpus must be 1 or more, got {num_cpus}")
    if num_cpus is not None and ray_address is not None:
        raise InputError("--workers (num_cpus) sizes a local Ray instance; a cluster at --ray-address has its own CPUs")
    source = open_input(request.input_path, request.pacs)
    root_real = check_root(request.root)
    out_path = check_out_folder(request.out, source)
    artifact = request.model if isinstance(request.model, ModelArtifact) else load_model(request.model)
    run_id, started_at = uuid.uuid4().hex, now().isoformat()
    context = RowContext.for_run(
        source, artifact, root=root_real, run_id=run_id, with_scope_gate=scorer_factory is None, header_rules=header_rules
    )
    if isinstance(context.fetcher, PacsFetcher):  # fetched in the actors; a stopped Ray run keeps nothing
        context = replace(context, fetcher=replace(context.fetcher, resume_hint=RESTART_HINT))
    schema = context.schema
    identity = row_identity(artifact, context, scorer_factory, header_rules)
    reused = ReusedRows.none(schema) if request.overwrite else ReusedRows.from_output(
        request.reuse_from or out_path, source, identity, schema)
    if ROW_NUMBER_COLUMN in source.passthrough.names:
        raise InputError(f"manifest column {ROW_NUMBER_COLUMN!r} is reserved for the Ray engine; rename it")
    model_content = None if scorer_factory is not None else _read_model(artifact)
    if scorer_factory is not None:
        scorer_factory()  # fail here, with the real error, rather than inside every actor
    staging = out_path.with_name(f".{out_path.name}.ray-{run_id[:8]}")
    staging.mkdir()
    storage.make_private(staging)
    try:
        connecting = time.perf_counter()
        remaining = reused.remaining(source)  # none left (a PACS rerun with nothing new): no Ray to start
        session = ray_session(ray_address, num_cpus) if remaining.num_rows else contextlib.nullcontext()
        # A stop by signal waits for a safe point (see pneumo_batch.interruptions): never inside Ray's calls.
        with deferred(), session as ray_module:
            raise_if_stopped()
            ray_start = time.perf_counter() - connecting
            cpus = cluster_cpus(ray_module) if ray_module else 0
            metadata = run_metadata(
                artifact, source, run_id=run_id, started_at=started_at, root=root_real, batch_size=batch_size,
                workers=cpus, run_extra={"engine": "ray", "ray_address": ray_address, "ray_cpus": cpus},
                scope_gate_applied=context.scope_gate is not None, header_rules=header_rules, row_identity=identity,
            )
            shipped = ray_module.put(model_content) if ray_module else model_content
            factory: ScorerFactory = scorer_factory or _ShippedModel(shipped, artifact.scoring_file()[1], artifact.output)
            with PartWriter(staging, schema.with_metadata(metadata)) as writer:
                rows, errors = _run(
                    ray_module, remaining, batch_size, context, factory, cpus, writer, reused,
                    progress=request.progress, clock=clock,
                )
            parts = writer.parts
        storage.replace_folder(staging, out_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RayScoreSummary(
        out=out_path, run_id=run_id, rows=rows, errors=errors, seconds=time.perf_counter() - clock,
        rows_resumed=reused.count, rows_reused=reused.count, parts=parts, ray_start_seconds=ray_start,
    )


# --------------------------------------------------------------------------- the run


def _run(
    ray_module: Any,
    source: InputSource,
    batch_size: int,
    context: RowContext,
    factory: ScorerFactory,
    cpus: int,
    writer: PartWriter,
    reused: ReusedRows,
    *,
    progress: ProgressCallback | None,
    clock: float,
) -> tuple[int, int]:
    """Score every block on Ray, write them in input order (``reused`` rows merged in); return (rows, errors)."""
    total = source.num_rows + reused.count
    if progress is not None:
        progress(Progress(0, total, 0, time.perf_counter() - clock, 0))
    if source.num_rows == 0:
        writer.write(reused.rest())
        return reused.count, 0
    refs = []
    start = 0
    for chunk in source.chunks(batch_size):
        numbers = pa.array(np.arange(start, start + chunk.num_rows, dtype=np.int64))
        refs.append(ray_module.put(chunk.append_column(ROW_NUMBER_COLUMN, numbers)))
        start += chunk.num_rows
    dataset = ray_module.data.from_arrow_refs(refs).map_batches(
        _ScoringActor,
        fn_constructor_kwargs={"context": context, "factory": factory},
        batch_size=None,  # one call per block: blocks are the unit of work and of retries
        batch_format="pyarrow",
        compute=ray_module.data.ActorPoolStrategy(size=max(1, min(cpus, len(refs)))),
        num_cpus=1,
    )
    data_context = dataset.context  # this dataset's own copy: the caller's defaults are untouched
    data_context.execution_options.preserve_order = True
    data_context.enable_progress_bars = False
    data_context.print_on_execution_start = False
    data_context.raise_original_map_exception = True  # a ModelError in an actor arrives as itself

    rows = errors = scored = 0
    batches = iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow"))
    with quiet_ray_data_logs(), domain_errors_from_ray(ray_module), contextlib.closing(batches):
        for batch in started_quietly(batches):
            numbers = batch.column(ROW_NUMBER_COLUMN).to_numpy()
            if not np.array_equal(numbers, np.arange(scored, scored + batch.num_rows)):
                raise PneumoBatchError(
                    f"Ray returned rows {_describe_numbers(numbers)} where rows {scored}.. were expected; nothing was written"
                )
            scored += batch.num_rows
            table = reused.merge(batch.drop_columns([ROW_NUMBER_COLUMN]))
            writer.write(table)
            rows += table.num_rows
            errors += pc.sum(pc.equal(table.column(columns.STATUS), columns.STATUS_ERROR)).as_py() or 0
            if progress is not None:
                progress(Progress(rows, total, errors, time.perf_counter() - clock, rows - scored))
            raise_if_stopped()  # between blocks: closing the iterator then stops Ray Data's execution in order
    if scored != source.num_rows:
        raise PneumoBatchError(f"Ray returned {scored:,} rows for an input of {source.num_rows:,}; nothing was written")
    writer.write(reused.rest())
    return total, errors


class _ScoringActor:
    """The stateful ``map_batches`` class: loads the model once per actor, scores whole blocks."""

    def __init__(self, context: RowContext, factory: ScorerFactory) -> None:
        self._context = context
        self._scorer: Predictor = factory()

    def __call__(self, batch: pa.Table) -> pa.Table:
        numbers = batch.column(ROW_NUMBER_COLUMN).to_numpy()
        # A block is consecutive rows; should Ray ever hand over something else, score each run of
        # consecutive rows with its own first row number, so that ids of the form row-N stay right.
        breaks = np.flatnonzero(np.diff(numbers) != 1) + 1
        scored = []
        for begin, end in zip([0, *breaks], [*breaks, len(numbers)]):
            rows = batch.slice(begin, end - begin)
            table = score_rows(self._context, self._scorer, rows, int(numbers[begin]) if len(numbers) else 0)
            scored.append(table.append_column(ROW_NUMBER_COLUMN, rows.column(ROW_NUMBER_COLUMN)))
        return pa.concat_tables(scored) if scored else batch


@dataclass(frozen=True)
class _ShippedModel:
    """A scorer factory whose ``.tflite`` bytes travel through Ray's object store, not a file path."""

    content: Any
    """``ObjectRef`` of the model's bytes (or the bytes themselves)."""
    sha256: str
    output: str

    def __call__(self) -> Predictor:
        import ray

        content = ray.get(self.content) if isinstance(self.content, ray.ObjectRef) else self.content
        actual = hashlib.sha256(content).hexdigest()
        if actual != self.sha256:
            raise ModelError(f"the model bytes Ray delivered have sha256 {actual}, not {self.sha256}")
        return Scorer(content, output=self.output, num_threads=1)


def _read_model(artifact: ModelArtifact) -> bytes:
    path, sha256 = artifact.scoring_file()
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read the model file: {error.strerror or error}: {path}") from None
    actual = hashlib.sha256(content).hexdigest()
    if actual != sha256:
        raise ModelError(f"{path}: sha256 {actual} does not match the metadata's {sha256}")
    Scorer(content, output=artifact.output, num_threads=1)  # a model LiteRT cannot load fails here, once
    return content


# --------------------------------------------------------------------------- output folder


def _describe_numbers(numbers: np.ndarray) -> str:
    return f"{numbers[0]}..{numbers[-1]}" if len(numbers) else "(none)"
