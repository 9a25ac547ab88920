"""``index.html``: the report's first screen, the verdict in one sentence and the night's numbers.

Read by a data team with a minute to spare: a short headline ("Quiet
night", "Needs a look: the images changed") with the verdict sentence below
it, the numbers (rows, errors, out of scope, screening positives, the
prevalence estimate against training, estimated performance), the drifted
features with their effect sizes, and small thumbnails of the out-of-scope,
error and most unusual images (the heading says how many of how many are
shown), features named in words with the column beside, and, with a label
store, the realized performance (:mod:`~.verdict_realized`), linked to the
full Evidently report. One
self-contained file: styles inline, thumbnails as ``data:`` PNGs of the
28x28 model input (no header text can survive that), so it works from
``file://`` with no network. No image id or path is shown.

It reads the summary as ``summary.json`` holds it (``summary.as_dict()``),
using the newer keys (``verdict``, ``n_out_of_scope``, ``prevalence_estimate``,
``estimated_performance``) when they are there.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pneumo_batch import predictions as cols
from pneumo_batch import storage
from pneumo_batch.imaging.features import FEATURE_WORDS
from pneumo_batch.monitoring.verdict_realized import realized_section

INDEX_HTML = "index.html"
THUMBNAILS_PER_GROUP = 8
_THUMBNAIL_PX = 84


def verdict_sentence(summary: Mapping[str, Any]) -> str:
    """The summary's own sentence (led by "Needs a look:" on an alert), else one built from its alerts."""
    if summary.get("verdict"):
        sentence = str(summary["verdict"])
        if summary.get("alert") and not sentence.startswith("Needs a look"):
            sentence = f"Needs a look: {sentence[0].lower()}{sentence[1:]}"
        return sentence
    films = f"{summary['n_rows']:,} films"
    if summary.get("alert"):
        return f"Needs a look: {'; '.join(summary.get('alerts') or [])} ({films})."
    flagged = _screening_positives(summary)
    flagged_text = f", {flagged:,} flagged for urgent review" if flagged is not None else ""
    errors = summary.get("n_errors") or 0
    unusual = f"{errors:,} could not be read" if errors else "nothing unusual"
    return f"Quiet night: {films}{flagged_text}, {unusual}."


#: Each alert line's lead (``summary.json: alerts``) in the words of the headline.
_ALERT_WORDS = {
    "drift": "the images changed",
    "class balance": "the pneumonia share moved",
    "out of scope": "films that are not pediatric chest X-rays",
    "performance below validated": "measured performance fell",
    "sensitivity fell": "realized sensitivity fell",
    "subgroup misses more pneumonia": "a subgroup misses pneumonia",
}


def headline(summary: Mapping[str, Any]) -> str:
    """A few words: "Quiet night", "Too few films for a verdict", or "Needs a look: the images changed"."""
    if summary.get("alert"):
        leads = [str(line).split(":", 1)[0] for line in summary.get("alerts") or []]
        return "Needs a look: " + ", ".join(dict.fromkeys(_ALERT_WORDS.get(lead, lead) for lead in leads))
    if (summary.get("batch_size_rule") or {}).get("applied") == "too_few_rows":
        return "Too few films for a verdict"
    return "Quiet night"


def write_verdict_page(out_dir: Path, summary: Mapping[str, Any], rows: pd.DataFrame | None = None) -> Path:
    """Write ``out_dir/index.html`` for ``summary`` (a ``summary.json`` dict) and the night's ``rows``."""
    sentence = verdict_sentence(summary)
    title = headline(summary)
    parts = [
        f'<h1 id="verdict" class="{"alert" if summary.get("alert") else "quiet"}">{_e(title)}</h1>',
        f'<p id="detail">{_e(sentence)}</p>',
        _numbers(summary),
        _drift(summary),
        realized_section(summary),
    ]
    if rows is not None and len(rows):
        parts.append(_thumbnails(rows, _group_totals(summary)))
    report = (summary.get("files") or {}).get("html")
    if report:
        parts.append(f'<p><a id="full-report" href="{_e(report)}">The full Evidently report</a></p>')
    page = _PAGE.format(title=_e(title), body="\n".join(parts))
    return storage.write_text(Path(out_dir) / INDEX_HTML, page)


