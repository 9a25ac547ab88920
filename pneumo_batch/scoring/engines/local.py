"""The local engine: worker processes on this machine, resumable after a crash.

The input (see :mod:`pneumo_batch.inputs`) is cut into chunks of ``batch_size`` rows (fewer for a small
input: :func:`~pneumo_batch.scoring.chunk_rows`). Workers (default: one per core) each load the model
once, then score whole chunks with :func:`~pneumo_batch.scoring.score_rows` and write each as a part
file of the work folder (:mod:`pneumo_batch.scoring.workdir`); the main process only streams the input,
hands out chunks and writes the output from the parts, in input order. The output is moved to ``OUT`` by
:func:`os.replace` only when complete, so ``OUT`` is never a partial file. Run the same command again
after a crash (even SIGKILL) and the chunks that have a part are taken from it instead of being scored
again; every row appears exactly once.

Memory is bounded by the number of chunks in flight (``2 * workers + 2``)
times ``batch_size``, plus one output row group, whatever the size of the input.

No process outlives the run. Each worker watches the pipe that
:mod:`multiprocessing` keeps open from the main process
(:func:`multiprocessing.parent_process`'s ``sentinel``): a thread waits on
it and ends the worker the moment the main process is gone, however it died
(SIGKILL included), so no kernel feature beyond a pipe's end-of-file is
needed. ``PR_SET_PDEATHSIG`` was the alternative, but a worker's parent is
the fork server, not the main process, and the fork server only exits once
every holder of its own "alive" pipe, workers included, is gone: with the
workers gone, it sees end-of-file and exits by itself. Workers ignore SIGINT
and SIGTERM (a Ctrl-C or ``systemctl stop`` reaches the whole process
group), so that the main process alone decides what stops: on
:class:`~pneumo_batch.errors.Interrupted` it hands out no more chunks, lets
the running ones finish their parts, ends the workers and releases the
lock; the rerun resumes from the parts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc
import threadpoolctl

from pneumo_batch import __version__, storage
from pneumo_batch import predictions as columns
from pneumo_batch.errors import InputError, Interrupted, PneumoBatchError
from pneumo_batch.inputs import PATH_COLUMN, InputSource, chunk_digest, open_input
from pneumo_batch.interruptions import deferred
from pneumo_batch.model import ModelArtifact, load_model
from pneumo_batch.scope.header import describe_header_rules
from pneumo_batch.scoring import (
    Predictor,
    Progress,
    ProgressCallback,
    ReusedRows,
    RowContext,
    ScoreRequest,
    ScorerFactory,
    ScoreSummary,
    TfliteScorerFactory,
    check_batch_size,
    check_out_file,
    chunk_rows,
    check_root,
    default_workers,
    describe_scorer,
    row_identity,
    run_metadata,
    score_rows,
)
from pneumo_batch.scoring.workdir import WORK_FORMAT, WorkDir, part_name, read_part
from pneumo_batch.scoring.writer import OutputWriter


class LocalEngine:
    """Scores with worker processes on this machine (``workers=0``: in this process)."""

    def score(self, request: ScoreRequest) -> ScoreSummary:
        clock = time.perf_counter()
        check_batch_size(request.batch_size)
        worker_count = default_workers() if request.workers is None else request.workers
        if worker_count < 0:
            raise InputError(f"workers must be 0 or more, got {worker_count}")
        if worker_count:
            _warm_up_workers()
        source = open_input(request.input_path, request.pacs)
        root_real = check_root(request.root)
        out_path = check_out_file(request.out, source, overwrite=request.overwrite)
        model = request.model
        artifact = model if isinstance(model, ModelArtifact) else load_model(model)
        factory = request.scorer_factory or TfliteScorerFactory(*artifact.scoring_file(), artifact.output)
        base = RowContext.for_run(
            source, artifact, root=root_real, run_id="", with_scope_gate=request.scorer_factory is None,
            header_rules=request.header_rules,
        )
        fingerprint = {
            "work_format": WORK_FORMAT,
            "pneumo_batch": __version__,
            "input": source.identity(),
            "root": root_real,
            "scope_rules": describe_header_rules(request.header_rules),
            "batch_size": (chunk := chunk_rows(request.batch_size, source.num_rows, worker_count)),
            "model_sha256": artifact.variant_sha256(),
            "model_version": artifact.version,
            "operating_points": dict(base.operating_points),
            "scorer": describe_scorer(factory),
            "scope_gate": (artifact.scope_gate_entry or {}).get("sha256") if base.scope_gate is not None else None,
        }
        identity = row_identity(artifact, base, request.scorer_factory, request.header_rules)
        reused_rows = 0  # rows taken over from OUT (a PACS rerun), once read
        try:
            with WorkDir.open(out_path, fingerprint) as work:
                reused = ReusedRows.none(base.schema) if request.overwrite else ReusedRows.from_output(
                    request.reuse_from or out_path, source, identity, base.schema)  # under the lock: OUT holds still
                reused_rows = reused.count
                context = _ChunkContext(
                    **{**vars(base), "run_id": work.run_id}, parts_dir=str(work.parts), scorer_factory=factory
                )
                metadata = run_metadata(
                    artifact, source, run_id=work.run_id, started_at=work.started_at, root=root_real,
                    batch_size=request.batch_size, workers=worker_count,
                    scope_gate_applied=base.scope_gate is not None, header_rules=request.header_rules,
                    row_identity=identity,
                )
                with _executor(worker_count, context) as executor:
                    rows, errors, resumed = _run(
                        reused.remaining(source), chunk, work, executor,
                        context.schema.with_metadata(metadata), reused,
                        window=2 * max(worker_count, 1) + 2, progress=request.progress, clock=clock,
                    )
                os.replace(work.final, out_path)
                storage.sync_folder(out_path.parent)
                work.remove()
        except Interrupted as stop:
            # Wherever it landed, also while the work folder was being set up: the executor has ended its
            # workers, and what they finished is on disk.
            stop.rows_done, stop.rows_total = WorkDir(out_path).rows_in_parts() + reused_rows, source.num_rows
            raise
        return ScoreSummary(
            out=out_path, run_id=work.run_id, rows=rows, errors=errors,
            seconds=time.perf_counter() - clock, rows_resumed=resumed, rows_reused=reused.count,
        )


ENGINE = LocalEngine()


def _run(
    source: InputSource,
    batch_size: int,
    work: WorkDir,
    executor: _Executor,
    schema: pa.Schema,
    reused: ReusedRows,
    *,
    window: int,
    progress: ProgressCallback | None,
    clock: float,
) -> tuple[int, int, int]:
    """Score or take every chunk, write them in order (``reused`` rows merged in); return (rows, errors, rows resumed)."""
    rows = errors = resumed = 0
    total = source.num_rows + reused.count
    pending: deque[_Pending] = deque()
    done_parts = work.existing_parts()

    def write(writer: OutputWriter, table: pa.Table, taken: int) -> None:
        nonlocal rows, errors, resumed
        writer.write(table)
        rows += table.num_rows
        errors += pc.sum(pc.equal(table.column(columns.STATUS), columns.STATUS_ERROR)).as_py() or 0
        resumed += taken
        if progress is not None:
            progress(Progress(rows, total, errors, time.perf_counter() - clock, resumed))

    def emit(writer: OutputWriter) -> None:
        item = pending.popleft()
        table = item.table(executor)
        merged = reused.merge(table)
        write(writer, merged, merged.num_rows - (0 if item.resumed else table.num_rows))

    if progress is not None:
        progress(Progress(0, total, 0, time.perf_counter() - clock, 0))
    with OutputWriter(work.final, schema) as writer:
        for index, chunk in enumerate(source.chunks(batch_size)):
            digest = chunk_digest(chunk.column(PATH_COLUMN).to_pylist()) if source.kind != "manifest" else None
            task = _ChunkTask(index=index, start=index * batch_size, name=part_name(index, digest), rows=chunk)
            finished = task.name in done_parts
            pending.append(_Pending(task, work.parts / task.name, None if finished else executor.submit(task)))
            while len(pending) > window:
                emit(writer)
        while pending:
            emit(writer)
        rest = reused.rest()
        if rest.num_rows:
            write(writer, rest, rest.num_rows)
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
        table = read_part(self.part, self.task.rows.num_rows)
        if table is None and self.future is None:
            # A part damaged by something worse than a kill (a power cut): score it again.
            self.future = executor.submit(self.task)
            _wait(self.future)
            table = read_part(self.part, self.task.rows.num_rows)
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
        # The pool starts its workers here, on demand. A signal must not cut that half-way: a worker
        # whose pid the pool never recorded is not waited for when the pool stops, and it then fails
        # to open the pool's semaphores, already unlinked by the exiting main process, with a traceback.
        with deferred():
            return self._pool.submit(_score_in_worker, task)

    def close(self) -> None:
        """Cancel the chunks not started, let the running ones finish their parts, end the workers."""
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        except BrokenProcessPool:  # a worker was killed with the run (a signal to the whole group)
            pass


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
            with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):  # as _init_worker, for this chunk only
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
_WORKER_PRELOAD = ["pneumo_batch.scoring.engines.local", "ai_edge_litert.interpreter"]


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

        # The fork server imports _WORKER_PRELOAD before it ignores SIGINT itself, so a Ctrl-C to the process
        # group in that second printed its KeyboardInterrupt traceback. An ignored SIGINT is inherited across
        # exec (a blocked one is not: the spawn resets the mask), and Python then keeps ignoring it; this
        # process ignores it only for the few milliseconds of the fork and exec.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, previous)


_worker_context: _ChunkContext | None = None
_worker_scorer: Predictor | None = None


def _init_worker(context: _ChunkContext) -> None:
    global _worker_context
    _worker_context = context
    for stop in (signal.SIGINT, signal.SIGTERM):  # the main process decides when to stop (see the module doc)
        signal.signal(stop, signal.SIG_IGN)
    # numpy's BLAS on this one thread: OpenBLAS's idle threads spin, ~90 us of CPU a 28 px image, ~1 ms a full-size one
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    _end_with_parent()


def _end_with_parent() -> None:
    """End this worker as soon as the main process is gone (its pipe to us reaches end-of-file)."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch(sentinel: int) -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)  # nobody is left to take the result: stop mid-chunk, its part is never half-written

    threading.Thread(target=watch, args=(parent.sentinel,), name="end-with-parent", daemon=True).start()


def _score_in_worker(task: _ChunkTask) -> int:
    global _worker_scorer
    assert _worker_context is not None, "worker used without its initializer"
    if _worker_scorer is None:  # here, not in the initializer, so a failure reaches the caller as itself
        _worker_scorer = _worker_context.scorer_factory()
    return _score_and_write(_worker_context, _worker_scorer, task)


def _score_and_write(context: _ChunkContext, scorer: Predictor, task: _ChunkTask) -> int:
    """Score a chunk into its part file (written atomically); return its row count."""
    table = score_rows(context, scorer, task.rows, task.start)
    storage.write_arrow(Path(context.parts_dir) / task.name, table)
    return table.num_rows
