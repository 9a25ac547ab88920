"""Out-of-scope rows: kept out of drift and class balance, counted, and tested against the gate's false-flag rate.

Scoring marks each scored row ``in_scope`` (DICOM header rules, pixel gate)
and says why not in ``scope_reason``. Predictions without the column (older
files, runs without any scope rule) count as all in scope. Out-of-scope rows
keep status ``ok`` and their score, but they are not the population the model
was validated on, so drift, class balance and the estimates ignore them.

Every gate flags a few in-scope films by mistake. :func:`out_of_scope_test`
asks whether tonight's count is more than that validated false-flag rate
explains: a one-sided exact binomial test, so one stray flag in 100 films is
quiet and ten photographs are not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.monitoring.summary import ScopeTest

@dataclass(frozen=True)
class ScopeSplit:
    in_scope: pd.DataFrame
    """Scored rows in scope: what drift, balance and the estimates see."""
    out_of_scope: pd.DataFrame
    errors: pd.DataFrame


def split_by_scope(batch: pd.DataFrame) -> ScopeSplit:
    """The batch's scored in-scope rows, scored out-of-scope rows and error rows (each row in exactly one)."""
    scored = (batch[cols.STATUS] == cols.STATUS_OK).to_numpy()
    if cols.IN_SCOPE in batch:
        # null on a scored row means no rule judged it: in scope, as without the column
        outside = ~batch[cols.IN_SCOPE].astype("boolean").fillna(True).to_numpy(dtype=bool)
    else:
        outside = np.zeros(len(batch), dtype=bool)
    return ScopeSplit(
        in_scope=batch[scored & ~outside].reset_index(drop=True),
        out_of_scope=batch[scored & outside].reset_index(drop=True),
        errors=batch[~scored].reset_index(drop=True),
    )


def false_flag_rate(
    run_descriptions: Sequence[Mapping[str, Any]],
    model_metadata: Mapping[str, Any] | None,
    default: float,
) -> tuple[float, str]:
    """The gate's validated false-flag rate and where it came from.

    The run description's (the predictions file's metadata)
    ``scope_gate.false_flag_rate``, else the model metadata's, else
    ``default``, stated as such. A run that says its gate was not applied
    gets the default: its out-of-scope rows, if any, come from other rules.
    """
    for description in run_descriptions:
        gate = description.get("scope_gate")
        if isinstance(gate, Mapping):
            if gate.get("applied") is False:
                return default, "default (the run applied no scope gate)"
            if _is_rate(gate.get("false_flag_rate")):
                return float(gate["false_flag_rate"]), "run metadata: scope_gate.false_flag_rate"
    gate = (model_metadata or {}).get("scope_gate")
    if isinstance(gate, Mapping) and _is_rate(gate.get("false_flag_rate")):
        return float(gate["false_flag_rate"]), "model metadata: scope_gate.false_flag_rate"
    return default, "default (no validated rate in the run or model metadata)"


def _is_rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and 0 < float(value) < 1


def out_of_scope_test(
    n_out_of_scope: int, n: int, *, false_flag_rate: float, alpha: float = 0.01, source: str = "given"
) -> ScopeTest:
    """One-sided binomial test: are there more out-of-scope rows than ``false_flag_rate`` explains?

    ``p_value`` is P(X >= n_out_of_scope) for X ~ Binomial(n, false_flag_rate);
    an alert when it is below ``alpha``. ``n`` counts the rows that reached
    the scope rules (scored rows, in scope or not), not error rows. At a
    rate of 0.005 and alpha 0.01, 1 to 3 flags in 100 rows are quiet and 4 or
    more alert; at 0.01, up to 4 are quiet.
    """
    if n < 0 or not 0 <= n_out_of_scope <= n:
        raise InputError(f"out-of-scope count {n_out_of_scope} of {n} rows is impossible")
    if not 0 < false_flag_rate < 1:
        raise InputError(f"false-flag rate must lie in (0, 1), got {false_flag_rate}")
    p_value = _binomial_upper_tail(n_out_of_scope, n, false_flag_rate)
    return ScopeTest(
        n_out_of_scope=n_out_of_scope,
        n=n,
        share=n_out_of_scope / n if n else 0.0,
        false_flag_rate=false_flag_rate,
        false_flag_rate_source=source,
        expected=n * false_flag_rate,
        p_value=p_value,
        alpha=alpha,
        alert=bool(p_value < alpha),
    )


def _binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p): scipy's survival function, exact at any n (a sum of n - k terms was
    a second per million rows)."""
    from scipy import stats

    if k <= 0:
        return 1.0
    return float(min(1.0, stats.binom.sf(k - 1, n, p)))
