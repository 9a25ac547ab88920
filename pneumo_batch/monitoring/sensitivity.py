"""The alert when realized sensitivity falls: a Bernoulli CUSUM on missed pneumonias.

Each labelled pneumonia that got a decision at the screening point (in
night order, then scoring time) is one Bernoulli trial: missed (not flagged)
or caught. In control the miss rate is ``1 - 0.98``; the CUSUM accumulates
the log-likelihood ratio against a miss rate of ``1 - 0.90`` and signals
when it reaches :attr:`RealizedRules.cusum_threshold`. A run of caught
pneumonias pulls it back to zero, so the alert clears once sensitivity is
back. The test runs on the rows the latest model scored: a new model starts
it afresh. Its monthly false-alarm rate and its delay for a fall from 0.98
to 0.90 are measured by ``benchmarks/realized_benchmark.py`` and listed in
docs/monitoring-rules.md.

A CUSUM was chosen over an SPRT (which stops) and a confidence bound on a
window (which forgets and needs a window size): it is the fastest detector
of a step change for a given false-alarm rate (Moustakides 1986) and needs
one number of state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pneumo_batch import metrics
from pneumo_batch import predictions as cols
from pneumo_batch.labels import NIGHT
from pneumo_batch.monitoring.realized_summary import RealizedRules, SensitivityTest


def sensitivity_test(labelled: pd.DataFrame, rules: RealizedRules) -> SensitivityTest | None:
    """The CUSUM over ``labelled`` in-scope rows (with ``label``, ``night`` and ``pred_<point>``)."""
    column = cols.prediction_column(rules.sensitivity_point)
    if column not in labelled or labelled.empty:
        return None
    # stable: films scored at the same moment keep their order in the night's file
    ordered = labelled.sort_values([NIGHT, cols.SCORED_AT], kind="mergesort", na_position="first")
    latest_model = ordered[cols.MODEL_SHA256].dropna()
    model = str(latest_model.iloc[-1]) if len(latest_model) else None
    if model is not None:
        ordered = ordered[(ordered[cols.MODEL_SHA256] == model).to_numpy()]
    decided = ordered[column].astype("boolean")
    positives = ordered[((ordered[cols.LABEL] == 1).fillna(False) & decided.notna()).to_numpy()]
    missed = ~positives[column].astype(bool).to_numpy()
    path = metrics.bernoulli_cusum(missed, 1 - rules.sensitivity_in_control, 1 - rules.sensitivity_out_of_control)
    above = path >= rules.cusum_threshold
    alert = bool(len(path) and above[-1])
    first_crossed = None
    if alert:
        below = np.flatnonzero(~above)
        first_crossed = positives[NIGHT].iloc[int(below[-1]) + 1 if len(below) else 0].isoformat()
    per_night = []
    if len(path):
        frame = pd.DataFrame({NIGHT: positives[NIGHT].to_numpy(), "missed": missed, "statistic": path})
        for night, group in frame.groupby(NIGHT, sort=True):
            per_night.append({"night": night.isoformat(), "positives": len(group), "missed": int(group["missed"].sum()),
                              "statistic": float(group["statistic"].iloc[-1])})
    return SensitivityTest(
        operating_point=rules.sensitivity_point,
        model_sha256=model,
        n_positives=len(positives),
        n_missed=int(missed.sum()),
        statistic=float(path[-1]) if len(path) else 0.0,
        threshold=rules.cusum_threshold,
        alert=alert,
        first_crossed=first_crossed,
        in_control=rules.sensitivity_in_control,
        out_of_control=rules.sensitivity_out_of_control,
        path=per_night,
    )
