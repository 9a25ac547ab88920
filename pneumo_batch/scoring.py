"""Batch scoring: images in, one Parquet file of predictions out, one row per input row.

:func:`score_batch` is the library behind ``pneumo-batch score``. The input
(see :mod:`pneumo_batch.inputs`) is cut into chunks of ``batch_size`` rows.
Worker processes (default: one per core) each load the model once, then for
every chunk decode its images with :func:`~pneumo_batch.preprocess.decode_image`,
run the interpreter on the whole chunk, compute the monitoring features, and
return the chunk's finished rows as one Arrow table; the main process only
streams the input, hands out chunks and writes.

Crash safety and resuming. Everything in flight lives in a work folder
beside the output, ``OUT.partial/``: a ``state.json`` fingerprint of the
input, model and options, one ``parts/part-NNNNNNNN*.arrow`` (Arrow IPC) per
finished chunk (written under a temporary name, then renamed, so a part that
exists is complete), and the output under construction. The output is assembled
from the chunks in input order and moved to ``OUT`` by :func:`os.replace`
only when complete, so ``OUT`` is never a partial file. Run the same command
again after a crash (even SIGKILL) and the chunks that have a part are taken
from it instead of being scored again; every row appears exactly once. A
changed input, model or ``batch_size`` starts over. A lock on the work
folder keeps a second run from writing the same output at the same time.

Bad rows never stop the batch: any failure to find, read or decode one
image, including a path outside ``root``, becomes an ``error`` row with a
one-line reason. Scores do not depend on ``workers`` or ``batch_size``
(the interpreter always runs fixed blocks, see :class:`~pneumo_batch.model.Scorer`).

Memory is bounded by the number of chunks in flight (``2 * workers + 2``)
times ``batch_size``, plus one output row group (:data:`ROW_GROUP_ROWS`),
whatever the size of the input.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import stat
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pneumo_batch import __version__
from pneumo_batch import predictions as columns
from pneumo_batch.errors import ImageError, InputError, JobLockedError, ModelError, PneumoBatchError
from pneumo_batch.features import NUMERIC_IMAGE_FEATURES, intensity_features
from pneumo_batch.inputs import ID_COLUMN, PATH_COLUMN, InputSource, chunk_digest, open_input, resolve_path
from pneumo_batch.model import ModelArtifact, Scorer, load_model
from pneumo_batch.preprocess import MODEL_INPUT_SIZE, decode_image, pixels_to_model_input

#: Rows per chunk: the unit of work of a worker, of resuming and of progress.
DEFAULT_BATCH_SIZE = 1024
#: Largest batch size accepted; memory grows with it.
MAX_BATCH_SIZE = 65_536
#: Rows per row group of the output file.
ROW_GROUP_ROWS = 65_536
#: Files larger than this are refused before being read (no X-ray is near it).
MAX_FILE_BYTES = 1 << 30
#: The work folder is the output's path with this suffix.
WORK_SUFFIX = ".partial"
#: Bump when the layout of parts changes, so that old work folders are discarded.
_WORK_FORMAT = 1


class Engine(str, Enum):
    """Where scoring runs: worker processes on this machine, or Ray Data (:mod:`pneumo_batch.ray_engine`)."""

    LOCAL = "local"
    RAY = "ray"


class Predictor(Protocol):
    """What scoring needs of a model: probabilities for a float input stack."""

    def predict(self, model_input: np.ndarray) -> np.ndarray:
        """Float32 probabilities (N,) for float32 input (N, 28, 28, 1)."""
        ...


ScorerFactory = Callable[[], Predictor]
"""Makes a :class:`Predictor`; called once in each worker process, so it must pickle."""


@dataclass(frozen=True)
class TfliteScorerFactory:
    """Loads a ``.tflite`` file into a LiteRT :class:`~pneumo_batch.model.Scorer`, checking its sha256."""

    model_file: Path
    sha256: str
    output: str = "probability"

    def __call__(self) -> Predictor:
        content = self.model_file.read_bytes()
        actual = hashlib.sha256(content).hexdigest()
        if actual != self.sha256:
            raise ModelError(f"{self.model_file}: sha256 {actual} does not match the metadata's {self.sha256}")
        return Scorer(content, output=self.output, num_threads=1)


@dataclass(frozen=True)
class Progress:
    """How far a run is; handed to the ``progress`` callback after every chunk."""

    rows_done: int
    rows_total: int
    errors: int
    seconds: float
    rows_resumed: int
    """Rows taken from an earlier, interrupted run rather than scored now."""


@dataclass(frozen=True)
class ScoreSummary:
    """What a finished run did."""

    out: Path
    run_id: str
    rows: int
    errors: int
    seconds: float
    rows_resumed: int

    @property
    def rows_scored(self) -> int:
        """Rows scored by this run (not taken from an earlier one)."""
        return self.rows - self.rows_resumed

    @property
    def images_per_second(self) -> float:
        return self.rows_scored / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[Progress], None]


def score_batch(
    input_path: str | Path,
    out: str | Path,
    *,
    model: ModelArtifact | str | Path | None = None,
    workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    root: str | Path | None = None,
    progress: ProgressCallback | None = None,
    scorer_factory: ScorerFactory | None = None,
) -> ScoreSummary:
    """Score every image of ``input_path`` (a directory or a Parquet manifest) into ``out``.

    ``model`` is a loaded artifact or a model directory (default: the
    shipped default model). ``workers`` is the number of worker processes
    (default: every usable core; 0 scores in this process). ``root`` confines
    every path. ``scorer_factory`` replaces the model's ``.tflite`` (tests
    use a fake); the artifact still supplies thresholds and metadata.

    Raises :class:`InputError` for an unusable input or option,
    :class:`ModelError` for an unusable model and :class:`JobLockedError`
    when another run is writing ``out``; a bad image is never an exception.
    """
    clock = time.perf_counter()
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InputError(f"batch size must be between 1 and {MAX_BATCH_SIZE:,}, got {batch_size}")
    worker_count = default_workers() if workers is None else workers
    if worker_count < 0:
        raise InputError(f"workers must be 0 or more, got {worker_count}")
    if worker_count:
        _warm_up_workers()
    source = open_input(input_path)
    root_real = _check_root(root)
    out_path = _check_out(out, source)
    artifact = model if isinstance(model, ModelArtifact) else load_model(model)
    factory = scorer_factory or TfliteScorerFactory(artifact.variant_path(), artifact.variant_sha256(), artifact.output)
    points = tuple((point.name, point.threshold) for point in artifact.operating_points)
    schema = output_schema([name for name, _ in points], source.passthrough)
    fingerprint = {
        "work_format": _WORK_FORMAT,
        "pneumo_batch": __version__,
        "input": source.identity(),
        "root": root_real,
        "batch_size": batch_size,
        "model_sha256": artifact.variant_sha256(),
        "model_version": artifact.version,
        "operating_points": dict(points),
        "scorer": _describe(factory),
    }
    with _WorkDir.open(out_path, fingerprint) as work:
        context = _ChunkContext(
            base_dir=str(source.base_dir),
            root=root_real,
            source_column=source.source_column,
            schema=schema,
            operating_points=points,
            model_sha256=artifact.variant_sha256(),
            model_version=artifact.version,
            run_id=work.run_id,
            parts_dir=str(work.parts),
            scorer_factory=factory,
        )
        metadata = _file_metadata(artifact, source, work, root_real, batch_size, worker_count)
        with _executor(worker_count, context) as executor:
            rows, errors, resumed = _run(
                source, batch_size, work, executor, schema.with_metadata(metadata),
                window=2 * max(worker_count, 1) + 2, progress=progress, clock=clock,
            )
        os.replace(work.final, out_path)
        work.remove()
    return ScoreSummary(
        out=out_path, run_id=work.run_id, rows=rows, errors=errors,
        seconds=time.perf_counter() - clock, rows_resumed=resumed,
    )


def default_workers() -> int:
    """One worker per core this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def work_dir_for(out: str | Path) -> Path:
    """The work folder a run writing ``out`` keeps its parts in."""
    out = Path(out).absolute()
    return out.with_name(out.name + WORK_SUFFIX)


