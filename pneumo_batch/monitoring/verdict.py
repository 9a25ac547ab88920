"""The verdict in one sentence, for the person who reads the cron mail, and the one-line alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pneumo_batch.monitoring.summary import ColumnDrift, PerformanceFigure, PrevalenceFinding, ScopeTest


@dataclass(frozen=True)
class Findings:
    n_in_scope: int
    n_flagged: int
    n_errors: int
    enough_rows: bool
    drift: Sequence[ColumnDrift]
    drift_detected: bool
    prevalence: PrevalenceFinding | None
    class_balance_alert: bool
    scope: ScopeTest
    performance: Sequence[PerformanceFigure]
    performance_alert: bool
    sensitivity: Mapping[str, Any] | None = None
    """The realized history's sensitivity test (``realized_performance.sensitivity_test``)."""
    subgroup_alerts: Sequence[str] = ()

    @property
    def sensitivity_alert(self) -> bool:
        return bool(self.sensitivity and self.sensitivity.get("alert"))


def alert_lines(findings: Findings) -> list[str]:
    """One line per alert that fired (``summary.json: alerts``)."""
    lines = []
    if findings.drift_detected:
        lines.append("drift: " + ", ".join(d.column for d in findings.drift if d.drifted))
    if findings.class_balance_alert and findings.prevalence is not None:
        p = findings.prevalence
        share = f"labelled pneumonia share {_pct(p.realized)}" if p.basis == "labels" and p.realized is not None \
            else f"estimated pneumonia share {_pct(p.value)} ({_pct(p.low, False)}-{_pct(p.high)})"
        lines.append(f"class balance: {share}, expected {_pct(p.expected_low, False)}-{_pct(p.expected_high)}")
    if findings.scope.alert:
        s = findings.scope
        lines.append(f"out of scope: {s.n_out_of_scope} of {s.n} films, {s.expected:.1f} expected by chance")
    if findings.performance_alert:
        lines.append(
            "performance below validated: " + ", ".join(p.name for p in findings.performance if p.below_validated)
        )
    if findings.sensitivity_alert:
        lines.append("sensitivity fell: " + _missed(findings.sensitivity))
    if findings.subgroup_alerts:
        lines.append("subgroup misses more pneumonia: " + ", ".join(findings.subgroup_alerts))
    return lines


def _missed(test: Mapping[str, Any] | None) -> str:
    test = test or {}
    return (f"{test.get('n_missed')} of {test.get('n_positives')} labelled pneumonias missed at the "
            f"{test.get('operating_point')} point (CUSUM {test.get('statistic', 0):.1f} >= {test.get('threshold')}, "
            f"since {test.get('first_crossed')})")


def verdict_sentence(findings: Findings) -> str:
    """E.g. "Quiet night: 412 films, 38 flagged for urgent review, nothing unusual."."""
    films = f"{findings.n_in_scope} film{'s' if findings.n_in_scope != 1 else ''}"
    flagged = f"{findings.n_flagged} flagged for urgent review"
    tail = _errors(findings.n_errors)
    if findings.scope.n_out_of_scope and not findings.scope.alert:
        tail = f", {findings.scope.n_out_of_scope} more set aside as out of scope{tail}"
    if not findings.enough_rows and not findings.scope.alert and not findings.sensitivity_alert:
        return f"Too few films for a verdict: {films}, {flagged}{tail}."
    parts = []
    if findings.drift_detected:
        columns = ", ".join(d.column for d in findings.drift if d.drifted)
        parts.append(
            f"The images themselves changed tonight ({columns}): check the scanner, its settings or the export; "
            "the estimated pneumonia share and screening performance assume unchanged images and do not hold"
        )
    elif findings.class_balance_alert and findings.prevalence is not None:
        p = findings.prevalence
        share = p.realized if p.basis == "labels" and p.realized is not None else p.value
        who = "More healthy children" if share < p.expected_low else "More children with pneumonia"
        if p.basis == "labels":
            measured = f"pneumonia share {_pct(share)} by the labels (estimated without them {_pct(p.value)})"
        else:
            measured = f"estimated pneumonia share {_pct(p.value)} ({_pct(p.low, False)}-{_pct(p.high)})"
        parts.append(f"{who} tonight: {measured} against {_pct(p.training)} in training; the images themselves look as usual")
    if findings.scope.alert:
        s = findings.scope
        parts.append(
            f"{s.n_out_of_scope} of {s.n} films are not chest X-rays like the training ones "
            f"(about {s.expected:.0f} expected by chance): check what was sent"
        )
    if findings.performance_alert:
        names = ", ".join(p.name for p in findings.performance if p.below_validated)
        parts.append(f"measured against the labels, {names} fell below the validated figure")
    if findings.sensitivity_alert:
        parts.append("the radiologists' reads say sensitivity has fallen: " + _missed(findings.sensitivity))
    if findings.subgroup_alerts:
        parts.append("by the reads, these films miss pneumonia more often than the rest: " + ", ".join(findings.subgroup_alerts))
    if not parts:
        return f"Quiet night: {films}, {flagged}, nothing unusual{tail}."
    sentence = "; ".join(parts) + f" ({films}, {flagged}{tail})."
    return sentence[0].upper() + sentence[1:]


def _errors(n_errors: int) -> str:
    return f"; {n_errors} file{'s' if n_errors != 1 else ''} could not be read" if n_errors else ""


def _pct(share: float, sign: bool = True) -> str:
    return f"{100 * share:.0f} %" if sign else f"{100 * share:.0f}"
