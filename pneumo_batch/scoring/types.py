"""The vocabulary of scoring, shared by :func:`~pneumo_batch.scoring.score_batch` and every engine.

What a model must do (:class:`Predictor`), how an engine makes one
(:data:`ScorerFactory`), how a run reports (:class:`Progress`,
:class:`ScoreSummary`), and the checks every engine applies to its options.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pneumo_batch.errors import InputError, ModelError
from pneumo_batch.model import ModelArtifact, Scorer
from pneumo_batch.scope.header import DEFAULT_HEADER_RULES, HeaderScopeRules

if TYPE_CHECKING:
    from pneumo_batch.inputs.pacs import PacsOptions


#: Rows per chunk: the unit of work of a worker, of resuming and of progress.
DEFAULT_BATCH_SIZE = 1024
#: Largest batch size accepted; memory grows with it.
MAX_BATCH_SIZE = 65_536
#: Rows per row group of the output file.
ROW_GROUP_ROWS = 65_536


class Engine(str, Enum):
    """Where scoring runs: worker processes on this machine, or Ray Data (see :mod:`pneumo_batch.scoring.engines`)."""

    LOCAL = "local"
    RAY = "ray"

    @classmethod
    def parse(cls, value: Engine | str) -> Engine:
        """``value`` as an engine, or :class:`InputError` naming the known ones."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(member.value for member in cls)
            raise InputError(f"engine must be one of {known}, got {value!r}") from None


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
    """Rows taken from an earlier run (interrupted, or from a PACS already in the output) rather than scored now."""


@dataclass(frozen=True)
class ScoreSummary:
    """What a finished run did."""

    out: Path
    run_id: str
    rows: int
    errors: int
    seconds: float
    rows_resumed: int
    """Rows taken from an earlier run rather than scored now (an interrupted run's parts, and ``rows_reused``)."""
    rows_reused: int = field(default=0, kw_only=True)
    """PACS input: rows of instances the earlier output already held, neither fetched nor scored again."""
    reports_sent: int | None = field(default=None, kw_only=True)
    """DICOM SRs this run stored in the PACS (``--send-results``), else None (keyword-only, so engines may extend the class)."""
    reports_present: int | None = field(default=None, kw_only=True)
    """With ``--send-results``: the reports the PACS already held from an earlier run (not sent again)."""
    reports_not_sent: int | None = field(default=None, kw_only=True)
    """With ``--send-results``: in-scope films that got no report (their ``report`` column says why)."""

    def reports_phrase(self) -> str:
        """What the summary lines say of the reports (empty without ``--send-results``)."""
        if self.reports_sent is None:
            return ""
        phrase = f", {self.reports_sent:,} reports sent to the PACS"
        phrase += f" ({self.reports_present:,} already there)" if self.reports_present else ""
        if self.reports_not_sent:
            phrase += f", {self.reports_not_sent:,} films without a report (see the report column)"
        return phrase

    @property
    def rows_scored(self) -> int:
        """Rows scored by this run (not taken from an earlier one)."""
        return self.rows - self.rows_resumed

    @property
    def images_per_second(self) -> float:
        return self.rows_scored / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class ScoreRequest:
    """The arguments of :func:`~pneumo_batch.scoring.score_batch`, as handed to the chosen engine."""

    input_path: str | Path
    out: str | Path
    model: ModelArtifact | str | Path | None
    workers: int | None
    batch_size: int
    root: str | Path | None
    progress: ProgressCallback | None
    scorer_factory: ScorerFactory | None
    ray_address: str | None
    pacs: PacsOptions | None = None
    """Study dates, credentials file and settings when ``input_path`` is a PACS URL."""
    overwrite: bool = False
    """Replace an existing ``out`` that is not a predictions file (else it is refused)."""
    header_rules: HeaderScopeRules = DEFAULT_HEADER_RULES
    """Which DICOM headers are in the model's scope."""
    reuse_from: Path | None = None
    """PACS input: the earlier output whose rows a rerun takes instead of fetching them (default ``out``)."""


def default_workers() -> int:
    """One worker per core this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_batch_size(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InputError(f"batch size must be between 1 and {MAX_BATCH_SIZE:,}, got {batch_size}")


def chunk_rows(batch_size: int, rows: int, workers: int) -> int:
    """Rows per chunk of a local run: ``batch_size``, or fewer, so that each worker gets at least 4 chunks.

    A full-size film takes milliseconds to decode: 960 DICOM files in one
    chunk of 1,024 kept one of two workers busy and the other idle. Never
    under :data:`~pneumo_batch.model.INFERENCE_BLOCK` rows (64: the
    interpreter's block, so the network sees full blocks), nor over ``batch_size``.
    """
    from pneumo_batch.model import INFERENCE_BLOCK

    spread = -(-rows // (4 * max(workers, 1)))
    return min(batch_size, max(INFERENCE_BLOCK, spread))


def check_root(root: str | Path | None) -> str | None:
    """``--root`` as a real path (every image must stay within it), or None."""
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        raise InputError(f"--root is not a directory: {path}")
    return os.path.realpath(path)


def now() -> datetime:
    return datetime.now(timezone.utc)
