"""Label-shift monitoring on seeded nights of real PneumoniaMNIST test images scored by the shipped model.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz nice .venv/bin/python benchmarks/label_shift_benchmark.py
    # with NannyML's CBPE beside ours (NannyML lives in its own venv, never in the project's):
    python3 -m venv /work/venv-nannyml && /work/venv-nannyml/bin/pip install nannyml==0.13.1 statsmodels "pandas<3"
    ... label_shift_benchmark.py --nannyml-python /work/venv-nannyml/bin/python

For each night size (100 and 1,000 images) and each kind of night, ``--nights``
seeded nights are drawn from a pool of scored films that overlaps neither the
drift reference nor the labelled profile the estimate is corrected with:

- ``expected``: at the prevalence the monitor expects (the training
  prevalence, 74.2 %); in the ``heldout`` setting any alert is a false alarm;
- ``prev_30``, ``prev_90``, ``prev_62``: 30 %, 90 % and the test split's own
  62.5 % pneumonia (label shift only);
- ``blur``, ``gamma``, ``noise``, ``contrast``, ``resolution``: the expected
  prevalence with an acquisition change (Gaussian blur 0.6 px, gamma 0.8,
  noise SD 6 grey levels, contrast x0.8, a 20 px source brought back to
  28 px), rescored by the model.

Nights are drawn without replacement whenever the pool holds enough films of
each class (the night's count + 3 SD); otherwise with replacement, and the
table says so (``replace``): duplicated films make the drift tests'
p-values overconfident, so those rows overstate drift.

Settings (``--settings``), i.e. where the labelled profile, the drift
reference and the nights come from:

- ``heldout`` (the false-alarm figure): the product's rules and profile (the
  validation split's confusion and scores) with the drift reference a
  seeded, stratified third of the training films (1,569) and nights from the
  other two thirds (3,139: 809 normal, 2,330 pneumonia), so a night and the
  reference come from one population and nothing overlaps. Enough films for
  every kind without replacement at both sizes. The nights' scores are
  in-sample for the model (as the reference's are): training normals are
  flagged 1.2 % of the time against 3.0 % on validation, so the estimate
  reads slightly low and the realized specificity is higher than on new
  films.
- ``test`` (what the product does on PneumoniaMNIST's test split): validation
  profile, the whole training profile (4,708) as drift reference, nights
  from the 624 test films. The test split is not a pure label shift of
  validation: its normal films are flagged 16 % of the time against 3 %,
  and differ from training normals by 0.26 reference SD in sharpness and
  saturated share and 1.5 SD in score (past the drift rule's 0.2 SD), so a
  drift alert on these nights is a real, if small, change of the images, not
  a false alarm. 1,000-film nights need replacement (624 films).
- ``audit``: a labelled half of the test split (seeded, stratified) is the
  profile and the drift reference; nights come from the other half. Label
  shift by construction, on new films (1,000-film nights need replacement).

The alerts are the monitor's rules with its false-alarm budget
(``MonitoringRules.false_alarm_rate``, split evenly over the three
label-free tests, each at ``test_alpha``):

- out of scope: beside the night's in-scope films, the gate falsely flags
  Binomial(size, its validated false-flag rate) more (the model metadata's
  rate), and the exact binomial test runs on them at ``test_alpha`` (the
  gate itself is not run: acquisition changes add no flags here);
- class balance: the ``1 - 2 test_alpha`` interval of the BBSE estimate lies
  wholly outside the training prevalence +/- ``--tolerance`` (``balance_em``:
  EM's);
- drift: a column moved by >= 0.2 SD and its K-S p < ``test_alpha`` / 9, on the
  eight image features and the score, against the reference reweighted to
  the night's BBSE estimate (``drift_unweighted``: against the reference as
  is).

``any_alert`` is their union; ``any_alert_old`` the rules before the budget
(each test at 0.01, the balance interval at 99 %).

Printed per setting, size and kind: alert rates, prevalence error and
interval coverage of BBSE and EM, the largest drift effect of a night (mean),
and estimated against realized sensitivity, specificity and PPV: ours
(validation figures carried over, PPV from the BBSE prevalence), the CBPE
idea computed here (expected confusion matrix from Platt-calibrated
probabilities) and NannyML's CBPE when ``--nannyml-python`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.imaging.features import NUMERIC_IMAGE_FEATURES, intensity_features
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import load_model
from pneumo_batch.monitoring import MonitoringRules, numeric_drift
from pneumo_batch.monitoring import prevalence as ls
from pneumo_batch.monitoring.performance import estimate_performance
from pneumo_batch.monitoring.reference import reweighted_reference
from pneumo_batch.monitoring.scope import out_of_scope_test
from machine import cpu_description  # benchmarks/machine.py

SEED = 2026
DRIFT_COLUMNS = (*NUMERIC_IMAGE_FEATURES, "p_pneumonia")
KINDS = {
    "expected": (None, None),
    "prev_30": (0.30, None),
    "prev_90": (0.90, None),
    "prev_62": (0.625, None),
    "blur": (None, "blur"),
    "gamma": (None, "gamma"),
    "noise": (None, "noise"),
    "contrast": (None, "contrast"),
    "resolution": (None, "resolution"),
}
_CBPE_SCRIPT = Path(__file__).with_name("label_shift_nannyml_cbpe.py")


def acquisition_shift(images: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A changed acquisition of 28x28 uint8 images: ``blur``, ``gamma``, ``noise``, ``contrast`` or ``resolution``."""
    if kind == "blur":
        return np.stack([np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(0.6))) for i in images])
    if kind == "gamma":
        return np.clip(np.rint(255.0 * (images / 255.0) ** 0.8), 0, 255).astype(np.uint8)
    if kind == "noise":
        return np.clip(np.rint(images + rng.normal(0, 6, images.shape)), 0, 255).astype(np.uint8)
    if kind == "contrast":  # contrast x0.8 about the mid grey
        return np.clip(np.rint(128 + 0.8 * (images.astype(np.float64) - 128)), 0, 255).astype(np.uint8)
    if kind == "resolution":  # a source at 20 px, brought back to 28 px (lost detail)
        return np.stack([
            np.asarray(Image.fromarray(i).resize((20, 20), Image.Resampling.BILINEAR).resize((28, 28), Image.Resampling.BILINEAR))
            for i in images
        ])
    raise ValueError(kind)


