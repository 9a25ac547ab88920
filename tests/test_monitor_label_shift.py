"""The monitor on real nights, scored by the shipped model: who is sick changed, or the images did, or the input.

Nights are PneumoniaMNIST test images (and, marked slow, the shared
full-size JPEGs scored end to end), drawn per class without replacement and
without labels, so the class-balance verdict comes from the label-free
estimate. Each test reads ``summary.json`` back.

The test split is not a pure label shift of the validation split the
estimate is corrected with (its normal films are flagged more often), so
estimates on test nights run high by the bias of ``label_shift_bias.py``; the
benchmark (``benchmarks/label_shift_benchmark.py``) measures the rates over
200 nights per size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter
from scipy.stats import binomtest

from pneumo_batch import predictions as cols
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import load_model
from pneumo_batch.monitoring import build_monitoring_report
from pneumo_batch.monitoring.reference import reference_profile_frame
from label_shift_bias import estimate_bias_on_test_nights

TRAINING_PREVALENCE = 3494 / 4708


class Nights:
    """The shipped model, its training profile, and nights of its scored test images."""

    def __init__(self, model_dir: Path, data) -> None:
        self.model = load_model(model_dir)
        self.scorer = self.model.scorer()
        self.reference = pd.read_parquet(self.model.reference_profile_path)
        self.images, self.labels = data.test.images, data.test.labels.reshape(-1)

    def indices(self, size: int, prevalence: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        sick = round(size * prevalence)
        positives, negatives = np.flatnonzero(self.labels == 1), np.flatnonzero(self.labels == 0)
        # without replacement: a film counted twice would make the drift tests overconfident
        return np.sort(np.concatenate((rng.choice(positives, sick, replace=False),
                                       rng.choice(negatives, size - sick, replace=False))))

    def frame(self, images: np.ndarray) -> pd.DataFrame:
        """Predictions as scoring writes them, without labels (a real night has none)."""
        thresholds = {point.name: point.threshold for point in self.model.operating_points}
        scores = self.scorer.predict(pixels_to_model_input(images))
        frame = reference_profile_frame(images, np.zeros(len(images)), scores, thresholds,
                                        model_version=self.model.version, image_ids=[f"film_{i:04d}" for i in range(len(images))])
        return frame.drop(columns=cols.LABEL).assign(run_id="night")

    def monitor(self, frame: pd.DataFrame, out: Path) -> dict:
        build_monitoring_report(frame, self.reference, out, model_metadata=self.model.metadata)
        return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def nights(shipped_default_model, pneumoniamnist) -> Nights:
    return Nights(shipped_default_model, pneumoniamnist)


def acquisition_change(images: np.ndarray, kind: str) -> np.ndarray:
    """The same films from another scanner or export: blur, contrast, gamma, noise, or a lower resolution."""
    def each(change) -> np.ndarray:
        return np.stack([np.asarray(change(Image.fromarray(image))) for image in images])

    if kind == "blur":
        return each(lambda image: image.filter(ImageFilter.GaussianBlur(0.6)))
    if kind == "contrast":
        return np.clip(np.rint(128 + 0.8 * (images.astype(np.float64) - 128)), 0, 255).astype(np.uint8)
    if kind == "gamma":
        return np.clip(np.rint(255.0 * (images / 255.0) ** 0.8), 0, 255).astype(np.uint8)
    if kind == "noise":
        noise = np.random.default_rng(5).normal(0, 6, images.shape)
        return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)
    assert kind == "resolution"  # a 20 px source brought up to the model's 28 px: detail lost
    return each(lambda image: image.resize((20, 20), Image.Resampling.BILINEAR).resize((28, 28), Image.Resampling.BILINEAR))


@pytest.mark.parametrize(("prevalence", "who"), [(0.30, "More healthy children"), (0.90, "More children with pneumonia")])
def test_a_night_of_30_or_90_percent_pneumonia_is_a_class_balance_alert_not_drift(nights, tmp_path, prevalence, who):
    rows = nights.indices(200, prevalence, seed=21)
    data = nights.monitor(nights.frame(nights.images[rows]), tmp_path)
    estimate = data["prevalence_estimate"]
    assert data["class_balance_alert"] is True and estimate["basis"] == "estimate"
    assert data["drift_detected"] is False, data["drifted_features"]
    assert data["alert"] is True and data["out_of_scope_alert"] is False
    # high by the test split's extra false positives (see the module docstring), plus noise
    assert abs(estimate["value"] - prevalence - estimate_bias_on_test_nights(nights.model, prevalence)) < 0.06
    assert data["reference"]["resampled_to_prevalence"] == pytest.approx(estimate["value"])
    assert data["verdict"].startswith(f"{who} tonight: estimated pneumonia share {100 * estimate['value']:.0f} %")
    assert "the images themselves look as usual" in data["verdict"]
    assert data["estimated_performance"]["valid"] is True
    # the flagged share moved too, for information; it no longer raises the alarm
    assert {c["name"]: c["moved"] for c in data["class_balance"]}["screening"] is True


def test_100_in_distribution_films_are_a_quiet_night(nights, tmp_path):
    rows = nights.indices(100, TRAINING_PREVALENCE, seed=13)
    data = nights.monitor(nights.frame(nights.images[rows]), tmp_path)
    assert data["alert"] is False, data["alerts"]
    flagged = data["n_flagged"]
    assert data["verdict"] == f"Quiet night: 100 films, {flagged} flagged for urgent review, nothing unusual."
    assert flagged == data["estimated_performance"]["expected_flagged"]["value"]  # BBSE reproduces the count
    performance = data["estimated_performance"]
    assert performance["valid"] is True and performance["realized"] is None
    assert performance["expected_missed"]["low"] <= performance["expected_missed"]["value"] < 5


def test_1000_films_like_training_at_30_percent_are_a_class_balance_alert_not_drift(nights, pneumoniamnist, tmp_path):
    """Pure label shift at 1,000 films: training films held out of the reference, no film twice.

    Test-split nights cannot show this: their normal films differ from
    training normals (0.26 SD in sharpness and saturated share, 1.5 SD in
    score), which 700 normals a night make significant; nor has the test
    split 700 normal films to draw without replacement.
    """
    images, labels = pneumoniamnist.train.images, pneumoniamnist.train.labels.reshape(-1)
    rng = np.random.default_rng(31)
    normals, sick = rng.permutation(np.flatnonzero(labels == 0)), rng.permutation(np.flatnonzero(labels == 1))
    night = np.concatenate((normals[:700], sick[:300]))
    # the reference: other training films (all 514 other normals, enough pneumonia to resample them to 30 %)
    held = np.concatenate((normals[700:], sick[300:1300]))
    thresholds = {point.name: point.threshold for point in nights.model.operating_points}
    scores = nights.scorer.predict(pixels_to_model_input(images[held]))
    reference = reference_profile_frame(images[held], labels[held], scores, thresholds, model_version=nights.model.version)
    out = tmp_path / "report"
    build_monitoring_report(nights.frame(images[night]), reference, out, model_metadata=nights.model.metadata)
    data = json.loads((out / "summary.json").read_text())
    assert data["class_balance_alert"] is True and data["drift_detected"] is False, data["alerts"]
    assert abs(data["prevalence_estimate"]["value"] - 0.30) < 0.04
    assert data["alerts"] == [next(a for a in data["alerts"] if a.startswith("class balance"))]


@pytest.mark.parametrize(
    "kind", ["blur", *(pytest.param(kind, marks=pytest.mark.slow) for kind in ("contrast", "gamma", "noise", "resolution"))]
)
def test_an_acquisition_change_is_drift_and_voids_the_performance_estimate(nights, tmp_path, kind):
    rows = nights.indices(200, TRAINING_PREVALENCE, seed=22)
    data = nights.monitor(nights.frame(acquisition_change(nights.images[rows], kind)), tmp_path)
    assert data["drift_detected"] is True and data["alert"] is True
    assert any(d["column"].startswith("img_") for d in data["drifted_features"])
    assert data["estimated_performance"]["valid"] is False
    assert data["verdict"].startswith("The images themselves changed tonight (")


def test_ten_out_of_scope_films_in_100_alert_and_stay_out_of_drift_and_balance(nights, tmp_path):
    """Ten rows marked out of scope in a night of 100 in-distribution films.

    The pixel gate does not mark rows in this test: ``in_scope`` is set
    false on ten rows here, as scoring will once the gate runs (the slow
    test below does the same with real outlier files).
    """
    rows = nights.indices(100, TRAINING_PREVALENCE, seed=13)
    frame = nights.frame(nights.images[rows])
    frame[cols.IN_SCOPE] = pd.array([i >= 10 for i in range(100)], dtype="boolean")
    frame[cols.SCOPE_REASON] = pd.array(["unlike training images: colour photograph"] * 10 + [None] * 90, dtype="string")
    for name in ("screening", "balanced"):
        frame[cols.prediction_column(name)] = frame[cols.prediction_column(name)].astype("boolean").where(frame[cols.IN_SCOPE])
    data = nights.monitor(frame, tmp_path)
    assert data["out_of_scope_alert"] is True and data["alert"] is True
    assert (data["n_out_of_scope"], data["n_in_scope"], data["out_of_scope_share"]) == (10, 90, pytest.approx(0.1))
    test = data["out_of_scope_test"]
    rate = nights.model.metadata["scope_gate"]["false_flag_rate"]
    assert test["false_flag_rate"] == rate
    # Ten flagged where the gate flags about 2 in 100 films: far beyond chance.
    expected = binomtest(10, 100, rate, alternative="greater").pvalue
    assert test["n"] == 100 and test["p_value"] == pytest.approx(expected) and test["p_value"] < 1e-4
    assert test["false_flag_rate_source"] == "model metadata: scope_gate.false_flag_rate"
    assert data["top_out_of_scope_reasons"] == [{"reason": "unlike training images", "count": 10,
                                                 "share_of_out_of_scope": 1.0,
                                                 "example": "unlike training images: colour photograph"}]
    assert data["prevalence_estimate"]["n"] == 90  # in-scope rows only
    assert data["drift_detected"] is False and data["class_balance_alert"] is False
    assert data["verdict"].startswith("10 of 100 films are not chest X-rays like the training ones")
    # one stray flag is what the gate's false-flag rate explains: quiet
    frame.loc[1:9, cols.IN_SCOPE] = True
    assert nights.monitor(frame, tmp_path / "one")["out_of_scope_alert"] is False


# ---------------------------------------------------------------- full-size JPEGs, scored end to end


@pytest.fixture(scope="module")
def scored_jpegs(xray_jpegs_dir, xray_jpegs_catalogue, shipped_default_model, tmp_path_factory) -> pd.DataFrame:
    """Every shared JPEG scored once by ``score_batch`` with the shipped model (labels from the folder names)."""
    from pneumo_batch.scoring import score_batch

    work = tmp_path_factory.mktemp("jpegs")
    catalogue = xray_jpegs_catalogue
    pd.DataFrame({
        "path": [str(xray_jpegs_dir / cls / name) for cls, name in zip(catalogue["cls"], catalogue["file"])],
        cols.LABEL: (catalogue["cls"] == "PNEUMONIA").astype(np.int8),
    }).to_parquet(work / "manifest.parquet")
    score_batch(work / "manifest.parquet", work / "predictions.parquet", model=shipped_default_model, workers=0)
    return pd.read_parquet(work / "predictions.parquet")


@pytest.mark.slow
@pytest.mark.parametrize("prevalence", [0.30, 0.90])
def test_full_size_films_resampled_to_30_or_90_percent_are_a_class_balance_alert_not_drift(
    scored_jpegs, shipped_default_model, tmp_path, prevalence
):
    """A third of the films (labelled, 50 % pneumonia) are the site's reference; a night is drawn from the rest.

    Not the training profile: these films reach the model through our
    full-size decode, whose 28 px images are measurably sharper than
    PneumoniaMNIST's (img_sharpness 0.26-0.37 reference SD): against the
    training profile that is drift, correctly, since it is another
    acquisition path. A site compares its nights with its own films.
    """
    labels = scored_jpegs[cols.LABEL].to_numpy()
    rng = np.random.default_rng(31)
    classes = [rng.permutation(np.flatnonzero(labels == c)) for c in (0, 1)]
    reference_rows = np.concatenate([films[: len(films) // 3] for films in classes])
    negatives, positives = (films[len(films) // 3:] for films in classes)
    # as many films as the rarer class allows at this prevalence
    size = int(min(len(positives) / prevalence, len(negatives) / (1 - prevalence)))
    sick = round(size * prevalence)
    rows = np.sort(np.concatenate((rng.choice(positives, sick, replace=False), rng.choice(negatives, size - sick, replace=False))))
    scored_jpegs.iloc[reference_rows].to_parquet(tmp_path / "reference.parquet")
    scored_jpegs.iloc[rows].drop(columns=cols.LABEL).to_parquet(tmp_path / "night.parquet")
    model = load_model(shipped_default_model)
    build_monitoring_report([tmp_path / "night.parquet"], tmp_path / "reference.parquet", tmp_path / "report",
                            model_metadata=model.metadata)
    data = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert data["class_balance_alert"] is True, data["prevalence_estimate"]
    assert data["drift_detected"] is False, data["drifted_features"]
    # Every film counted once; the gate may flag one or two of these films (about 2 % cross-fitted).
    assert data["n_in_scope"] + data["n_out_of_scope"] == size and data["n_out_of_scope"] <= 0.05 * size
    assert data["n_errors"] == 0
    assert data["reference"]["resampled_to_prevalence"] == pytest.approx(data["prevalence_estimate"]["value"])


@pytest.mark.slow
def test_ten_outlier_files_in_100_full_size_films_raise_the_scope_alert(
    xray_jpegs_dir, xray_jpegs_catalogue, shipped_default_model, tmp_path
):
    """Ten real outlier files (photos, CT, other radiographs) among 90 shared films, scored end to end.

    Until the pixel gate marks rows in scoring, the test sets ``in_scope``
    false on the outlier rows itself (after checking whether scoring did).
    """
    from pneumo_batch.scoring import score_batch

    outliers = sorted(p for p in (xray_jpegs_dir.parent / "outliers").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    picked = [outliers[i] for i in np.random.default_rng(41).choice(len(outliers), 10, replace=False)]
    films = [xray_jpegs_dir / cls / name for cls, name in zip(xray_jpegs_catalogue["cls"], xray_jpegs_catalogue["file"])]
    films = [films[i] for i in np.random.default_rng(42).choice(len(films), 90, replace=False)]
    pd.DataFrame({"path": [str(p) for p in [*films, *picked]], "outlier": [False] * 90 + [True] * 10}).to_parquet(
        tmp_path / "manifest.parquet")
    score_batch(tmp_path / "manifest.parquet", tmp_path / "predictions.parquet", model=shipped_default_model, workers=0)
    frame = pd.read_parquet(tmp_path / "predictions.parquet")
    if frame.loc[frame["outlier"], cols.IN_SCOPE].astype("boolean").fillna(False).any():  # the gate is not applied yet
        frame.loc[frame["outlier"] & (frame[cols.STATUS] == cols.STATUS_OK), cols.IN_SCOPE] = False
        frame.loc[frame["outlier"], cols.SCOPE_REASON] = "unlike training images: simulated in this test"
    model = load_model(shipped_default_model)
    build_monitoring_report(frame, model.reference_profile_path, tmp_path / "report", model_metadata=model.metadata)
    data = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert data["out_of_scope_alert"] is True and data["alert"] is True
    assert data["n_out_of_scope"] + data["n_errors"] >= 10
    assert data["out_of_scope_test"]["p_value"] < 0.01