def output_schema(operating_points: list[str], passthrough: pa.Schema) -> pa.Schema:
    """The columns of a predictions file, in order, for these operating points and pass-through columns."""
    fields = [
        pa.field(columns.IMAGE_ID, pa.string()),
        pa.field(columns.PATH, pa.string()),
        pa.field(columns.STATUS, pa.string(), nullable=False),
        pa.field(columns.ERROR, pa.string()),
        pa.field(columns.SCORE, pa.float32()),
        *(pa.field(columns.prediction_column(name), pa.bool_()) for name in operating_points),
        *(pa.field(columns.threshold_column(name), pa.float64()) for name in operating_points),
        pa.field(columns.MODEL_SHA256, pa.string()),
        pa.field(columns.MODEL_VERSION, pa.string()),
        pa.field(columns.RUN_ID, pa.string()),
        pa.field(columns.SCORED_AT, pa.timestamp("us", tz="UTC")),
        *(pa.field(name, pa.float32()) for name in NUMERIC_IMAGE_FEATURES),
        pa.field("img_width", pa.int32()),
        pa.field("img_height", pa.int32()),
        pa.field("img_aspect_ratio", pa.float32()),
        pa.field("img_mode", pa.string()),
        pa.field("img_format", pa.string()),
    ]
    taken = {field.name for field in fields}
    clashes = [name for name in passthrough.names if name in taken]
    if clashes:
        raise InputError(
            f"manifest columns {', '.join(clashes)} clash with output columns of the same name; rename or drop them"
        )
    return pa.schema(fields + [field.remove_metadata() for field in passthrough])


