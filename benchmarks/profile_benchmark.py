"""Where scoring's time goes: microseconds an image per stage, for each kind of input, on this CPU.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/profile_benchmark.py

Inputs, made in a temp dir at run time (never in the repository), ``--images``
files of each kind as hard links of a few originals:

- ``png28``: the test split written as 28x28 PNGs (``pneumo-batch export-images``);
- ``jpeg``: the full-size films of ``xray_jpegs/`` (beside the data file);
- ``dicom-explicit``: those films as explicit VR little endian DX files, 8-bit;
- ``dicom-jpeg``: those films as JPEG baseline DICOM files;

both DICOM kinds written with pydicom by the test corpus builder (tests/dicom_corpus.py).

What one worker does to a chunk of ``--images`` rows, stage by stage, each
timed over the whole chunk in this process (one thread and one BLAS thread, as a worker runs),
the fastest of ``--rounds`` rounds in CPU time of this process (garbage collector off while timing):

- read: the file's bytes (:func:`pneumo_batch.inputs.read_file`; warm page cache);
- decode: Pillow's open and load (JPEG at its reduced DCT scale), or
  :func:`~pneumo_batch.imaging.dicom.decode_dicom` (header, pixels, LUTs);
- 28 px input: centre crop and resize (:func:`~pneumo_batch.imaging.raster.image_to_pixels`)
  and the float input (:func:`~pneumo_batch.imaging.preprocess.pixels_to_model_input`);
- thumbnail: the gate's 64 px frame (:func:`~pneumo_batch.imaging.thumbnail.image_thumbnail`);
- image statistics: the gate's statistics of the chunk's thumbnails;
- network: the LiteRT call (with the gate's feature outputs when the model has a gate);
- gate distance: :meth:`~pneumo_batch.scope.gate.ScopeGate.assess` on the features and statistics;
- monitoring features: :func:`~pneumo_batch.imaging.features.intensity_features`;
- row assembly: :func:`~pneumo_batch.scoring.score_rows` on the chunk minus the stages above that it runs
  (by difference, so it also holds the scope rules and the decoder registry's dispatch);
- part write + read: the chunk's Arrow IPC part file written and memory-mapped back (local engine);
- Parquet write: the chunk appended to the output file.

Below the stages: their sum, ``score_rows`` end to end, ``score_batch`` in
this process (``workers=0``: the folder walk, parts and output included,
start-up excluded) and the decode floor (the cheapest decode + crop + resize
of :mod:`score_benchmark`, per image), with the floor as a share of
``score_batch``. A second table gives the network's cost an image by
interpreter block (images per LiteRT call). Timings on a shared machine are
noisy; compare the stages side by side rather than across runs.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import threadpoolctl
from PIL import Image

from pneumo_batch import storage
from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.export import export_split
from pneumo_batch.imaging.dicom import decode_dicom
from pneumo_batch.imaging.features import intensity_features
from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE, pixels_to_model_input
from pneumo_batch.imaging.raster import JPEG_DRAFT_MIN_SIDE, image_to_pixels
from pneumo_batch.imaging.thumbnail import image_thumbnail
from pneumo_batch.inputs import open_input, read_file
from pneumo_batch.model import Scorer, default_model_dir, load_model
from pneumo_batch.scope.image_stats import statistics_or_nan
from pneumo_batch.scoring import RowContext, score_batch, score_rows
from pneumo_batch.scoring.workdir import read_part
from pneumo_batch.scoring.writer import OutputWriter
from decode_floor import cheapest  # benchmarks/decode_floor.py
from dicom_films import load_corpus_builder  # benchmarks/dicom_films.py
from machine import cpu_description  # benchmarks/machine.py

KINDS = ("png28", "jpeg", "dicom-explicit", "dicom-jpeg")
STAGES = (
    "read", "decode", "28 px input", "thumbnail", "image statistics", "network", "gate distance",
    "monitoring features", "row assembly", "part write + read", "Parquet write",
)
#: The stages score_rows runs itself; the rest of its time is row assembly.
IN_SCORE_ROWS = STAGES[:8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped default)")
    parser.add_argument("--images", type=int, default=1024, help="images of each kind: one chunk (default 1024)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    args = parser.parse_args()

    # One BLAS thread, as in a scoring worker (pneumo_batch.scoring.engines.local): OpenBLAS's spinning
    # threads would otherwise add their CPU time to whichever stage ran a matrix product.
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    dataset = load_pneumoniamnist(args.data)
    artifact = load_model(args.model or default_model_dir())
    scorer = artifact.scorer()
    gate = artifact.scope_gate()
    print(f"{cpu_description()}")
    print(f"model {artifact.name} {artifact.version} ({artifact.scoring_file()[0].name}), "
          f"scope gate {'yes' if gate else 'no'}; {args.images:,} images a kind, one thread, "
          f"fastest of {args.rounds} rounds, CPU microseconds an image", flush=True)
    corpus = load_corpus_builder()
    films = sorted((dataset.path.parent / "xray_jpegs").rglob("*.jpeg"))
    columns: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="profile-benchmark-") as scratch_name:
        scratch = Path(scratch_name)
        for kind in args.kinds:
            folder = _inputs(kind, dataset, films, corpus, scratch, args.images)
            columns[kind] = _profile(folder, artifact, scorer, gate, scratch / kind, args.rounds)
            print(f"  {kind}: done", flush=True)
    _print_table(columns)
    print()
    _print_blocks(artifact, scorer, dataset, args.rounds)


# --------------------------------------------------------------------------- one kind, stage by stage


def _profile(folder: Path, artifact, scorer: Scorer, gate, out: Path, rounds: int) -> dict[str, float]:  # noqa: ANN001
    paths = sorted(str(path) for path in folder.iterdir())
    count = len(paths)
    fastest = _fastest_of(rounds)
    timed: dict[str, float] = {}
    contents = [read_file(path) for path in paths]
    timed["read"] = fastest(lambda: [read_file(path) for path in paths])
    images = [_decoded_image(data) for data in contents]
    timed["decode"] = fastest(lambda: [_decoded_image(data) for data in contents])
    pixels = np.stack([image_to_pixels(image) for image in images])
    timed["28 px input"] = fastest(lambda: pixels_to_model_input(np.stack([image_to_pixels(i) for i in images])))
    thumbnails = [image_thumbnail(image) for image in images] if gate is not None else []
    timed["thumbnail"] = fastest(lambda: [image_thumbnail(image) for image in images]) if gate is not None else 0.0
    statistics = statistics_or_nan(thumbnails) if gate is not None else None
    timed["image statistics"] = fastest(lambda: statistics_or_nan(thumbnails)) if gate is not None else 0.0
    model_input = pixels_to_model_input(pixels)
    output = scorer.predict_with_features(model_input, features=gate is not None)
    timed["network"] = fastest(lambda: scorer.predict_with_features(model_input, features=gate is not None))
    timed["gate distance"] = fastest(lambda: gate.assess(output.features, statistics)) if gate is not None else 0.0
    timed["monitoring features"] = fastest(lambda: intensity_features(pixels))

    source = open_input(folder)
    chunk = next(source.chunks(count))
    context = RowContext.for_run(source, artifact, root=None, run_id="profile")
    table = score_rows(context, scorer, chunk, 0)
    end_to_end = fastest(lambda: score_rows(context, scorer, chunk, 0))
    timed["row assembly"] = max(end_to_end - sum(timed[stage] for stage in IN_SCORE_ROWS), 0.0)
    part = out.with_suffix(".arrow")
    timed["part write + read"] = fastest(lambda: read_part(storage.write_arrow(part, table), count))
    timed["Parquet write"] = fastest(lambda: _write_parquet(out.with_suffix(".parquet"), table))

    outputs = iter(range(rounds))
    batch = fastest(lambda: score_batch(folder, out.with_name(f"{out.name}-run{next(outputs)}.parquet"),
                                        model=artifact, workers=0, batch_size=count))
    floor = fastest(lambda: [cheapest(path) for path in paths])
    stage_us = {stage: seconds / count * 1e6 for stage, seconds in timed.items()}
    return {
        **stage_us,
        "sum of stages": sum(stage_us.values()),
        "score_rows end to end": end_to_end / count * 1e6,
        "score_batch, workers=0": batch / count * 1e6,
        "decode floor": floor / count * 1e6,
        "floor / score_batch": floor / batch,
    }


def _decoded_image(data: bytes) -> Image.Image:
    """The decoded frame, as the decoders make it (raster: Pillow at the JPEG draft scale; DICOM: decode_dicom)."""
    if data[128:132] == b"DICM":
        return decode_dicom(data).image
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft(None, (JPEG_DRAFT_MIN_SIDE, JPEG_DRAFT_MIN_SIDE))
    image.load()
    return image


def _write_parquet(path: Path, table) -> None:  # noqa: ANN001
    with OutputWriter(path, table.schema) as writer:
        writer.write(table)
    pq.ParquetFile(path)  # the footer is there


def _fastest_of(rounds: int) -> Callable[[Callable[[], object]], float]:
    def fastest(work: Callable[[], object]) -> float:
        """Fastest CPU time of ``rounds`` runs, with the garbage collector held off while timing.

        The benchmark keeps every decoded image alive, so a collection inside a timed stage would charge
        it for walking objects the scoring itself never holds.
        """
        best = float("inf")
        for _ in range(rounds):
            gc.collect()
            gc.disable()
            try:
                started = time.process_time()
                work()
                best = min(best, time.process_time() - started)
            finally:
                gc.enable()
        return best

    return fastest


# --------------------------------------------------------------------------- the network by block size


def _print_blocks(artifact, scorer: Scorer, dataset, rounds: int) -> None:  # noqa: ANN001
    """The network's cost an image by images per LiteRT call (the scorer's block is model.INFERENCE_BLOCK)."""
    from ai_edge_litert.interpreter import Interpreter

    from pneumo_batch.model import INFERENCE_BLOCK

    content = artifact.scoring_file()[0].read_bytes()
    images = pixels_to_model_input(dataset.test.images[:512])
    fastest = _fastest_of(rounds)
    cells = []
    for block in (1, 16, 64, 256):
        interpreter = Interpreter(model_content=content, num_threads=1)
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], [block, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 1])
        interpreter.allocate_tensors()
        quantized = _quantized(images, interpreter.get_input_details()[0])

        def run(interpreter=interpreter, block=block, quantized=quantized) -> None:  # noqa: ANN001
            for start in range(0, len(quantized) - block + 1, block):
                interpreter.set_tensor(detail["index"], quantized[start : start + block])
                interpreter.invoke()

        used = len(images) // block * block
        cells.append(f"{block}: {fastest(run) / used * 1e6:.1f}")
    print(f"network alone (interpreter invoke, scoring file, one thread), us an image by block "
          f"(scoring uses {INFERENCE_BLOCK}): " + ", ".join(cells))


def _quantized(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.rint(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


# --------------------------------------------------------------------------- inputs and output


def _inputs(kind: str, dataset, films: list[Path], corpus, scratch: Path, count: int) -> Path:  # noqa: ANN001
    """A folder of ``count`` files of ``kind``: hard links of a few originals made in ``scratch``."""
    originals_dir = scratch / f"{kind}-originals"
    if kind == "png28":
        export_split(dataset, "test", originals_dir)
        originals = sorted(originals_dir.rglob("*.png"))
    elif kind == "jpeg":
        originals = films
    else:
        name = "explicit_vr_dx" if kind == "dicom-explicit" else "jpeg_baseline"
        originals = [corpus.build(film, originals_dir / f"{i:03d}", name) for i, film in enumerate(films)]
    folder = scratch / f"{kind}-in"
    folder.mkdir()
    for index in range(count):
        original = originals[index % len(originals)]
        link = folder / f"{index:06d}{original.suffix}"
        try:
            os.link(original, link)
        except OSError:
            link.write_bytes(original.read_bytes())
    return folder


def _print_table(columns: dict[str, dict[str, float]]) -> None:
    kinds = list(columns)
    print(f"\n{'stage (us an image)':<26}" + "".join(f"{kind:>16}" for kind in kinds))
    for row in next(iter(columns.values())):
        if row == "sum of stages":
            print("-" * (26 + 16 * len(kinds)))
        cells = "".join(
            f"{columns[kind][row]:>16.2f}" if row == "floor / score_batch" else f"{columns[kind][row]:>16.1f}"
            for kind in kinds
        )
        print(f"{row:<26}{cells}")




if __name__ == "__main__":
    main()
