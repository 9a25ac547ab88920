"""Images per second through `pneumo-batch score` from Orthanc over DICOMweb, against the same files from a folder.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz nice .venv/bin/python benchmarks/pacs_benchmark.py

Inputs, made in a temp dir (never in the repository): the shared full-size
chest JPEGs (``xray_jpegs/`` beside the data file) encapsulated unchanged as
DX JPEG baseline DICOM, ``--copies`` times each (new UIDs per copy), written
to a folder and uploaded to a fresh Orthanc (tests/orthanc.py: the Debian
binary with its DICOMweb plugin, loopback, basic auth).

In one run on the same films, each a fresh ``pneumo-batch score`` process
with the shipped model and ``--workers`` worker processes (wall time,
start-up included):

- folder: ``score FOLDER``;
- PACS: ``score dicomweb+http://... --study-date ...`` (QIDO-RS, then WADO-RS
  per chunk in the workers, 4 parallel retrieves each);
- PACS rerun, the same command and ``--out``: nothing new, so no film is
  fetched or scored (the rows are taken from ``--out``);
- PACS rerun after ``--new`` more films arrived: only those are fetched;
- PACS + results: ``--send-results`` into the same ``--out`` (rows reused; one
  SR per in-scope film: WADO-RS metadata, highdicom, STOW-RS), then again
  into a PACS that already holds them (the idempotent rerun a night's retry is);
- and, bytes only, ``PacsSource.retrieve_all`` (the transfer floor).

The reruns print seconds and their speed-up over the first PACS run; the
summary line says how many rows were taken from ``--out``.

Orthanc and the client share the machine's cores, so on 2 cores the PACS
figures are a floor for a real PACS on its own server, not a ceiling.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from orthanc import OrthancServer  # noqa: E402
from pacs.pacs_corpus import FAST, jpeg_film, source_for  # noqa: E402

from pneumo_batch.pacs import AUTH_ENV, parse_study_date  # noqa: E402
from machine import cpu_description  # noqa: E402  # benchmarks/machine.py

NIGHT = "20261130"






def score_seconds(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one ``pneumo-batch score`` process, and its summary line."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pneumo_batch.cli", "score", *args], env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 3):
        sys.exit(f"score failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, done.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1, help="DICOM copies of each shared JPEG")
    parser.add_argument("--workers", type=int, default=2, help="score's worker processes")
    parser.add_argument("--batch-size", type=int, default=64, help="score's chunk size")
    parser.add_argument("--new", type=int, default=16, help="films that arrive before the second rerun")
    args = parser.parse_args()
    data = os.environ.get("PNEUMO_BATCH_DATA")
    if not data:
        sys.exit("set PNEUMO_BATCH_DATA to the PneumoniaMNIST .npz (the JPEGs sit beside it)")
    jpegs = sorted((Path(data).parent / "xray_jpegs").glob("*/*.jpeg"))
    print(f"{cpu_description()}; "
          f"Python {platform.python_version()}; score --workers {args.workers} --batch-size {args.batch_size}", flush=True)

    with tempfile.TemporaryDirectory(prefix="pacs-bench-") as scratch_name:
        scratch = Path(scratch_name)
        folder = scratch / "films"
        folder.mkdir()
        everything = [film for _ in range(args.copies) for path in jpegs if (film := jpeg_film(path, NIGHT))]
        films, arrivals = everything[: len(everything) - args.new], everything[len(everything) - args.new :]
        for index, film in enumerate(films):
            (folder / f"{index:05d}.dcm").write_bytes(film.part10)
        megabytes = sum(len(film.part10) for film in films) / 1e6
        print(f"{len(films)} films, {megabytes:.0f} MB, JPEG baseline", flush=True)
        common = ["--workers", str(args.workers), "--batch-size", str(args.batch_size)]
        env = dict(os.environ)

        folder_s, line = score_seconds([str(folder), "--out", str(scratch / "folder.parquet"), *common], env)
        print(f"  score FOLDER:                      {len(films) / folder_s:7.1f} images/s  ({line})", flush=True)

        with OrthancServer(scratch / "orthanc") as server:
            for film in films:
                server.upload(film.part10)
            env[AUTH_ENV] = f"{server.user}:{server.password}"
            pacs_args = [server.dicomweb_url, "--study-date", NIGHT, *common, "--out", str(scratch / "pacs.parquet")]
            first_s, line = score_seconds(pacs_args, env)
            print(f"  score PACS:                        {len(films) / first_s:7.1f} images/s  "
                  f"({folder_s / first_s:.2f}x the folder; {line})", flush=True)
            seconds, line = score_seconds(pacs_args, env)
            print(f"  rerun, same --out, nothing new:    {seconds:7.1f} s, {first_s / seconds:.1f}x faster than the "
                  f"first run ({line})", flush=True)
            for film in arrivals:
                server.upload(film.part10)
            seconds, line = score_seconds(pacs_args, env)
            print(f"  rerun after {len(arrivals)} new films:        {seconds:7.1f} s, {first_s / seconds:.1f}x faster than "
                  f"scoring all again ({line})", flush=True)
            total = len(films) + len(arrivals)
            for label in ("--send-results (rows reused):", "--send-results again:"):
                seconds, line = score_seconds([*pacs_args, "--send-results"], env)
                print(f"  {label:34s} {seconds:7.1f} s, {total / seconds:.1f} films/s ({line})", flush=True)

            pacs = source_for(server, settings=replace(FAST, retries=4))
            start = time.perf_counter()
            refs = pacs.search_films(parse_study_date(NIGHT))
            print(f"  QIDO-RS search:                    {time.perf_counter() - start:7.3f} s for {len(refs)} instances")
            start = time.perf_counter()
            failed = sum(result.error is not None for result in pacs.retrieve_all(refs))
            seconds = time.perf_counter() - start
            print(f"  WADO-RS bytes only, 4 threads:     {len(refs) / seconds:7.1f} images/s ({failed} failed)", flush=True)


if __name__ == "__main__":
    main()
