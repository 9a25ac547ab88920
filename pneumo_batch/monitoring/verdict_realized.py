"""The verdict page's realized-performance section: what the radiologists' reads say, beside the estimates.

From ``summary.json``'s ``realized_performance`` (windows, per-night
history, the sensitivity test) and ``subgroups``: a history plot of the
realized screening sensitivity and specificity per night (inline SVG, with
their 95 % intervals), the rolling windows' figures, the last nights'
label-free prevalence estimate against the reads, and the subgroups with
enough labelled films. Nothing here names a film.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_PLOT_WIDTH, _PLOT_HEIGHT, _MARGIN = 640, 180, 40
_LAST_NIGHTS = 7
_SERIES = (("sensitivity", "#b03a2e"), ("specificity", "#2e6db0"))


def realized_section(summary: Mapping[str, Any]) -> str:
    """The section's HTML, or an empty string when the night was monitored without a label store."""
    realized = summary.get("realized_performance")
    if not isinstance(realized, Mapping):
        return ""
    parts = ['<h2 id="realized">Realized performance (by the radiologists\' reads)</h2>']
    history = realized.get("history") or []
    if not history:
        parts.append("<p>No reads yet: add them with <code>pneumo-batch labels add</code>.</p>")
        return "".join(parts)
    test = realized.get("sensitivity_test") or {}
    parts.append(_history_plot(history, test.get("operating_point", "screening")))
    parts.append(_windows(realized.get("windows") or [], test.get("operating_point", "screening")))
    if test:
        state = "<strong>fell</strong>" if test.get("alert") else "holds"
        parts.append(f'<p id="sensitivity-test">Sensitivity {state} by the sequential test on missed pneumonias: '
                     f'{_e(test.get("n_missed"))} of {_e(test.get("n_positives"))} labelled pneumonias missed; CUSUM '
                     f'{float(test.get("statistic") or 0):.2f} against {_e(test.get("threshold"))}.</p>')
    parts.append(_estimates(history))
    parts.append(_subgroups(summary.get("subgroups")))
    return "".join(parts)


def _history_plot(history: Sequence[Mapping[str, Any]], point: str) -> str:
    """Per night: realized sensitivity and specificity (dots) with their intervals (lines), 0 to 1."""
    count = len(history)
    step = (_PLOT_WIDTH - 2 * _MARGIN) / max(count - 1, 1)

    def y(value: float) -> float:
        return _PLOT_HEIGHT - 20 - value * (_PLOT_HEIGHT - 30)

    marks = []
    for i, night in enumerate(history):
        x = _MARGIN + i * step + (0 if count > 1 else (_PLOT_WIDTH - 2 * _MARGIN) / 2)
        for offset, (name, colour) in enumerate(_SERIES):
            figure = night.get(name) or {}
            if figure.get("estimate") is None:
                continue
            dx = x + (offset - 0.5) * 3
            marks.append(f'<line x1="{dx:.1f}" x2="{dx:.1f}" y1="{y(figure["low"]):.1f}" y2="{y(figure["high"]):.1f}" '
                         f'stroke="{colour}" opacity="0.5"/><circle class="{name}" cx="{dx:.1f}" '
                         f'cy="{y(figure["estimate"]):.1f}" r="2.5" fill="{colour}"/>')
    grid = "".join(f'<line x1="{_MARGIN}" x2="{_PLOT_WIDTH - _MARGIN}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="4" y="{y(v) + 4:.1f}" font-size="10">{v:.1f}</text>' for v in (0.0, 0.5, 0.9, 1.0))
    legend = " ".join(f'<span style="color:{colour}">&#9679; {name}</span>' for name, colour in _SERIES)
    return (f'<figure id="realized-history" style="width:auto;font-size:0.85em"><svg width="{_PLOT_WIDTH}" height="{_PLOT_HEIGHT}" role="img" '
            f'aria-label="realized {point} sensitivity and specificity per night">{grid}{"".join(marks)}</svg>'
            f'<figcaption>Per night with reads, {history[0].get("night")} to {history[-1].get("night")}: realized '
            f'{_e(point)} sensitivity and specificity with 95 % intervals. {legend}</figcaption></figure>')


def _windows(windows: Sequence[Mapping[str, Any]], point: str) -> str:
    rows = []
    for window in windows:
        figures = (window.get("operating_points") or {}).get(point) or {}
        calibration = window.get("calibration") or {}
        auc = window.get("auc") or {}
        rows.append(
            f"<tr><th>last {_e(str(window.get('chunk', '')).rstrip('d'))} days</th>"
            f"<td>{_e(window.get('n_labelled'))} of {_e(window.get('n_in_scope'))} ({_pct(window.get('coverage'))})</td>"
            + "".join(f"<td>{_interval(figures.get(name))}</td>" for name in ("sensitivity", "specificity", "ppv", "npv"))
            + f"<td>{_interval(auc, percent=False)}</td><td>{_interval(calibration.get('ece'), percent=False)}</td></tr>"
        )
    head = ("<tr><th></th><th>films read</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th>"
            "<th>AUC</th><th>ECE</th></tr>")
    return f'<table id="realized-windows">{head}{"".join(rows)}</table>'


def _estimates(history: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for night in history[-_LAST_NIGHTS:]:
        if night.get("prevalence_estimated") is None:
            continue
        held = {True: "yes", False: "no", None: "n/a"}[night.get("estimate_held")]
        rows.append(f"<tr><th>{_e(night.get('night'))}</th><td>{_pct(night.get('coverage'))}</td>"
                    f"<td>{_pct(night.get('prevalence_estimated'))} ({_pct(night.get('prevalence_low'))} to "
                    f"{_pct(night.get('prevalence_high'))})</td><td>{_pct(night.get('prevalence_realized'))}</td>"
                    f"<td>{held}</td></tr>")
    if not rows:
        return ""
    head = ("<tr><th>night</th><th>films read</th><th>pneumonia share, estimated</th><th>by the reads</th>"
            "<th>every estimated interval held</th></tr>")
    return f'<h3>Estimate against the reads</h3><table id="realized-estimates">{head}{"".join(rows)}</table>'


def _subgroups(subgroups: Any) -> str:
    if not isinstance(subgroups, Mapping):
        return ""
    rows = []
    for dimension, entries in (subgroups.get("dimensions") or {}).items():
        for entry in entries:
            if not entry.get("enough"):
                continue
            flag = " <strong>misses more</strong>" if entry.get("alert") else ""
            rows.append(f"<tr><th>{_e(dimension.replace('_', ' '))}: {_e(entry.get('group'))}{flag}</th>"
                        f"<td>{_e(entry.get('n_labelled'))}</td><td>{_interval(entry.get('sensitivity'))}</td>"
                        f"<td>{_interval(entry.get('specificity'))}</td></tr>")
    if not rows:
        return ""
    head = "<tr><th>subgroup</th><th>films read</th><th>sensitivity</th><th>specificity</th></tr>"
    return (f'<h3>Subgroups with at least {_e(subgroups.get("min_labelled"))} films read</h3>'
            f'<table id="realized-subgroups">{head}{"".join(rows)}</table>')


def _interval(value: Any, *, percent: bool = True) -> str:
    if not isinstance(value, Mapping) or value.get("estimate") is None:
        return "n/a"
    show = _pct if percent else (lambda v: "n/a" if v is None else f"{float(v):.3f}")
    return f"{show(value['estimate'])} ({show(value.get('low'))} to {show(value.get('high'))})"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f} %"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
