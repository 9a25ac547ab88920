"""The pure per-chunk function: consecutive input rows in, their finished output rows out.

:func:`score_rows` decodes each row's image, scores the decodable ones in
one call of the model (which, with a scope gate, also gives the gate's
features), judges their scope (header rules, pixel gate), computes the
monitoring features and assembles the rows in the output's columns. Every engine scores through it, so their rows,
statuses, reasons and scores are the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pneumo_batch import predictions as columns
from pneumo_batch.errors import ImageError, ModelError
from pneumo_batch.imaging.features import NUMERIC_IMAGE_FEATURES, intensity_features
from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE, pixels_to_model_input
from pneumo_batch.imaging.decoders import decode, header_of
from pneumo_batch.imaging.dicom_header import HEADER_COLUMNS, DicomHeader
from pneumo_batch.inputs import ID_COLUMN, PATH_COLUMN, InputSource, read_file, resolve_path
from pneumo_batch.model import ModelArtifact, Scorer
from pneumo_batch.predictions import output_schema
from pneumo_batch.imaging.thumbnail import Thumbnail
from pneumo_batch.scope import IN_SCOPE, ScopeVerdict, combine, header_verdict
from pneumo_batch.scope.gate import ScopeGate
from pneumo_batch.scope.header import DEFAULT_HEADER_RULES, HeaderScopeRules
from pneumo_batch.scoring.types import Predictor, now


@dataclass(frozen=True)
class RowContext:
    """What :func:`score_rows` needs besides the rows: shared by every chunk of a run, on any engine."""

    base_dir: str
    """What relative paths are relative to (:attr:`InputSource.base_dir`)."""
    root: str | None
    """The real path every image must stay within, or None."""
    source_column: str
    schema: pa.Schema
    """The output's columns (:func:`output_schema`), without key-value metadata."""
    operating_points: tuple[tuple[str, float], ...]
    model_sha256: str
    model_version: str
    run_id: str
    fetcher: Callable[[pa.Table], Iterable[bytes | ImageError]] | None
    """Fetches the chunk's images where the rows do not hold them (a PACS: :attr:`InputSource.fetcher`)."""
    header_rules: HeaderScopeRules
    """Which DICOM headers are in the model's scope (:mod:`pneumo_batch.scope.header`)."""
    scope_gate: ScopeGate | None
    """The model's pixel scope gate, or None (no gate, or the model's scorer was replaced)."""

    @classmethod
    def for_run(
        cls,
        source: InputSource,
        artifact: ModelArtifact,
        *,
        root: str | None,
        run_id: str,
        header_rules: HeaderScopeRules = DEFAULT_HEADER_RULES,
        with_scope_gate: bool = True,
    ) -> RowContext:
        """The context of a run of ``artifact`` over ``source``: its output columns, thresholds and scope rules.

        ``with_scope_gate`` False leaves the model's pixel gate out (callers
        that replace the model's scorer: a fake gives no features).
        """
        points = tuple((point.name, point.threshold) for point in artifact.operating_points)
        return cls(
            base_dir=str(source.base_dir),
            root=root,
            source_column=source.source_column,
            schema=output_schema([name for name, _ in points], source.passthrough),
            operating_points=points,
            model_sha256=artifact.variant_sha256(),
            model_version=artifact.version,
            run_id=run_id,
            fetcher=source.fetcher,
            header_rules=header_rules,
            scope_gate=artifact.scope_gate() if with_scope_gate else None,
        )


