"""Realized performance and scope by subgroup: a model can hold overall and fail infants, AP films or one scanner.

Dimensions: age band (under 1, 1-5, 6-12, 13-17 years, from the DICOM
``patient_age_years``), sex, view (AP/PA), input kind (the decoded
format: DICOM, JPEG, PNG) and scanner (manufacturer and model name). Never
station or institution names: they are not read at all.

Rows without the column (non-DICOM films have no header) fall in
``unknown``. A subgroup gets realized figures only with at least
:attr:`RealizedRules.subgroup_min_labelled` labelled films; its
out-of-scope share is counted from every scored row. The alert asks, for
each subgroup with that many labelled pneumonias, whether its films miss
pneumonia more often than the other films do (one-sided Fisher exact test
at the screening point); the p-values are Holm-corrected across every
subgroup tested, at :attr:`RealizedRules.subgroup_alpha` family-wise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.labels import LABELLED
from pneumo_batch.monitoring.realized_summary import RealizedRules

MANUFACTURER = "manufacturer"
MANUFACTURER_MODEL = "manufacturer_model_name"
SUBGROUP_SOURCE_COLUMNS = (
    cols.PATIENT_AGE_YEARS, "patient_sex", "view_position", "img_format", MANUFACTURER, MANUFACTURER_MODEL,
)
AGE_BANDS = ((0.0, 1.0, "under 1"), (1.0, 6.0, "1-5"), (6.0, 13.0, "6-12"), (13.0, 18.0, "13-17"))
UNKNOWN = "unknown"


def subgroup_labels(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """Each dimension's group of every row, as strings (``unknown`` where the header says nothing)."""
    def coded(column: str) -> tuple[np.ndarray, np.ndarray]:
        """Each row's code into the distinct cleaned values (the last one: ``unknown``)."""
        if column not in rows:
            return np.zeros(len(rows), dtype=np.int64), np.array([UNKNOWN], dtype=object)
        # clean the distinct values only, then spread them back by code (365 nights: a few hundred thousand rows)
        categories = rows[column].astype("category")
        names = categories.cat.categories.astype(str).str.strip().str.upper()
        names = np.asarray(names.where(names != "", UNKNOWN), dtype=object)
        codes = categories.cat.codes.to_numpy().astype(np.int64)
        return np.where(codes >= 0, codes, len(names)), np.append(names, UNKNOWN)

    def text(column: str) -> pd.Series:
        codes, names = coded(column)
        return pd.Series(names[codes], index=rows.index, dtype=object)

    def scanner() -> pd.Series:
        """``MANUFACTURER / MODEL`` built once per distinct pair (a million rows would make a million strings)."""
        (maker, makers), (model, models) = coded(MANUFACTURER), coded(MANUFACTURER_MODEL)
        pairs, which = np.unique(maker * len(models) + model, return_inverse=True)
        names = [f"{makers[p // len(models)]} / {models[p % len(models)]}" for p in pairs]
        names = np.array([UNKNOWN if n == f"{UNKNOWN} / {UNKNOWN}" else n for n in names], dtype=object)
        return pd.Series(names[which.reshape(-1)], index=rows.index, dtype=object)

    age = pd.to_numeric(rows.get(cols.PATIENT_AGE_YEARS), errors="coerce") if cols.PATIENT_AGE_YEARS in rows else pd.Series(np.nan, index=rows.index)
    band = pd.Series(UNKNOWN, index=rows.index, dtype=object)
    for low, high, name in AGE_BANDS:
        band[((age >= low) & (age < high)).to_numpy()] = name
    band[(age >= 18).to_numpy()] = "18 and over"
    return {"age_band": band, "sex": text("patient_sex"), "view": text("view_position"),
            "input_kind": text("img_format"), "scanner": scanner()}


def subgroup_figures(scored: pd.DataFrame, in_scope: np.ndarray, points: list[str], rules: RealizedRules) -> dict[str, Any]:
    """Per dimension and group: films scored, out of scope, labelled, and (with enough) sensitivity/specificity
    and the test. ``scored``: the rows with status ok; ``in_scope``: which of them are in scope."""
    from scipy.stats import fisher_exact
    from statsmodels.stats.multitest import multipletests

    point = rules.sensitivity_point if rules.sensitivity_point in points else (points[0] if points else None)
    rows = scored
    groups_of = subgroup_labels(rows)
    labelled = rows[LABELLED].to_numpy(dtype=bool) & in_scope
    label = rows[cols.LABEL].to_numpy(dtype=np.float64, na_value=np.nan)
    decided = rows[cols.prediction_column(point)].astype("boolean") if point else pd.Series(pd.NA, index=rows.index, dtype="boolean")
    flagged = decided.fillna(False).to_numpy(dtype=bool)
    has_decision = decided.notna().to_numpy()
    positive = labelled & (label == 1) & has_decision
    negative = labelled & (label == 0) & has_decision
    result: dict[str, Any] = {"operating_point": point, "min_labelled": rules.subgroup_min_labelled,
                              "alpha": rules.subgroup_alpha, "dimensions": {}, "alerts": []}
    tests: list[tuple[dict[str, Any], float]] = []
    for dimension, groups in groups_of.items():
        entries = []
        for group in sorted(groups.unique()):
            member = (groups == group).to_numpy()
            entry: dict[str, Any] = {"group": group, "n_scored": int(member.sum()),
                                     "n_out_of_scope": int((member & ~in_scope).sum()),
                                     "n_in_scope": int((member & in_scope).sum()),
                                     "n_labelled": int((member & labelled).sum()), "enough": False}
            if entry["n_labelled"] >= rules.subgroup_min_labelled:
                tp, fn = int((member & positive & flagged).sum()), int((member & positive & ~flagged).sum())
                tn, fp = int((member & negative & ~flagged).sum()), int((member & negative & flagged).sum())
                entry.update(enough=True, sensitivity=metrics.wilson_interval(tp, tp + fn, rules.confidence).as_dict(),
                             specificity=metrics.wilson_interval(tn, tn + fp, rules.confidence).as_dict())
                rest_fn = int((~member & positive & ~flagged).sum())
                rest_tp = int((~member & positive & flagged).sum())
                if tp + fn >= rules.subgroup_min_labelled and rest_fn + rest_tp:
                    _, p_value = fisher_exact([[fn, tp], [rest_fn, rest_tp]], alternative="greater")
                    entry["p_value"] = float(p_value)
                    tests.append((entry, float(p_value)))
            entries.append(entry)
        result["dimensions"][dimension] = entries
    if tests:
        reject, adjusted, _, _ = multipletests([p for _, p in tests], alpha=rules.subgroup_alpha, method="holm")
        for (entry, _), flag, value in zip(tests, reject, adjusted):
            entry["p_holm"] = float(value)
            entry["alert"] = bool(flag)
    for dimension, entries in result["dimensions"].items():
        result["alerts"].extend(f"{dimension} {e['group']}" for e in entries if e.get("alert"))
    return result
