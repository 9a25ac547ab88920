"""What the realized-performance monitor finds (``realized_performance`` in summary.json).

Kept beside :mod:`.summary` (whose dataclasses are a night's verdict), because
these describe the labelled history of an output root, not one night.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pneumo_batch import metrics

#: Version of ``realized/realized_performance.json`` and the ``realized_performance`` key.
REALIZED_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RealizedRules:
    windows: tuple[int, ...] = (7, 30, 90)
    """Rolling windows, in days, ending on the latest night of the history."""
    confidence: float = 0.95
    calibration_bins: int = 10
    ece_resamples: int = 200
    sensitivity_point: str = "screening"
    """The operating point whose missed pneumonias the sensitivity test watches."""
    sensitivity_in_control: float = 0.98
    """The sensitivity promised (the test's null hypothesis)."""
    sensitivity_out_of_control: float = 0.90
    """The fall the test is tuned to detect quickly."""
    cusum_threshold: float = 5.5
    """Alarm level of the Bernoulli CUSUM; its false-alarm rate and delay are in docs/monitoring-rules.md
    (measured by benchmarks/realized_benchmark.py)."""
    subgroup_min_labelled: int = 30
    """A subgroup gets figures only with this many labelled films (and its test this many labelled pneumonias)."""
    subgroup_alpha: float = 0.01
    """Family-wise level of the subgroup alerts (Holm over every subgroup tested)."""
    seed: int = 0


@dataclass(frozen=True)
class PointFigures:
    """Realized figures at one operating point (Wilson intervals)."""

    threshold: float | None
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: metrics.Interval
    specificity: metrics.Interval
    ppv: metrics.Interval
    npv: metrics.Interval


@dataclass(frozen=True)
class Calibration:
    ece: metrics.Interval
    """Expected calibration error with a bootstrap interval."""
    table: list[dict[str, float | int]]
    """The reliability table: per score bin, films, mean score and observed pneumonia share."""


@dataclass(frozen=True)
class EstimateCheck:
    """A night's label-free estimate against what its labels say."""

    operating_point: str
    coverage: float
    figures: dict[str, dict[str, float | bool | None]]
    """Per figure (prevalence, sensitivity, specificity, ppv, npv): estimated, low, high, realized, held."""
    held: bool | None
    """Every realized figure lies in its estimated interval (None: nothing to compare)."""


@dataclass(frozen=True)
class ChunkFigures:
    """Realized performance over one night or one rolling window."""

    chunk: str
    """The night (``YYYY-MM-DD``) or the window (``7d``, ``30d``, ``90d``)."""
    start: str
    end: str
    n_in_scope: int
    n_labelled: int
    coverage: float
    """Labelled share of the in-scope films."""
    n_pneumonia: int
    n_normal: int
    n_relabelled: int
    models: list[dict[str, Any]]
    """The model versions that scored the labelled rows, with row counts."""
    operating_points: dict[str, PointFigures]
    auc: metrics.Interval | None
    calibration: Calibration | None = None
    """Windows only (a night is too small for a reliability table)."""
    estimate: EstimateCheck | None = None
    """Nights only: the night's label-free estimate against the realized figures."""


@dataclass(frozen=True)
class SensitivityTest:
    """The Bernoulli CUSUM on missed pneumonias among labelled positives, in night order."""

    operating_point: str
    model_sha256: str | None
    """The test runs on the rows the latest model scored (a new model starts it afresh)."""
    n_positives: int
    n_missed: int
    statistic: float
    threshold: float
    alert: bool
    first_crossed: str | None
    """The night the statistic last went from below the threshold to it (while alerting)."""
    in_control: float
    out_of_control: float
    path: list[dict[str, Any]] = field(default_factory=list)
    """Per night: positives, missed, the statistic at the night's end."""


@dataclass(frozen=True)
class RealizedPerformance:
    nights: list[ChunkFigures]
    windows: list[ChunkFigures]
    sensitivity_test: SensitivityTest | None
    n_films_read: int
    n_matched: int
    n_unmatched: int
    n_relabelled: int
    labels_fingerprint: str
    rules: RealizedRules
    computed_at: str
    subgroups: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def alert(self) -> bool:
        return self.sensitivity_test is not None and self.sensitivity_test.alert

    def as_dict(self) -> dict[str, Any]:
        return {"format_version": REALIZED_FORMAT_VERSION, **asdict(self)}