# --------------------------------------------------------------------------- the run


def _run(
    source: InputSource,
    batch_size: int,
    work: _WorkDir,
    executor: _Executor,
    schema: pa.Schema,
    *,
    window: int,
    progress: ProgressCallback | None,
    clock: float,
) -> tuple[int, int, int]:
    """Score or take every chunk, write them in order; return (rows, errors, rows resumed)."""
    rows = errors = resumed = 0
    pending: deque[_Pending] = deque()
    done_parts = work.existing_parts()

    def emit(writer: _OutputWriter) -> None:
        nonlocal rows, errors, resumed
        item = pending.popleft()
        table = item.table(executor)
        writer.write(table)
        rows += table.num_rows
        errors += pc.sum(pc.equal(table.column(columns.STATUS), columns.STATUS_ERROR)).as_py() or 0
        resumed += table.num_rows if item.resumed else 0
        if progress is not None:
            progress(Progress(rows, source.num_rows, errors, time.perf_counter() - clock, resumed))

    if progress is not None:
        progress(Progress(0, source.num_rows, 0, time.perf_counter() - clock, 0))
    with _OutputWriter(work.final, schema) as writer:
        for index, chunk in enumerate(source.chunks(batch_size)):
            digest = chunk_digest(chunk.column(PATH_COLUMN).to_pylist()) if source.kind == "directory" else None
            task = _ChunkTask(index=index, start=index * batch_size, name=_part_name(index, digest), rows=chunk)
            finished = task.name in done_parts
            pending.append(_Pending(task, work.parts / task.name, None if finished else executor.submit(task)))
            while len(pending) > window:
                emit(writer)
        while pending:
            emit(writer)
    return rows, errors, resumed


@dataclass
class _Pending:
    """A chunk on its way to the output: its part is on disk, or a worker is making it."""

    task: _ChunkTask
    part: Path
    future: Future[int] | None
    """None when the part was left by an earlier run."""

    @property
    def resumed(self) -> bool:
        return self.future is None

    def table(self, executor: _Executor) -> pa.Table:
        if self.future is not None:
            _wait(self.future)
        table = _read_part(self.part, self.task.rows.num_rows)
        if table is None and self.future is None:
            # A part damaged by something worse than a kill (a power cut): score it again.
            self.future = executor.submit(self.task)
            _wait(self.future)
            table = _read_part(self.part, self.task.rows.num_rows)
        if table is None:
            raise PneumoBatchError(f"the part just written cannot be read back: {self.part}")
        return table


def _wait(future: Future[int]) -> None:
    try:
        future.result()
    except BrokenProcessPool:
        raise PneumoBatchError(
            "a worker process died (out of memory, or a crash while decoding an image); "
            "run the same command again to resume"
        ) from None


