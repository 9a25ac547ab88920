"""Rows, seconds and peak memory of `pneumo-batch monitor` on archive-sized predictions files (issue 27).

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/monitor_memory_benchmark.py

Goal: at a million rows, peak RSS under 1 GB and under 30 s on 2 cores, with
the verdict of a night unchanged (the monitor samples larger batches, see
pneumo_batch/monitoring/sampling.py).

Inputs, made in a temp dir (never in the repository): PneumoniaMNIST's test
split written as PNGs and scored once with `pneumo-batch score` and the
shipped model (or ``--model``), so the rows carry every
column scoring writes (features, scope gate, thresholds); that file's rows
repeated, in row groups of scoring's size, to each of ``--rows`` (image ids
made unique). Each file is then monitored by ``pneumo-batch monitor`` in a
fresh process, against the model's training profile, with its Evidently
workspace; the peak RSS is the child's own maximum (``os.wait4``).

The verdict (the alerts that fired, or "no alert") is printed beside each
size: it should be the same at each, since every file holds the same rows.
The machine is shared: the load average is printed beside each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pneumo_batch.dataset import load_pneumoniamnist
from pneumo_batch.scoring.types import ROW_GROUP_ROWS
from machine import cpu_description  # benchmarks/machine.py

DEFAULT_ROWS = (10_000, 100_000, 1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="PneumoniaMNIST .npz (default: $PNEUMO_BATCH_DATA)")
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped default model)")
    parser.add_argument("--rows", type=int, nargs="+", default=list(DEFAULT_ROWS))
    args = parser.parse_args()
    print(cpu_description(), flush=True)
    cli = str(Path(sys.executable).with_name("pneumo-batch"))

    with tempfile.TemporaryDirectory(prefix="monitor-memory-benchmark-") as temporary:
        root = Path(temporary)
        scored = _score_test_split(cli, args.data, args.model, root)
        print(f"{'rows':>10} {'seconds':>8} {'peak RSS':>10} {'load':>5}  verdict (sample)", flush=True)
        for n_rows in args.rows:
            predictions = root / f"predictions-{n_rows}.parquet"
            _repeat_rows(scored, n_rows, predictions)
            out = root / f"report-{n_rows}"
            command = [cli, "monitor", str(predictions), "--out", str(out), *_model_option(args.model),
                       "--workspace", str(root / "workspace")]
            seconds, peak_bytes, code, stderr = _run_measured(command)
            if code != 0:
                sys.exit(f"monitor failed on {n_rows:,} rows ({code}): {stderr[-2000:]}")
            summary = json.loads((out / "summary.json").read_text())
            sample = summary.get("sample") or {}
            verdict = "; ".join(line.split(":", 1)[0] for line in summary["alerts"]) or "no alert"
            print(f"{n_rows:>10,} {seconds:>8.1f} {peak_bytes / 2**20:>7,.0f} MB {os.getloadavg()[0]:>5.1f}  "
                  f"{verdict} (sample {sample.get('size', n_rows):,} of {sample.get('n_rows', n_rows):,})", flush=True)
            predictions.unlink()
    print("goal at 1M rows: peak RSS < 1 GB (1,024 MB), < 30 s on 2 cores")


def _model_option(model: Path | None) -> list[str]:
    return [] if model is None else ["--model", str(model)]


def _score_test_split(cli: str, data: Path | None, model: Path | None, root: Path) -> Path:
    """The test split as PNGs, scored by `pneumo-batch score` with ``model``: a real predictions file."""
    dataset = load_pneumoniamnist(data)
    images = root / "images"
    images.mkdir()
    for index, pixels in enumerate(dataset.test.images):
        Image.fromarray(pixels).save(images / f"test-{index:04d}.png")
    scored = root / "scored.parquet"
    result = subprocess.run([cli, "score", str(images), "--out", str(scored), *_model_option(model), "--quiet"],
                            capture_output=True, text=True, check=False)
    if result.returncode not in (0, 3):  # 3: some rows are errors, still a predictions file
        sys.exit(f"score failed ({result.returncode}): {result.stderr[-2000:]}")
    return scored


def _repeat_rows(scored: Path, n_rows: int, out: Path) -> None:
    """``scored``'s rows repeated to ``n_rows``, written row group by row group (ids made unique)."""
    table = pq.read_table(scored)
    with pq.ParquetWriter(out, table.schema) as writer:
        for start in range(0, n_rows, ROW_GROUP_ROWS):
            rows = np.arange(start, min(start + ROW_GROUP_ROWS, n_rows))
            chunk = table.take(pa.array(rows % table.num_rows))
            ids = pa.array([f"{image_id}-{row}" for image_id, row in zip(chunk["image_id"].to_pylist(), rows)])
            chunk = chunk.set_column(chunk.schema.get_field_index("image_id"), "image_id", ids)
            writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)


def _run_measured(command: list[str]) -> tuple[float, int, int, str]:
    """Seconds, the child's peak RSS in bytes, its exit code, and its stderr."""
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        return seconds, usage.ru_maxrss * 1024, process.returncode, stderr.read().decode(errors="replace")


if __name__ == "__main__":
    main()
