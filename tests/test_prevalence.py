"""Label shift on real nights: PneumoniaMNIST test images, resampled per class, scored by the shipped model.

Two labelled profiles, as in ``benchmarks/label_shift_benchmark.py``:

- ``validation``: the validation split (what the product uses). The test
  split is not a pure label shift of it (its normal films are flagged more
  often than on validation), so estimates on test nights run high by the
  bias of ``tests/label_shift_bias.py``; the tolerances below add it.
- ``audit``: a seeded, stratified half of the test split; nights come from
  the other half, so they differ from the profile by label shift alone.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from pneumo_batch.errors import InputError
from pneumo_batch.imaging.features import NUMERIC_IMAGE_FEATURES, intensity_features
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import load_model
from pneumo_batch.monitoring import MonitoringRules, numeric_drift
from pneumo_batch.monitoring.performance import estimate_performance
from pneumo_batch.monitoring.prevalence import (
    METHODS,
    PrevalenceEstimate,
    ValidationProfile,
    class_balance_alert,
    estimate_prevalence,
    expected_range,
)
from pneumo_batch.monitoring.reference import reweighted_reference
from pneumo_batch.monitoring.scope import out_of_scope_test
from label_shift_bias import estimate_bias_on_test_nights

DRIFT_COLUMNS = (*NUMERIC_IMAGE_FEATURES, "p_pneumonia")
TRAINING_PREVALENCE = 3494 / 4708


class Scored:
    def __init__(self, model_dir, data) -> None:
        model = load_model(model_dir)
        self.model = model
        self.scorer = model.scorer()
        self.threshold = next(p.threshold for p in model.operating_points if p.name == "screening")
        self.training_profile = pd.read_parquet(model.reference_profile_path)
        self.images = data.test.images
        self.test = self.frame(data.test.images, data.test.labels.reshape(-1))
        val = self.frame(data.val.images, data.val.labels.reshape(-1))
        self.validation = ValidationProfile.from_frame(val, self.threshold, rng=np.random.default_rng(0),
                                                          n_bootstrap=300)
        labels = self.test["label"].to_numpy()
        split = np.random.default_rng(1)
        self.audit_rows = np.concatenate(
            [split.permutation(np.flatnonzero(labels == c))[: (labels == c).sum() // 2] for c in (0, 1)]
        )
        self.night_rows = np.setdiff1d(np.arange(len(labels)), self.audit_rows)
        self.audit_reference = self.test.iloc[self.audit_rows].reset_index(drop=True)
        self.audit = ValidationProfile.from_frame(self.audit_reference, self.threshold,
                                                     rng=np.random.default_rng(2), n_bootstrap=300)

    def frame(self, images: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(intensity_features(images))
        frame["p_pneumonia"] = self.scorer.predict(pixels_to_model_input(images)).astype(np.float64)
        frame["label"] = labels.astype(np.int8)
        return frame

    def night_indices(self, pool: np.ndarray, size: int, prevalence: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        labels = self.test["label"].to_numpy()
        positives, negatives = pool[labels[pool] == 1], pool[labels[pool] == 0]
        sick = round(size * prevalence)
        # without replacement: a film counted twice would make the drift tests overconfident
        picked = (rng.choice(positives, sick, replace=False), rng.choice(negatives, size - sick, replace=False))
        return np.concatenate(picked)


@pytest.fixture(scope="module")
def scored(shipped_default_model, pneumoniamnist) -> Scored:
    return Scored(shipped_default_model, pneumoniamnist)


def drifted_columns(reference: pd.DataFrame, night: pd.DataFrame) -> list[str]:
    """The monitor's rule: effect >= 0.2 reference SD and K-S p below the drift test's level split over the columns."""
    rules = MonitoringRules()
    alpha = rules.test_alpha / len(DRIFT_COLUMNS)
    drifted = []
    for column in DRIFT_COLUMNS:
        effect, p_value = numeric_drift(reference[column].to_numpy(), night[column].to_numpy())
        if effect >= rules.numeric_effect and p_value < alpha:
            drifted.append(column)
    return drifted


def acquisition_change(images: np.ndarray, kind: str) -> np.ndarray:
    if kind == "blur":
        return np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(0.6))) for i in images])
    if kind == "gamma":
        return np.clip(np.rint(255.0 * (images / 255.0) ** 0.8), 0, 255).astype(np.uint8)
    noise = np.random.default_rng(5).normal(0, 6, images.shape)
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- prevalence


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("prevalence", [0.30, 0.90])
def test_a_night_of_30_or_90_percent_pneumonia_raises_a_balance_alert(scored, prevalence, method):
    night = scored.test.iloc[scored.night_indices(np.arange(len(scored.test)), 300, prevalence, seed=11)]
    estimate = estimate_prevalence(scored.validation, night["p_pneumonia"], rng=np.random.default_rng(3),
                                      method=method)
    assert class_balance_alert(estimate, expected_range(TRAINING_PREVALENCE), alpha=MonitoringRules().test_alpha)
    # the bias of the test split's higher false-positive rate, plus noise
    assert abs(estimate.value - prevalence - estimate_bias_on_test_nights(scored.model, prevalence)) < 0.06
    assert estimate.low <= estimate.value <= estimate.high


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("prevalence", [0.30, 0.90])
def test_under_pure_label_shift_the_estimate_is_near_the_truth(scored, prevalence, method):
    night = scored.test.iloc[scored.night_indices(scored.night_rows, 150, prevalence, seed=12)]
    estimate = estimate_prevalence(scored.audit, night["p_pneumonia"], rng=np.random.default_rng(4),
                                      method=method)
    truth = night["label"].mean()
    assert abs(estimate.value - truth) < 0.1  # about two standard errors at 150 films
    assert estimate.low <= truth <= estimate.high
    if prevalence < 0.5:
        # with many normal films the flagged share overstates pneumonia by the false positives; the estimate does not
        naive = (night["p_pneumonia"] >= scored.threshold).mean()
        assert naive - truth > 0.08


def test_the_balance_alert_tests_the_range_at_its_level_one_tail_at_a_time():
    """Only the tail on the range's side can miss it: the alert's level is ``alpha``, not half of it."""
    draws = np.linspace(0.789, 0.889, 100_001)  # the estimate's draws, just above the expected 0.69-0.79
    estimate = PrevalenceEstimate(0.839, 0.79, 0.888, "bbse", 1000, 0.95, draws)
    budget_share = MonitoringRules().test_alpha  # 0.0067: the lowest 0.67 % of draws reach into the range
    assert not class_balance_alert(estimate, (0.69, 0.79), alpha=budget_share)
    assert class_balance_alert(estimate, (0.69, 0.79), alpha=0.02)  # the lowest 2 % end at 0.791
    below = PrevalenceEstimate(0.641, 0.59, 0.69, "bbse", 1000, 0.95, draws - 0.198)  # 0.591-0.691
    assert not class_balance_alert(below, (0.69, 0.79), alpha=budget_share)
    assert class_balance_alert(below, (0.69, 0.79), alpha=0.02)


def test_an_in_distribution_night_of_100_films_is_quiet(scored):
    night = scored.test.iloc[scored.night_indices(np.arange(len(scored.test)), 100, TRAINING_PREVALENCE, seed=13)]
    rng = np.random.default_rng(6)
    estimate = estimate_prevalence(scored.validation, night["p_pneumonia"], rng=rng)
    assert not class_balance_alert(estimate, expected_range(TRAINING_PREVALENCE), alpha=MonitoringRules().test_alpha)
    reference = reweighted_reference(scored.training_profile, estimate.value, rng)
    assert drifted_columns(reference, night) == []
    assert not out_of_scope_test(0, 100, false_flag_rate=0.005).alert


# --------------------------------------------------------------------------- drift after reweighting


@pytest.mark.parametrize("prevalence", [0.30, 0.90])
def test_pure_label_shift_shows_no_drift_once_the_reference_is_reweighted(scored, prevalence):
    night = scored.test.iloc[scored.night_indices(scored.night_rows, 150, prevalence, seed=14)]
    rng = np.random.default_rng(7)
    estimate = estimate_prevalence(scored.audit, night["p_pneumonia"], rng=rng)
    reweighted = reweighted_reference(scored.audit_reference, estimate.value, rng)
    assert drifted_columns(reweighted, night) == []
    # the same night against the reference as it is: the score has drifted, only because fewer/more are sick
    assert "p_pneumonia" in drifted_columns(scored.audit_reference, night)


@pytest.mark.parametrize("kind", ["blur", "gamma", "noise"])
def test_an_acquisition_change_still_drifts_after_reweighting(scored, kind):
    rows = scored.night_indices(scored.night_rows, 150, 0.30, seed=15)
    changed = scored.frame(acquisition_change(scored.images[rows], kind), scored.test["label"].to_numpy()[rows])
    rng = np.random.default_rng(8)
    estimate = estimate_prevalence(scored.audit, changed["p_pneumonia"], rng=rng)
    reweighted = reweighted_reference(scored.audit_reference, estimate.value, rng)
    assert drifted_columns(reweighted, changed) != []
    assert not estimate_performance(scored.audit, estimate, image_drift=True, operating_point="screening").valid


def test_reweighted_reference_has_the_asked_prevalence_and_no_duplicates(scored):
    reference = scored.training_profile
    reweighted = reweighted_reference(reference, 0.30, np.random.default_rng(9))
    assert reweighted["label"].mean() == pytest.approx(0.30, abs=0.001)
    # the 1,214 normal films bound the size at 30 % pneumonia
    assert len(reweighted) == int(1214 / 0.70)
    assert not reweighted["image_id"].duplicated().any()
    assert set(reweighted.columns) == set(reference.columns)
    with pytest.raises(InputError, match="needs labels"):
        reweighted_reference(reference.drop(columns="label"), 0.3, np.random.default_rng(9))


# --------------------------------------------------------------------------- performance without labels


def test_estimated_performance_follows_the_prevalence_and_matches_the_realized(scored):
    figures = {}
    for prevalence in (0.30, 0.90):
        night = scored.test.iloc[scored.night_indices(scored.night_rows, 150, prevalence, seed=16)]
        estimate = estimate_prevalence(scored.audit, night["p_pneumonia"], rng=np.random.default_rng(10))
        perf = estimate_performance(scored.audit, estimate, image_drift=False, operating_point="screening")
        assert perf.valid and perf.n == 150
        flagged = night["p_pneumonia"] >= scored.threshold
        sick = night["label"] == 1
        assert perf.sensitivity.low <= sick[flagged].sum() / sick.sum() <= perf.sensitivity.high
        assert perf.ppv.low <= (flagged & sick).sum() / flagged.sum() <= perf.ppv.high
        assert perf.expected_flagged.low <= flagged.sum() <= perf.expected_flagged.high
        assert perf.expected_missed.value == pytest.approx(150 * estimate.value * (1 - scored.audit.tpr))
        for figure in (perf.ppv, perf.npv, perf.expected_missed):
            assert figure.low <= figure.value <= figure.high
        figures[prevalence] = perf
    assert figures[0.30].ppv.value < figures[0.90].ppv.value
    assert figures[0.30].npv.value > figures[0.90].npv.value
    assert figures[0.30].sensitivity == figures[0.90].sensitivity


# --------------------------------------------------------------------------- out of scope


def test_one_stray_flag_in_100_films_is_quiet_and_ten_photos_alert():
    stray = out_of_scope_test(1, 100, false_flag_rate=0.005, alpha=0.01)
    assert not stray.alert
    assert stray.p_value == pytest.approx(1 - 0.995**100)
    photos = out_of_scope_test(10, 100, false_flag_rate=0.005, alpha=0.01)
    assert photos.alert and photos.p_value < 1e-9
    assert [out_of_scope_test(k, 100, false_flag_rate=0.005).alert for k in range(6)] == [False, False, False, False, True, True]
    tail = sum(math.comb(1000, i) * 0.005**i * 0.995 ** (1000 - i) for i in range(12, 1001))
    assert out_of_scope_test(12, 1000, false_flag_rate=0.005).p_value == pytest.approx(tail)
    assert not out_of_scope_test(0, 0, false_flag_rate=0.005).alert


def test_an_impossible_out_of_scope_count_is_refused():
    with pytest.raises(InputError, match="impossible"):
        out_of_scope_test(5, 3, false_flag_rate=0.005)
    with pytest.raises(InputError, match="false-flag rate"):
        out_of_scope_test(1, 10, false_flag_rate=0.0)