def _read_part(path: Path, rows: int) -> pa.Table | None:
    """A finished chunk, memory-mapped; None if it is missing, damaged or of the wrong length."""
    try:
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    except (OSError, pa.ArrowException):
        return None
    return table if table.num_rows == rows else None


class _OutputWriter:
    """Appends chunk tables to the output under construction, in row groups of :data:`ROW_GROUP_ROWS`."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._path = path
        self._schema = schema
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._writer = pq.ParquetWriter(path, schema)

    def __enter__(self) -> _OutputWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self._flush()
            self._writer.close()
            with open(self._path, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            self._writer.close()

    def write(self, table: pa.Table) -> None:
        self._buffer.append(table.replace_schema_metadata(self._schema.metadata))
        self._buffered += table.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=ROW_GROUP_ROWS)
            self._buffer, self._buffered = [], 0


# --------------------------------------------------------------------------- the work folder


class _WorkDir:
    """``OUT.partial/``: the fingerprint, the finished parts, the output being written, and a lock."""

    def __init__(self, out: Path) -> None:
        self.path = work_dir_for(out)
        self.parts = self.path / "parts"
        self.state = self.path / "state.json"
        self.final = self.path / f"{out.name}.tmp"
        self.run_id = ""
        self.started_at = ""
        self._lock: int | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, out: Path, fingerprint: dict[str, Any]) -> Iterator[_WorkDir]:
        work = cls(out)
        work.parts.mkdir(parents=True, exist_ok=True)
        work._acquire_lock(out)
        try:
            work._load_or_reset(fingerprint)
            yield work
        finally:
            work._release_lock()

    def existing_parts(self) -> set[str]:
        return {path.name for path in self.parts.glob("part-*.arrow")}

    def remove(self) -> None:
        self._release_lock()
        shutil.rmtree(self.path, ignore_errors=True)

    def _load_or_reset(self, fingerprint: dict[str, Any]) -> None:
        state = _read_json(self.state)
        for stale in self.parts.glob(".*"):
            stale.unlink(missing_ok=True)
        self.final.unlink(missing_ok=True)
        if state is not None and state.get("fingerprint") == json.loads(json.dumps(fingerprint)):
            self.run_id, self.started_at = str(state["run_id"]), str(state["started_at"])
            return
        for part in self.parts.iterdir():
            part.unlink()
        self.run_id = uuid.uuid4().hex
        self.started_at = _now().isoformat()
        _write_json(self.state, {"fingerprint": fingerprint, "run_id": self.run_id, "started_at": self.started_at})

    def _acquire_lock(self, out: Path) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before this existed
            return
        descriptor = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise JobLockedError(f"another pneumo-batch run is writing {out} (lock held on {self.path})") from None
        self._lock = descriptor

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _part_name(index: int, digest: str | None) -> str:
    return f"part-{index:08d}-{digest}.arrow" if digest else f"part-{index:08d}.arrow"


# --------------------------------------------------------------------------- workers


@dataclass(frozen=True)
class RowContext:
    """What :func:`score_rows` needs besides the rows: shared by every chunk of a run, on any engine."""

    base_dir: str
    """What relative paths are relative to (:attr:`InputSource.base_dir`)."""
    root: str | None
    """The real path every image must stay within, or None."""
    source_column: str
    schema: pa.Schema
    """The output's columns (:func:`output_schema`), without key-value metadata."""
    operating_points: tuple[tuple[str, float], ...]
    model_sha256: str
    model_version: str
    run_id: str


@dataclass(frozen=True)
class _ChunkContext(RowContext):
    """What every chunk of a local run shares; sent to each worker once."""

    parts_dir: str
    scorer_factory: ScorerFactory


@dataclass(frozen=True)
class _ChunkTask:
    index: int
    start: int
    """Row number of the chunk's first row in the input."""
    name: str
    """File name of the chunk's part."""
    rows: pa.Table


class _Executor(Protocol):
    def submit(self, task: _ChunkTask) -> Future[int]: ...


