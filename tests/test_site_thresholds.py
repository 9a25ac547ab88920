"""The site's screening threshold rule (pneumo_batch/site/thresholds.py) on hand-made score sets."""

from __future__ import annotations

import numpy as np
import pytest

from pneumo_batch.site.thresholds import choose_screening_threshold, lower_bound


def site(positive_scores: list[float], negatives: int = 100) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([positive_scores, np.linspace(0.0, 0.3, negatives)])
    labels = np.concatenate([np.ones(len(positive_scores)), np.zeros(negatives)])
    return labels, scores


def test_the_bound_needs_149_pneumonias_without_a_miss_to_reach_98_percent():
    assert lower_bound(149, 149) >= 0.98 > lower_bound(148, 148)


def test_a_site_that_proves_a_higher_threshold_safe_gets_it():
    labels, scores = site(list(np.linspace(0.8, 0.99, 200)))
    chosen = choose_screening_threshold(labels, scores, validated=0.5)
    assert chosen.changed and chosen.threshold == pytest.approx(0.8)  # every pneumonia still flagged
    assert chosen.rule.startswith("proven") and chosen.site_sensitivity_low >= 0.98


def test_a_proof_that_only_reaches_below_the_validated_point_keeps_it():
    # 199 of 200 pneumonias above the validated 0.5, one at 0.2: the bound is proven only at 0.2
    labels, scores = site([0.2, *np.linspace(0.6, 0.99, 199)])
    chosen = choose_screening_threshold(labels, scores, validated=0.5)
    assert not chosen.changed and chosen.threshold == 0.5 and chosen.rule.startswith("kept")


def test_a_site_where_the_validated_point_misses_too_many_lowers_it_without_claiming_proof():
    # 15 of 60 pneumonias below the validated point: sensitivity 0.75 there, upper bound far below 0.98
    labels, scores = site([*np.linspace(0.1, 0.4, 15), *np.linspace(0.6, 0.99, 45)])
    chosen = choose_screening_threshold(labels, scores, validated=0.5)
    assert chosen.changed and chosen.threshold < 0.5 and chosen.rule.startswith("lowered")
    flagged = np.sum(scores[labels == 1] >= chosen.threshold)
    assert flagged >= np.ceil(0.98 * 60)


def test_a_small_site_keeps_the_validated_point_and_says_how_many_pneumonias_would_decide():
    labels, scores = site(list(np.linspace(0.6, 0.99, 30)))
    chosen = choose_screening_threshold(labels, scores, validated=0.5)
    assert not chosen.changed and chosen.positives == 30 and chosen.positives_needed == 149


def test_a_site_that_shows_the_validated_point_unsafe_gets_the_highest_proven_threshold_below_it():
    # 20 of 200 pneumonias below the validated 0.5 (sensitivity 0.90), every one above 0.05
    labels, scores = site([*np.linspace(0.05, 0.45, 20), *np.linspace(0.6, 0.99, 180)])
    chosen = choose_screening_threshold(labels, scores, validated=0.5)
    assert chosen.changed and chosen.threshold == pytest.approx(0.05)
    assert chosen.rule.startswith("lowered") and "proven" in chosen.rule and chosen.site_sensitivity_low >= 0.98