def frame_of(images: np.ndarray, labels: np.ndarray, scorer: object) -> pd.DataFrame:
    frame = pd.DataFrame(intensity_features(images))
    frame["p_pneumonia"] = scorer.predict(pixels_to_model_input(images)).astype(np.float64)
    frame["label"] = labels.astype(np.int8)
    return frame


def needs_replacement(labels: np.ndarray, pool: np.ndarray, size: int, prevalence: float) -> bool:
    """Whether the pool lacks the films of either class a night needs (its binomial count + 3 SD)."""
    spread = 3 * np.sqrt(size * prevalence * (1 - prevalence))
    positives, negatives = int((labels[pool] == 1).sum()), int((labels[pool] == 0).sum())
    return bool(size * prevalence + spread > positives or size * (1 - prevalence) + spread > negatives)


def draw_night(
    labels: np.ndarray, pool: np.ndarray, size: int, prevalence: float, rng: np.random.Generator, replace: bool
) -> np.ndarray:
    positives, negatives = pool[labels[pool] == 1], pool[labels[pool] == 0]
    k = rng.binomial(size, prevalence)
    return np.concatenate((rng.choice(positives, k, replace=replace), rng.choice(negatives, size - k, replace=replace)))


def drift_tests(reference: pd.DataFrame, night: pd.DataFrame) -> np.ndarray:
    """Effect size and K-S p-value of each drift column (rows: columns; columns: effect, p)."""
    return np.array([numeric_drift(reference[c].to_numpy(), night[c].to_numpy()) for c in DRIFT_COLUMNS])


def drifted(tests: np.ndarray, rules: MonitoringRules, level: float) -> bool:
    """The monitor's rule: some column moved by >= the effect threshold with K-S p < level / columns."""
    return bool(((tests[:, 0] >= rules.numeric_effect) & (tests[:, 1] < level / len(DRIFT_COLUMNS))).any())