class _PoolExecutor:
    """Worker processes, each loading the model once; see :func:`_process_context` for how they start."""

    def __init__(self, workers: int, context: _ChunkContext) -> None:
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_process_context(),
            initializer=_init_worker,
            initargs=(context,),
        )

    def submit(self, task: _ChunkTask) -> Future[int]:
        return self._pool.submit(_score_in_worker, task)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _InlineExecutor:
    """Scores chunks in this process (``workers=0``): for debugging and tiny inputs."""

    def __init__(self, context: _ChunkContext) -> None:
        self._context = context
        self._scorer: Predictor | None = None

    def submit(self, task: _ChunkTask) -> Future[int]:
        future: Future[int] = Future()
        try:
            if self._scorer is None:
                self._scorer = self._context.scorer_factory()
            future.set_result(_score_and_write(self._context, self._scorer, task))
        except Exception as error:  # re-raised by future.result(), as a pool would
            future.set_exception(error)
        return future

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _executor(workers: int, context: _ChunkContext) -> Iterator[_Executor]:
    executor: _PoolExecutor | _InlineExecutor = (
        _InlineExecutor(context) if workers == 0 else _PoolExecutor(workers, context)
    )
    try:
        yield executor
    finally:
        executor.close()


#: What the fork server imports once, so that every worker forked from it starts warm.
_WORKER_PRELOAD = ["pneumo_batch.scoring", "ai_edge_litert.interpreter"]


def _process_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where there is one, else ``spawn``; never a plain fork of this (threaded) process.

    The fork server is a fresh, single-threaded process that imports only
    :data:`_WORKER_PRELOAD`, so workers start in milliseconds and never
    re-import the caller's ``__main__`` (a CLI with all its commands), which
    ``spawn`` would do in every worker.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_WORKER_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _warm_up_workers() -> None:
    """Start the fork server now, so that its imports overlap the caller's set-up."""
    context = _process_context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


_worker_context: _ChunkContext | None = None
_worker_scorer: Predictor | None = None


def _init_worker(context: _ChunkContext) -> None:
    global _worker_context
    _worker_context = context


def _score_in_worker(task: _ChunkTask) -> int:
    global _worker_scorer
    assert _worker_context is not None, "worker used without its initializer"
    if _worker_scorer is None:  # here, not in the initializer, so a failure reaches the caller as itself
        _worker_scorer = _worker_context.scorer_factory()
    return _score_and_write(_worker_context, _worker_scorer, task)


def _score_and_write(context: _ChunkContext, scorer: Predictor, task: _ChunkTask) -> int:
    """Score a chunk into its part file (under a temporary name, then renamed); return its row count."""
    table = score_chunk(context, scorer, task)
    path = Path(context.parts_dir) / task.name
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pa.ipc.new_file(str(temporary), table.schema) as writer:
        writer.write_table(table)
    os.replace(temporary, path)
    return table.num_rows


def score_chunk(context: _ChunkContext, scorer: Predictor, task: _ChunkTask) -> pa.Table:
    """Decode, score and describe one chunk: its rows of the output, in order."""
    return score_rows(context, scorer, task.rows, task.start)