def score_rows(context: RowContext, scorer: Predictor, table: pa.Table, start: int) -> pa.Table:
    """Decode, score and describe consecutive input rows: their rows of the output, in order.

    ``table`` holds rows as :meth:`InputSource.chunks` yields them (any number,
    other columns ignored) and ``start`` is the first one's row number in the
    input (it names rows without an id: ``row-N``). Pure apart from reading
    the image files: the local and the Ray engine both score through it, so
    their rows, statuses, reasons and scores are the same.
    """
    count = table.num_rows
    from_paths = context.source_column == PATH_COLUMN
    sources = table.column(context.source_column).to_pylist()
    id_column = table.column(ID_COLUMN)
    if from_paths:
        shown_column = _joined(context.base_dir, table.column(PATH_COLUMN))
        shown = shown_column.to_pylist()
        id_column = pc.coalesce(id_column, pc.if_else(pc.equal(table.column(PATH_COLUMN), ""), None,
                                                      table.column(PATH_COLUMN)))
    else:
        shown_column = table.column(PATH_COLUMN) if PATH_COLUMN in table.column_names else pa.nulls(count, pa.string())
        shown = []
    ids = id_column.to_pylist()
    if id_column.null_count:
        ids = [f"row-{start + row}" if value is None else value for row, value in enumerate(ids)]
    pixels = np.zeros((count, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), dtype=np.uint8)
    ok = np.zeros(count, dtype=bool)
    errors: list[str | None] = [None] * count
    widths: list[int | None] = [None] * count
    heights: list[int | None] = [None] * count
    modes: list[str | None] = [None] * count
    formats: list[str | None] = [None] * count
    headers: list[DicomHeader | None] = [None] * count
    thumbnails: list[Thumbnail | None] = [None] * count
    root = context.root
    with_thumbnail = context.scope_gate is not None
    # A fetcher yields lazily (bounded memory); PACS unavailability stops the chunk, not one row.
    values = sources if context.fetcher is None else context.fetcher(table)
    for row, value in enumerate(values):
        try:
            if isinstance(value, ImageError):
                raise value
            if value is None:
                raise ImageError("path is null" if from_paths else "image is null")
            if from_paths:
                target = shown[row] if root is None else resolve_path(value, context.base_dir, root)
                if not value:
                    raise ImageError("empty path")
                decoded = decode(read_file(target), os.path.splitext(value)[1], with_thumbnail=with_thumbnail)
            else:
                decoded = decode(value, with_thumbnail=with_thumbnail)
        except ImageError as error:
            errors[row] = str(error)
            headers[row] = header_of(error)
            continue
        except Exception as error:  # one bad row must never stop the batch
            # Its type only: an exception's text may quote a header value, and values can identify a patient.
            errors[row] = f"unexpected error: {type(error).__name__}"
            continue
        pixels[row] = decoded.pixels
        ok[row] = True
        widths[row], heights[row] = decoded.width, decoded.height
        modes[row], formats[row] = decoded.mode, decoded.format
        headers[row], thumbnails[row] = decoded.header, decoded.thumbnail

    failed = ~ok
    scores = np.zeros(count, dtype=np.float32)
    scope_scores = np.full(count, np.nan)
    pixel_verdicts = [IN_SCOPE] * count
    features = {name: np.zeros(count, dtype=np.float32) for name in NUMERIC_IMAGE_FEATURES}
    good = int(ok.sum())
    if good:
        stack = pixels[ok]
        predicted, judged = _predict(context.scope_gate, scorer, stack, [thumbnails[row] for row in np.flatnonzero(ok)])
        if predicted.shape != (good,):
            raise ModelError(f"the model returned {predicted.shape[0]} scores for {good} images")
        scores[ok] = predicted
        if judged is not None:
            scope_scores[ok] = judged[0]
            for row, verdict in zip(np.flatnonzero(ok).tolist(), judged[1]):
                pixel_verdicts[row] = verdict
        for name, values in intensity_features(stack).items():
            features[name][ok] = values
    verdicts = [
        combine(header_verdict(headers[row], context.header_rules), pixel_verdicts[row]) if ok[row] else None
        for row in range(count)
    ]
    in_scope = [None if verdict is None else verdict.in_scope for verdict in verdicts]
    # Out-of-scope rows keep their score, for audit, but get no decision.
    undecided = failed | ~np.array([bool(value) for value in in_scope], dtype=bool)

    width_array = pa.array(widths, pa.int32())
    height_array = pa.array(heights, pa.int32())
    aspect = pc.cast(pc.divide(pc.cast(width_array, pa.float64()), pc.cast(height_array, pa.float64())), pa.float32())
    scored_at = pa.scalar(now(), pa.timestamp("us", tz="UTC"))
    points = context.operating_points
    arrays: list[pa.Array] = [
        pa.array(ids, pa.string()),
        shown_column.combine_chunks() if isinstance(shown_column, pa.ChunkedArray) else shown_column,
        pc.if_else(pa.array(ok), columns.STATUS_OK, columns.STATUS_ERROR),
        pa.array(errors, pa.string()),
        pa.array(scores, mask=failed),
        *(pa.array(scores.astype(np.float64) >= threshold, mask=undecided) for _, threshold in points),
        *(pa.repeat(pa.scalar(threshold, pa.float64()), count) for _, threshold in points),
        pa.repeat(pa.scalar(context.model_sha256, pa.string()), count),
        pa.repeat(pa.scalar(context.model_version, pa.string()), count),
        pa.repeat(pa.scalar(context.run_id, pa.string()), count),
        pa.repeat(scored_at, count),
        *(pa.array(features[name], mask=failed) for name in NUMERIC_IMAGE_FEATURES),
        width_array,
        height_array,
        aspect,
        pa.array(modes, pa.string()),
        pa.array(formats, pa.string()),
        *_header_arrays(headers, context.schema),
        pa.array(in_scope, pa.bool_()),
        pa.array([None if verdict is None else verdict.reason for verdict in verdicts], pa.string()),
        pa.array(scope_scores, mask=np.isnan(scope_scores)),
        pa.nulls(count, pa.string()),  # the report column: filled once reports are sent
    ]
    passthrough = context.schema.names[len(arrays) :]
    arrays += [table.column(name).combine_chunks() for name in passthrough]
    return pa.Table.from_arrays(arrays, schema=context.schema)


def _predict(
    gate: ScopeGate | None, scorer: Predictor, pixels: np.ndarray, thumbnails: list[Thumbnail | None]
) -> tuple[np.ndarray, tuple[np.ndarray, list[ScopeVerdict]] | None]:
    """Scores of decoded pixels and, with a gate, its scores and verdicts, from one call of the model."""
    model_input = pixels_to_model_input(pixels)
    if gate is None:
        return np.asarray(scorer.predict(model_input), dtype=np.float32).reshape(-1), None
    if not isinstance(scorer, Scorer):
        raise ModelError("the scope gate needs the model's own scorer (its features), not a replacement")
    output = scorer.predict_with_features(model_input)
    return output.probabilities, gate.judge(output.features, thumbnails)


def _header_arrays(headers: list[DicomHeader | None], schema: pa.Schema) -> list[pa.Array]:
    """The header columns (null where a row has no DICOM header), typed as in ``schema``."""
    values = [header.columns() if header is not None else None for header in headers]
    return [
        pa.array([None if row is None else row[name] for row in values], schema.field(name).type)
        for name in HEADER_COLUMNS
    ]


def _joined(base_dir: str, paths: pa.ChunkedArray) -> pa.Array:
    """``os.path.join(base_dir, path)`` for a column of paths, at once (nulls stay null)."""
    if os.sep != "/" or os.altsep:
        values = paths.to_pylist()
        return pa.array([None if value is None else os.path.join(base_dir, value) for value in values], pa.string())
    prefix = base_dir if base_dir.endswith("/") else base_dir + "/"
    combined = paths.combine_chunks()
    return pc.if_else(pc.starts_with(combined, "/"), combined, pc.binary_join_element_wise(prefix, combined, ""))