def cbpe_core(scores: np.ndarray, validation: ls.ValidationProfile) -> tuple[float, float, float]:
    """CBPE's idea: the expected confusion matrix from calibrated probabilities (sensitivity, specificity, PPV)."""
    a, b = validation.calibration
    clipped = np.clip(scores, 1e-6, 1 - 1e-6)
    p = 1 / (1 + np.exp(-(a * (np.log(clipped) - np.log1p(-clipped)) + b)))
    flagged = scores >= validation.threshold
    tp, fp = p[flagged].sum(), (1 - p[flagged]).sum()
    fn, tn = p[~flagged].sum(), (1 - p[~flagged]).sum()
    return tp / (tp + fn), tn / (tn + fp), tp / max(tp + fp, 1e-12)


def realized(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float, float]:
    flagged, sick = scores >= threshold, labels == 1
    sens = flagged[sick].mean() if sick.any() else np.nan
    spec = (~flagged[~sick]).mean() if (~sick).any() else np.nan
    ppv = sick[flagged].mean() if flagged.any() else np.nan
    return float(sens), float(spec), float(ppv)


#: The rules before the false-alarm budget: every test at 0.01 (the balance interval at 99 %).
OLD_LEVEL = 0.01


def run_setting(
    name: str,
    setting_index: int,
    validation: ls.ValidationProfile,
    reference: pd.DataFrame,
    nights_from: dict[str, pd.DataFrame],
    pool: np.ndarray,
    expected: tuple[float, float],
    false_flag_rate: float,
    args: argparse.Namespace,
    nannyml_dir: Path | None,
) -> list[dict[str, object]]:
    rules = MonitoringRules()
    level = rules.test_alpha
    rows: list[dict[str, object]] = []
    expected_prevalence = sum(expected) / 2
    for size in args.sizes:
        for kind, (prevalence, shift) in KINDS.items():
            source = nights_from[shift or "none"]
            labels = source["label"].to_numpy()
            target = prevalence or expected_prevalence
            replace = needs_replacement(labels, pool, size, target)
            # nights have their own generator, so the bootstrap size does not change which films a night gets
            night_rng = np.random.default_rng([SEED, size, list(KINDS).index(kind), setting_index])
            rng = np.random.default_rng([SEED + 1, size, list(KINDS).index(kind), setting_index])
            cbpe_nights = []
            for night_index in range(args.nights):
                night = source.iloc[draw_night(labels, pool, size, target, night_rng, replace)]
                # the gate's validated false flags: films beside the night's in-scope ones, counted by the scope test
                gated = int(night_rng.binomial(size, false_flag_rate))
                scope = out_of_scope_test(gated, size + gated, false_flag_rate=false_flag_rate, alpha=level)
                scope_old = scope.p_value < OLD_LEVEL
                scores, truth = night["p_pneumonia"].to_numpy(), night["label"].to_numpy()
                bbse = ls.estimate_prevalence(validation, scores, rng=rng, method="bbse")
                em = ls.estimate_prevalence(validation, scores, rng=rng, method="em")
                balance = ls.class_balance_alert(bbse, expected, alpha=level)
                balance_old = ls.class_balance_alert(bbse, expected, alpha=OLD_LEVEL / 2)
                balance_em = ls.class_balance_alert(em, expected, alpha=level)
                tests = drift_tests(reweighted_reference(reference, bbse.value, rng), night)
                drift, drift_old = drifted(tests, rules, level), drifted(tests, rules, OLD_LEVEL)
                # what the monitor without reweighting says (score column and features against the raw reference)
                drift_raw = drifted(drift_tests(reference, night), rules, level)
                perf = estimate_performance(validation, bbse, image_drift=drift, operating_point="screening")
                true_prev = float(truth.mean())
                rows.append({
                    "setting": name, "size": size, "kind": kind, "night": night_index, "replace": replace,
                    "true_prevalence": true_prev,
                    **{f"{m.method}_{k}": getattr(m, k) for m in (bbse, em) for k in ("value", "low", "high")},
                    "scope_alert": scope.alert, "balance_alert": balance, "balance_alert_em": balance_em,
                    "drift": drift, "drift_unweighted": drift_raw, "largest_effect": float(tests[:, 0].max()),
                    "alert": scope.alert or balance or drift, "alert_old": scope_old or balance_old or drift_old,
                    "est_sens": perf.sensitivity.value, "est_spec": perf.specificity.value, "est_ppv": perf.ppv.value,
                    **dict(zip(("cbpe_sens", "cbpe_spec", "cbpe_ppv"), cbpe_core(scores, validation))),
                    **dict(zip(("real_sens", "real_spec", "real_ppv"), realized(truth, scores, validation.threshold))),
                })
                cbpe_nights.append(pd.DataFrame({"night": night_index, "p": scores, "y": truth}))
            if nannyml_dir is not None:
                pd.concat(cbpe_nights).to_parquet(nannyml_dir / f"{name}_{size}_{kind}.parquet")
    return rows


