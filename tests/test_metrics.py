import math

import numpy as np
import pytest

from pneumo_batch import metrics


def test_confusion_counts_flag_scores_at_or_above_threshold():
    labels = np.array([1, 1, 0, 0, 1])
    scores = np.array([0.9, 0.5, 0.5, 0.1, 0.2])
    confusion = metrics.confusion_at(labels, scores, 0.5)
    assert (confusion.tp, confusion.fp, confusion.tn, confusion.fn) == (2, 1, 1, 1)
    assert confusion.sensitivity == pytest.approx(2 / 3)
    assert confusion.specificity == pytest.approx(1 / 2)
    assert confusion.accuracy == pytest.approx(3 / 5)


def test_auc_matches_hand_computed_pairs_with_ties():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs won 1 + 1 + 0.5 + 1 = 3.5 of 4
    assert metrics.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(3.5 / 4)
    assert metrics.roc_auc([1, 0], [0.1, 0.9]) == 0.0
    assert math.isnan(metrics.roc_auc([1, 1], [0.1, 0.9]))


def test_screening_threshold_is_highest_reaching_target():
    labels = np.array([1] * 10 + [0] * 5)
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.15, 0.25, 0.05, 0.35])
    # 90 % of 10 positives = 9 must be flagged: the 9th highest positive score is 0.3
    threshold = metrics.screening_threshold(labels, scores, 0.9)
    assert threshold == pytest.approx(0.3)
    assert metrics.confusion_at(labels, scores, threshold).sensitivity == pytest.approx(0.9)
    assert metrics.confusion_at(labels, scores, np.nextafter(threshold, 1)).sensitivity < 0.9
    assert metrics.screening_threshold(labels, scores, 1.0) == pytest.approx(0.2)


def test_youden_threshold_maximises_j_and_prefers_lower_on_ties():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    # any threshold in (0.2, 0.8] separates perfectly; the lowest such score is 0.8
    assert metrics.youden_threshold(labels, scores) == pytest.approx(0.8)
    labels = np.array([0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.3, 0.4, 0.6, 0.7])
    # t=0.3: sens 1, spec .5 (J .5); t=0.6: sens 2/3, spec 1 (J .667)
    assert metrics.youden_threshold(labels, scores) == pytest.approx(0.6)


def test_bootstrap_interval_contains_estimate_and_narrows_with_data():
    rng = np.random.default_rng(1)
    def sample(n):
        labels = rng.integers(0, 2, n)
        return labels, labels * 0.6 + rng.normal(0, 0.4, n)
    small = metrics.bootstrap_interval(*sample(60), metrics.roc_auc, n_resamples=300)
    large = metrics.bootstrap_interval(*sample(2000), metrics.roc_auc, n_resamples=300)
    assert small.low <= small.estimate <= small.high
    assert large.high - large.low < small.high - small.low


def test_wilson_interval_known_value():
    interval = metrics.wilson_interval(8, 10)
    assert interval.estimate == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-3)
    assert interval.high == pytest.approx(0.9433, abs=1e-3)


def test_labels_other_than_zero_and_one_are_refused():
    with pytest.raises(ValueError):
        metrics.roc_auc([0, 2], [0.1, 0.2])