def score_rows(context: RowContext, scorer: Predictor, table: pa.Table, start: int) -> pa.Table:
    """Decode, score and describe consecutive input rows: their rows of the output, in order.

    ``table`` holds rows as :meth:`InputSource.chunks` yields them (any number,
    other columns ignored) and ``start`` is the first one's row number in the
    input (it names rows without an id: ``row-N``). Pure apart from reading
    the image files: the local and the Ray engine both score through it, so
    their rows, statuses, reasons and scores are the same.
    """
    count = table.num_rows
    from_paths = context.source_column == PATH_COLUMN
    sources = table.column(context.source_column).to_pylist()
    id_column = table.column(ID_COLUMN)
    if from_paths:
        shown_column = _joined(context.base_dir, table.column(PATH_COLUMN))
        shown = shown_column.to_pylist()
        id_column = pc.coalesce(id_column, pc.if_else(pc.equal(table.column(PATH_COLUMN), ""), None,
                                                      table.column(PATH_COLUMN)))
    else:
        shown_column = table.column(PATH_COLUMN) if PATH_COLUMN in table.column_names else pa.nulls(count, pa.string())
        shown = []
    ids = id_column.to_pylist()
    if id_column.null_count:
        ids = [f"row-{start + row}" if value is None else value for row, value in enumerate(ids)]
    pixels = np.zeros((count, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), dtype=np.uint8)
    ok = np.zeros(count, dtype=bool)
    errors: list[str | None] = [None] * count
    widths: list[int | None] = [None] * count
    heights: list[int | None] = [None] * count
    modes: list[str | None] = [None] * count
    formats: list[str | None] = [None] * count
    root = context.root
    for row, value in enumerate(sources):
        try:
            if value is None:
                raise ImageError("path is null" if from_paths else "image is null")
            if from_paths:
                target = shown[row] if root is None else resolve_path(value, context.base_dir, root)
                if not value:
                    raise ImageError("empty path")
                decoded = decode_image(_read_file(target))
            else:
                decoded = decode_image(value)
        except ImageError as error:
            errors[row] = str(error)
            continue
        except Exception as error:  # one bad row must never stop the batch
            errors[row] = f"unexpected {type(error).__name__}: {_one_line(error)}"
            continue
        pixels[row] = decoded.pixels
        ok[row] = True
        widths[row], heights[row] = decoded.width, decoded.height
        modes[row], formats[row] = decoded.mode, decoded.format

    failed = ~ok
    scores = np.zeros(count, dtype=np.float32)
    features = {name: np.zeros(count, dtype=np.float32) for name in NUMERIC_IMAGE_FEATURES}
    good = int(ok.sum())
    if good:
        stack = pixels[ok]
        predicted = np.asarray(scorer.predict(pixels_to_model_input(stack)), dtype=np.float32).reshape(-1)
        if predicted.shape != (good,):
            raise ModelError(f"the model returned {predicted.shape[0]} scores for {good} images")
        scores[ok] = predicted
        for name, values in intensity_features(stack).items():
            features[name][ok] = values

    width_array = pa.array(widths, pa.int32())
    height_array = pa.array(heights, pa.int32())
    aspect = pc.cast(pc.divide(pc.cast(width_array, pa.float64()), pc.cast(height_array, pa.float64())), pa.float32())
    scored_at = pa.scalar(_now(), pa.timestamp("us", tz="UTC"))
    points = context.operating_points
    arrays: list[pa.Array] = [
        pa.array(ids, pa.string()),
        shown_column.combine_chunks() if isinstance(shown_column, pa.ChunkedArray) else shown_column,
        pc.if_else(pa.array(ok), columns.STATUS_OK, columns.STATUS_ERROR),
        pa.array(errors, pa.string()),
        pa.array(scores, mask=failed),
        *(pa.array(scores.astype(np.float64) >= threshold, mask=failed) for _, threshold in points),
        *(pa.repeat(pa.scalar(threshold, pa.float64()), count) for _, threshold in points),
        pa.repeat(pa.scalar(context.model_sha256, pa.string()), count),
        pa.repeat(pa.scalar(context.model_version, pa.string()), count),
        pa.repeat(pa.scalar(context.run_id, pa.string()), count),
        pa.repeat(scored_at, count),
        *(pa.array(features[name], mask=failed) for name in NUMERIC_IMAGE_FEATURES),
        width_array,
        height_array,
        aspect,
        pa.array(modes, pa.string()),
        pa.array(formats, pa.string()),
    ]
    passthrough = context.schema.names[len(arrays) :]
    arrays += [table.column(name).combine_chunks() for name in passthrough]
    return pa.Table.from_arrays(arrays, schema=context.schema)


def _joined(base_dir: str, paths: pa.ChunkedArray) -> pa.Array:
    """``os.path.join(base_dir, path)`` for a column of paths, at once (nulls stay null)."""
    if os.sep != "/" or os.altsep:
        values = paths.to_pylist()
        return pa.array([None if value is None else os.path.join(base_dir, value) for value in values], pa.string())
    prefix = base_dir if base_dir.endswith("/") else base_dir + "/"
    combined = paths.combine_chunks()
    return pc.if_else(pc.starts_with(combined, "/"), combined, pc.binary_join_element_wise(prefix, combined, ""))


