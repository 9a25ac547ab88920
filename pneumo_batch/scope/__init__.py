"""In-scope rules: is an image one the model was made for?

Each rule gives a row a :class:`ScopeVerdict`; :func:`combine` joins them: a
row is out of scope when any rule says so, and its reason names the rule
("header: adult: age 51 y", "pixels: ..."). A row without a header (a PNG,
a JPEG) has no header verdict and stays in scope unless a pixel rule says
otherwise. Out-of-scope rows keep status ok and their score, but get no
decision (every ``pred_*`` is null).

DICOM header rules (issue 13): :mod:`~pneumo_batch.scope.header`, as data
with documented defaults.

Pixel gate (issue 14), the part that works for files without a header:

- :mod:`~pneumo_batch.scope.network`: the deployed int8 ``.tflite`` copied
  with its ReLU activations as extra outputs (same weights, bit-identical
  logit), run once per block for both the score and the features;
- :mod:`~pneumo_batch.scope.image_stats`: what the full-size decode shows
  that the 28 px input loses (colour, proportions, histogram, texture, layout);
- :mod:`~pneumo_batch.scope.gate`: loads ``scope_gate.npz`` from the model
  directory and turns a chunk into ``scope_score`` / ``in_scope`` /
  ``scope_reason`` (numpy only);
- :mod:`~pneumo_batch.scope.fit` and :mod:`~pneumo_batch.scope.exposure`:
  fit it for an existing model directory without retraining the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from pneumo_batch.imaging.dicom_header import DicomHeader
from pneumo_batch.scope.header import DEFAULT_HEADER_RULES, HeaderScopeRules, check_header

__all__ = ["IN_SCOPE", "ScopeVerdict", "combine", "header_verdict"]


@dataclass(frozen=True)
class ScopeVerdict:
    in_scope: bool
    reason: str | None = None
    """Null when in scope; else "RULE: short fixed phrase: details"."""


IN_SCOPE = ScopeVerdict(True)


def header_verdict(header: DicomHeader | None, rules: HeaderScopeRules = DEFAULT_HEADER_RULES) -> ScopeVerdict:
    """The header rules' verdict; in scope when there is no header (not a DICOM input)."""
    if header is None:
        return IN_SCOPE
    in_scope, reason = check_header(header, rules)
    return IN_SCOPE if in_scope else ScopeVerdict(False, f"header: {reason}")


def combine(*verdicts: ScopeVerdict) -> ScopeVerdict:
    """Out of scope if any verdict is; the reasons of all that say so, in order, joined by "; "."""
    reasons = [verdict.reason or "out of scope" for verdict in verdicts if not verdict.in_scope]
    return ScopeVerdict(False, "; ".join(reasons)) if reasons else IN_SCOPE