def stratified_part(labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A seeded share of each class's indices."""
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: round((labels == c).sum() * share)]
                                   for c in (0, 1)]))


def nannyml_estimates(python: str, work: Path, validation: dict[str, np.ndarray], threshold: float) -> pd.DataFrame:
    pd.DataFrame({"p": validation["scores"], "y": validation["labels"]}).to_parquet(work / "reference.parquet")
    started = time.perf_counter()
    # NannyML phones home (usage statistics) unless told not to; this machine has no internet anyway
    environment = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    subprocess.run([python, str(_CBPE_SCRIPT), str(work), str(threshold)], check=True, env=environment)
    print(f"NannyML CBPE: {time.perf_counter() - started:.0f} s in its own venv")
    return pd.read_parquet(work / "nannyml_cbpe.parquet")


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    def mae(frame: pd.DataFrame, column: str) -> float:
        return float((frame[column] - frame["true_prevalence"]).abs().mean())

    def covered(frame: pd.DataFrame, method: str) -> float:
        t = frame["true_prevalence"]
        return float(((frame[f"{method}_low"] <= t) & (t <= frame[f"{method}_high"])).mean())

    out = []
    for (setting, size, kind), frame in rows.groupby(["setting", "size", "kind"], sort=False):
        record = {
            "setting": setting, "size": size, "kind": kind, "replace": bool(frame["replace"].iloc[0]),
            "any_alert": frame["alert"].mean(), "any_alert_old": frame["alert_old"].mean(),
            "scope": frame["scope_alert"].mean(), "balance": frame["balance_alert"].mean(),
            "balance_em": frame["balance_alert_em"].mean(), "drift": frame["drift"].mean(),
            "drift_unweighted": frame["drift_unweighted"].mean(), "largest_effect": frame["largest_effect"].mean(),
            "true_prev": frame["true_prevalence"].mean(),
            "bbse_mae": mae(frame, "bbse_value"), "bbse_cover": covered(frame, "bbse"),
            "em_mae": mae(frame, "em_value"), "em_cover": covered(frame, "em"),
        }
        # means over the nights: a bias shows as a gap between an estimate and the realized figure
        for figure in ("sens", "spec", "ppv"):
            for source in ("real", "est", "cbpe", "nml"):
                if f"{source}_{figure}" in frame:
                    record[f"{source}_{figure}"] = frame[f"{source}_{figure}"].mean()
        out.append(record)
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--nights", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--bootstrap", type=int, default=400, help="bootstrap replicates per estimate")
    parser.add_argument("--tolerance", type=float, default=0.05, help="expected range: training prevalence +/- this")
    parser.add_argument("--nannyml-python", default=None, help="python of a venv with nannyml, for CBPE")
    parser.add_argument("--settings", nargs="+", default=["heldout", "test", "audit"],
                        choices=["heldout", "test", "audit"], help="which settings to run (see the module docstring)")
    parser.add_argument("--rows-out", type=Path, default=None, help="write every night's row to this Parquet file")
    args = parser.parse_args()

    started = time.perf_counter()
    print(cpu_description())
    print(f"{args.nights} nights per size and kind; bootstrap {args.bootstrap}; seed {SEED}")
    data = load_pneumoniamnist(args.data)
    model = load_model(args.model)
    scorer = model.scorer()
    threshold = next(p.threshold for p in model.operating_points if p.name == "screening")
    false_flag_rate = float(((model.metadata or {}).get("scope_gate") or {}).get("false_flag_rate", 0.01))
    training_prevalence = float(data.train.labels.mean())
    expected = ls.expected_range(training_prevalence, args.tolerance)
    rules = MonitoringRules()
    print(f"model {model.name} {model.version}; screening threshold {threshold:.4f}; "
          f"training prevalence {training_prevalence:.3f}; expected range {expected[0]:.3f}-{expected[1]:.3f}; "
          f"false-alarm budget {rules.false_alarm_rate:g}, each test at {rules.test_alpha:.4f}; "
          f"gate false-flag rate {false_flag_rate:.4f}")

    test_labels = data.test.labels.reshape(-1)
    train_labels = data.train.labels.reshape(-1)
    shift_rng = np.random.default_rng(SEED)
    test_nights = {"none": frame_of(data.test.images, test_labels, scorer)}
    train_nights = {"none": frame_of(data.train.images, train_labels, scorer)}
    for shift in ("blur", "gamma", "noise", "contrast", "resolution"):
        test_nights[shift] = frame_of(acquisition_shift(data.test.images, shift, shift_rng), test_labels, scorer)
        if "heldout" in args.settings:
            train_nights[shift] = frame_of(acquisition_shift(data.train.images, shift, shift_rng), train_labels, scorer)
    val = frame_of(data.val.images, data.val.labels.reshape(-1), scorer)
    training_profile = pd.read_parquet(model.reference_profile_path)

    split_rng = np.random.default_rng(SEED + 1)
    audit = stratified_part(test_labels, 1 / 2, split_rng)
    reference_third = stratified_part(train_labels, 1 / 3, split_rng)
    settings = {  # labelled profile, drift reference, where the nights come from, the pool
        "heldout": (val, train_nights["none"].iloc[reference_third].reset_index(drop=True), train_nights,
                    np.setdiff1d(np.arange(len(train_labels)), reference_third)),
        "test": (val, training_profile, test_nights, np.arange(len(test_labels))),
        "audit": (test_nights["none"].iloc[audit].reset_index(drop=True), None, test_nights,
                  np.setdiff1d(np.arange(len(test_labels)), audit)),
    }
    rows: list[dict[str, object]] = []
    nannyml_frames = []
    with tempfile.TemporaryDirectory() as temporary:
        for setting_index, name in enumerate(settings):
            if name not in args.settings:
                continue
            profile_rows, reference, nights_from, pool = settings[name]
            validation = ls.ValidationProfile(profile_rows["label"].to_numpy(), profile_rows["p_pneumonia"].to_numpy(),
                                              threshold, rng=np.random.default_rng(SEED), n_bootstrap=args.bootstrap)
            drift_reference = reference if reference is not None else profile_rows
            print(f"{name}: {len(profile_rows)} labelled rows, TPR {validation.tpr:.3f}, FPR {validation.fpr:.3f}, "
                  f"Platt a={validation.calibration[0]:.2f} b={validation.calibration[1]:.2f}; drift reference "
                  f"{len(drift_reference)} rows; pool {len(pool)} films "
                  f"({int((nights_from['none']['label'].to_numpy()[pool] == 0).sum())} normal)")
            work = Path(temporary) / name
            work.mkdir()
            rows += run_setting(name, setting_index, validation, drift_reference, nights_from, pool, expected,
                                false_flag_rate, args, work if args.nannyml_python else None)
            if args.nannyml_python:
                estimates = nannyml_estimates(args.nannyml_python, work,
                                              {"scores": profile_rows["p_pneumonia"].to_numpy(),
                                               "labels": profile_rows["label"].to_numpy()}, threshold)
                nannyml_frames.append(estimates.assign(setting=name))
            if args.rows_out:  # a setting's rows are kept even if a later one fails
                pd.DataFrame(rows).to_parquet(args.rows_out.with_suffix(".partial.parquet"))
    frame = pd.DataFrame(rows)
    if nannyml_frames:
        frame = frame.merge(pd.concat(nannyml_frames), on=["setting", "size", "kind", "night"], how="left")
    if args.rows_out:
        frame.to_parquet(args.rows_out)
    print_table(frame)
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))


def print_table(frame: pd.DataFrame) -> None:
    table = summarise(frame)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