def _read_file(path: str) -> bytes:
    """A file's bytes, or :class:`ImageError` naming why not (same wording as ``decode_image``)."""
    try:
        # O_NONBLOCK: a FIFO in a manifest must not hang the worker (no effect on regular files).
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ImageError(f"is a directory, not an image file: {path}") from None
    except OSError as error:
        raise ImageError(f"cannot open file: {error.strerror or error}: {path}") from None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise ImageError(f"is a directory, not an image file: {path}")
        if not stat.S_ISREG(status.st_mode):
            raise ImageError(f"not a regular file: {path}")
        if status.st_size > MAX_FILE_BYTES:
            raise ImageError(f"file of {status.st_size:,} bytes exceeds the limit of {MAX_FILE_BYTES:,}: {path}")
        # One read of the size fstat gave (plus one byte, to notice a file that grew meanwhile).
        data = os.read(descriptor, status.st_size + 1)
        if len(data) > status.st_size:
            rest = [data]
            while block := os.read(descriptor, 1 << 20):
                rest.append(block)
            data = b"".join(rest)
    except OSError as error:
        raise ImageError(f"cannot read file: {error.strerror or error}: {path}") from None
    finally:
        os.close(descriptor)
    if not data:
        raise ImageError(f"empty file: {path}")
    return data


# --------------------------------------------------------------------------- small helpers


def _check_root(root: str | Path | None) -> str | None:
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        raise InputError(f"--root is not a directory: {path}")
    return os.path.realpath(path)


def _check_out(out: str | Path, source: InputSource) -> Path:
    path = Path(out).expanduser().absolute()
    if path.is_dir():
        raise InputError(f"--out is a directory; give a file name: {path}")
    if path.exists() and source.kind == "manifest" and path.samefile(source.location):
        raise InputError(f"--out would overwrite the input manifest: {path}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create the folder of --out: {error.strerror or error}: {path.parent}") from None
    return path


def _file_metadata(
    artifact: ModelArtifact,
    source: InputSource,
    work: _WorkDir,
    root: str | None,
    batch_size: int,
    workers: int,
) -> dict[bytes, bytes]:
    return run_metadata(
        artifact, source, run_id=work.run_id, started_at=work.started_at, root=root, batch_size=batch_size, workers=workers
    )


def run_metadata(
    artifact: ModelArtifact,
    source: InputSource,
    *,
    run_id: str,
    started_at: str,
    root: str | None,
    batch_size: int,
    workers: int,
    run_extra: dict[str, Any] | None = None,
) -> dict[bytes, bytes]:
    """The Parquet key-value metadata of a predictions file: thresholds, model and run settings.

    ``run_extra`` adds entries to the ``run`` section (the Ray engine names itself there).
    """
    points = artifact.operating_points
    description = {
        "run_id": run_id,
        "started_at": started_at,
        "pneumo_batch_version": __version__,
        "thresholds": {point.name: point.threshold for point in points},
        "operating_points": {point.name: {"threshold": point.threshold, "rule": point.rule} for point in points},
        "model": {
            "name": artifact.name,
            "version": artifact.version,
            "variant": artifact.default_variant,
            "sha256": artifact.variant_sha256(),
            "directory": str(artifact.directory),
            "metadata": artifact.metadata,
        },
        "run": {
            "input": str(source.location),
            "input_kind": source.kind,
            "input_rows": source.num_rows,
            "root": root,
            "batch_size": batch_size,
            "workers": workers,
            **(run_extra or {}),
        },
    }
    return {columns.PARQUET_METADATA_KEY: json.dumps(description, default=str).encode()}


def read_run_metadata(path: str | Path) -> dict[str, Any]:
    """The run description a predictions file carries under :data:`~pneumo_batch.predictions.PARQUET_METADATA_KEY`."""
    metadata = pq.read_schema(path).metadata or {}
    if columns.PARQUET_METADATA_KEY not in metadata:
        raise InputError(f"{path}: not a pneumo-batch predictions file (no {columns.PARQUET_METADATA_KEY.decode()} metadata)")
    return dict(json.loads(metadata[columns.PARQUET_METADATA_KEY]))


def _describe(factory: ScorerFactory) -> str:
    if isinstance(factory, TfliteScorerFactory):
        return f"tflite:{factory.sha256}:{factory.output}"
    if isinstance(factory, functools.partial):
        factory = factory.func
    named = factory if hasattr(factory, "__qualname__") else type(factory)
    return f"{named.__module__}.{named.__qualname__}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(temporary, path)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _one_line(error: BaseException) -> str:
    return (" ".join(str(error).split()) or type(error).__name__)[:300]