def _numbers(summary: Mapping[str, Any]) -> str:
    n_rows = summary.get("n_rows") or 0
    rows = [("Images", f"{n_rows:,}"), ("Scored", f"{summary.get('n_scored', 0):,}"),
            ("Could not be read", f"{summary.get('n_errors', 0):,} ({_pct(summary.get('error_share'))})")]
    if summary.get("n_out_of_scope") is not None:
        rows.append(("Not pediatric chest films (out of scope)", f"{summary['n_out_of_scope']:,}"))
    flagged = _screening_positives(summary)
    if flagged is not None:
        rows.append(("Flagged for urgent review (screening)", f"{flagged:,}"))
    prevalence = summary.get("prevalence_estimate")
    if isinstance(prevalence, Mapping) and prevalence.get("value") is not None:
        rows.append(("Pneumonia share, estimated", f"{_pct(prevalence['value'])} (95 %: {_pct(prevalence.get('low'))}"
                     f" to {_pct(prevalence.get('high'))}); training {_pct(prevalence.get('training'))}"))
    if summary.get("estimate_basis"):
        rows.append(("Estimates corrected with", str(summary["estimate_basis"])))
    performance = summary.get("estimated_performance")
    if isinstance(performance, Mapping) and performance.get("valid") is False:
        rows.append(("Estimated performance tonight", f"not valid: {performance.get('reason') or 'the images changed'}"))
    elif isinstance(performance, Mapping):
        for name in ("sensitivity", "specificity"):
            figure = performance.get(name)
            if isinstance(figure, Mapping) and figure.get("value") is not None:
                rows.append((f"Estimated {name} tonight", f"{_pct(figure['value'])} ({_pct(figure.get('low'))} to "
                             f"{_pct(figure.get('high'))})"))
    for figure in summary.get("performance") or []:
        value = figure.get("value") or {}
        if value.get("estimate") is not None:
            rows.append((f"Measured {figure['name']} (labels)", _pct(value["estimate"])))
    body = "".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>" for name, value in rows)
    return f'<table id="numbers">{body}</table>'


def _drift(summary: Mapping[str, Any]) -> str:
    drift = summary.get("drift") or []
    drifted = [d for d in drift if d.get("drifted")]
    if not drift:
        return ""
    title = f"{len(drifted)} of {len(drift)} features drifted" if drifted else "No feature drifted"
    bars = []
    largest = max([float(d.get("score") or 0) for d in drift] + [float(d.get("threshold") or 0) for d in drift] + [1e-9])
    for d in sorted(drift, key=lambda d: -float(d.get("score") or 0))[:12]:
        score, threshold = float(d.get("score") or 0), float(d.get("threshold") or 0)
        width, mark = 300 * score / largest, 300 * threshold / largest
        colour = "#c0392b" if d.get("drifted") else "#7f8c8d"
        column = str(d["column"])
        words = FEATURE_WORDS.get(column)
        name = f'{_e(words)} <code>{_e(column)}</code>' if words else f"<code>{_e(column)}</code>"
        bars.append(
            f'<div class="bar"><span class="name">{name}</span><svg width="310" height="14">'
            f'<rect width="{width:.1f}" height="14" fill="{colour}"/><line x1="{mark:.1f}" x2="{mark:.1f}" y1="0" '
            f'y2="14" stroke="#000"/></svg><span>{score:.2f}{" drifted" if d.get("drifted") else ""}</span></div>'
        )
    return (f'<h2 id="drift">{_e(title)}</h2><p>Effect size per feature (bar) against the threshold (line).</p>'
            + "".join(bars))


def _group_totals(summary: Mapping[str, Any]) -> dict[str, int] | None:
    """Each thumbnail group's size in the whole batch when ``rows`` are only its sample (``summary["sample"]``)."""
    if not (summary.get("sample") or {}).get("sampled"):
        return None
    return {"out": int(summary.get("n_out_of_scope") or 0), "errors": int(summary.get("n_errors") or 0),
            "unusual": int(summary.get("n_scored") or 0)}


