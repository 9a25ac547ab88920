"""DeLong, McNemar and the paired-difference interval against hand-computed cases."""

import numpy as np
import pytest

from pneumo_batch.metrics import roc_auc
from pneumo_batch.paired_tests import SENSITIVITY_MARGIN, delong, mcnemar_p, non_inferior, paired_difference

LABELS = np.array([1, 1, 1, 0, 0, 0])
SCORES = np.array([0.9, 0.8, 0.4, 0.6, 0.3, 0.2])


def test_delong_single_auc_by_hand():
    # AUC 8/9. Positives outrank (1, 1, 2/3) of the negatives; negatives are outranked by (2/3, 1, 1) of the
    # positives. Both have sample variance 1/27, so var = (1/27)/3 + (1/27)/3 = 2/81.
    found = delong(LABELS, SCORES)
    assert found.aucs[0] == pytest.approx(8 / 9) == pytest.approx(roc_auc(LABELS, SCORES))
    assert found.covariance[0, 0] == pytest.approx(2 / 81)
    interval = found.interval()
    assert interval.low == pytest.approx(8 / 9 - 1.959964 * np.sqrt(2 / 81), abs=1e-6)
    assert interval.high == 1.0  # clipped


def test_delong_difference_of_a_model_with_itself_is_nothing_and_of_a_better_one_is_positive():
    same, p_same = delong(LABELS, SCORES, SCORES).difference()
    assert (same.estimate, p_same) == (0.0, 1.0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    weak = labels + rng.normal(0, 1.5, 400)
    strong = labels + rng.normal(0, 0.5, 400)
    difference, p_value = delong(labels, weak, strong).difference()
    assert difference.estimate == pytest.approx(roc_auc(labels, strong) - roc_auc(labels, weak))
    assert difference.low > 0 and p_value < 1e-6


def test_delong_with_ties_equals_mann_whitney():
    labels = np.array([1, 1, 0, 0, 1, 0])
    scores = np.array([0.5, 0.5, 0.5, 0.1, 0.9, 0.5])
    assert delong(labels, scores).aucs[0] == pytest.approx(roc_auc(labels, scores))


def test_mcnemar_exact_by_hand():
    # 10 films only the first got right, 2 only the second: two-sided exact binomial, 2 * P(X <= 2 | 12, 1/2).
    first = np.array([True] * 10 + [False] * 2 + [True] * 30)
    second = np.array([False] * 10 + [True] * 2 + [True] * 30)
    assert mcnemar_p(first, second) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_p(first, first) == 1.0


def test_agresti_min_interval_by_hand():
    # 100 pneumonias: 95 flagged by both, 3 by the champion only, 1 by the challenger only.
    champion = np.array([True] * 95 + [True] * 3 + [False] * 1 + [False])
    challenger = np.array([True] * 95 + [False] * 3 + [True] * 1 + [False])
    found = paired_difference(champion, challenger)
    # Add 1/2 to each cell: n 102, discordant 1.5 and 3.5; centre -2/102, sd sqrt(5 - 4/102)/102.
    half = 1.959964 * np.sqrt(5 - 4 / 102) / 102
    assert found.estimate == pytest.approx(-0.02)
    assert (found.low, found.high) == (pytest.approx(-2 / 102 - half, abs=1e-6), pytest.approx(-2 / 102 + half, abs=1e-6))
    assert not non_inferior(found)


def test_identical_decisions_are_non_inferior_with_enough_pneumonias_only():
    many, few = np.ones(200, dtype=bool), np.ones(60, dtype=bool)
    assert non_inferior(paired_difference(many, many))  # +-0.0097
    assert not non_inferior(paired_difference(few, few))  # +-0.032: more than the margin
    assert SENSITIVITY_MARGIN == 0.02


def test_a_perfect_separation_gets_an_exact_interval_not_a_point():
    labels = np.array([1] * 20 + [0] * 30)
    scores = np.concatenate([np.linspace(0.6, 0.9, 20), np.linspace(0.1, 0.5, 30)])
    interval = delong(labels, scores).interval()
    assert interval.estimate == 1.0 and interval.high == 1.0
    assert interval.low == pytest.approx(0.025 ** (1 / 20))  # 20 pneumonias, none misordered: about 0.83