def _thumbnails(rows: pd.DataFrame, totals: Mapping[str, int] | None = None) -> str:
    """Thumbnail groups; ``totals`` (a sampled batch) gives the groups' sizes in the whole batch for the headings."""
    groups = []
    if cols.IN_SCOPE in rows:
        out = rows[rows[cols.IN_SCOPE].astype("boolean").fillna(True) == False]  # noqa: E712 (nullable)
        groups.append(("out", "Out of scope", out, cols.SCOPE_REASON))
    groups.append(("errors", "Could not be read", rows[rows[cols.STATUS] != cols.STATUS_OK], cols.ERROR))
    if cols.SCOPE_SCORE in rows:
        ok = rows[rows[cols.STATUS] == cols.STATUS_OK]
        groups.append(("unusual", "Most unusual: least like the training images",
                       ok.sort_values(cols.SCOPE_SCORE, ascending=False), cols.SCOPE_SCORE))
    html_parts = []
    for key, title, group, caption in groups:
        if group.empty:
            continue
        shown = group.head(THUMBNAILS_PER_GROUP)
        cells = "".join(_thumbnail(row, caption) for _, row in shown.iterrows())
        total = len(group) if totals is None else totals.get(key, len(group))
        count = f"{total:,}" if len(shown) == total else f"{len(shown)} shown of {total:,}"
        if totals is not None:
            count += f", from a sample of {len(rows):,}"
        html_parts.append(f'<h2>{_e(title)} ({count})</h2><div class="thumbs">{cells}</div>')
    return "".join(html_parts)


def _thumbnail(row: pd.Series, caption: str) -> str:
    text, path = _value(row.get(caption)), _value(row.get(cols.PATH))
    label = f"{text:.2f}" if isinstance(text, (float, np.floating)) else str(text or "")
    label = label.split(": ", 1)[0] if caption == cols.ERROR else label
    source = _thumbnail_png(str(path)) if path else None
    picture = (f'<img alt="" width="{_THUMBNAIL_PX}" height="{_THUMBNAIL_PX}" src="data:image/png;base64,{source}">'
               if source else f'<div class="none" style="width:{_THUMBNAIL_PX}px;height:{_THUMBNAIL_PX}px"></div>')
    return f'<figure>{picture}<figcaption>{_e(label)}</figcaption></figure>'


def _thumbnail_png(path: str) -> str | None:
    """The image as the model saw it (28x28), enlarged: base64 PNG, or ``None`` when it cannot be read."""
    from PIL import Image

    from pneumo_batch.errors import ImageError
    from pneumo_batch.imaging.decoders import decode
    from pneumo_batch.inputs.files import read_file

    try:
        pixels = decode(read_file(path), Path(path).suffix).pixels
    except (ImageError, OSError, ValueError):
        return None
    image = Image.fromarray(np.asarray(pixels, dtype=np.uint8)).resize((_THUMBNAIL_PX, _THUMBNAIL_PX), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _value(value: Any) -> Any:
    """``None`` for a missing cell (None, NaN, pd.NA), else the value."""
    return None if value is None or (np.ndim(value) == 0 and pd.isna(value)) else value


def _screening_positives(summary: Mapping[str, Any]) -> int | None:
    for share in summary.get("class_balance") or []:
        if share.get("name") == "screening":
            return int(share["count"])
    return None


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * float(value):.1f} %"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; color: #222; }}
h1.quiet {{ color: #1e7e34; }} h1.alert {{ color: #b03a2e; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 0.25em 1em 0.25em 0; }}
th {{ font-weight: normal; color: #555; }}
.bar {{ display: flex; gap: 0.5em; align-items: center; font-size: 0.9em; }} .bar .name {{ width: 24em; }}
code {{ color: #777; font-size: 0.85em; }} #detail {{ font-size: 1.1em; }}
.thumbs {{ display: flex; flex-wrap: wrap; gap: 0.5em; }} figure {{ margin: 0; font-size: 0.75em; width: 84px; }}
.none {{ background: repeating-linear-gradient(45deg, #ddd, #ddd 6px, #eee 6px, #eee 12px); }}
</style></head>
<body>
{body}
</body></html>
"""
