"""Images per second from Orthanc over DICOMweb (WADO-RS) against the same files read from a folder.

    PNEUMO_BATCH_DATA=../shared/data/pneumoniamnist.npz .venv/bin/python benchmarks/pacs_benchmark.py

Inputs, made in a temp dir (never in the repository): the shared full-size
chest JPEGs (``xray_jpegs/`` beside the data file) encapsulated unchanged as
DX JPEG baseline DICOM, ``--copies`` times each (new UIDs per copy), written
to a folder and uploaded to a fresh Orthanc (tests/orthanc.py: the Debian
binary with its DICOMweb plugin, loopback, basic auth).

In one run on the same files, bytes only (no pixel decoding: that cost is
the same on both paths and the DICOM benchmark measures it):

- folder: read every file's bytes, then parse its header with pydicom;
- PACS: ``PacsSource.retrieve_all`` (QIDO is timed separately), at each
  ``--workers`` count, which also parses (dicomweb-client) and re-serialises
  to Part-10 bytes.

Orthanc and the client share the machine's cores, so on 2 cores the PACS
figure is a floor for a real PACS on its own server, not a ceiling.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from orthanc import OrthancServer  # noqa: E402
from pacs.pacs_corpus import FAST, jpeg_film, source_for  # noqa: E402

from pneumo_batch.pacs import parse_study_date  # noqa: E402

NIGHT = "20261130"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="DICOM copies of each shared JPEG")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    data = os.environ.get("PNEUMO_BATCH_DATA")
    if not data:
        sys.exit("set PNEUMO_BATCH_DATA to the PneumoniaMNIST .npz (the JPEGs sit beside it)")
    jpegs = sorted((Path(data).parent / "xray_jpegs").glob("*/*.jpeg"))
    print(f"{cpu_model()}; {os.cpu_count()} cores visible; Python {platform.python_version()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="pacs-bench-") as scratch_name:
        scratch = Path(scratch_name)
        folder = scratch / "films"
        folder.mkdir()
        films = [film for _ in range(args.copies) for path in jpegs if (film := jpeg_film(path, NIGHT))]
        for index, film in enumerate(films):
            (folder / f"{index:05d}.dcm").write_bytes(film.part10)
        megabytes = sum(len(film.part10) for film in films) / 1e6
        print(f"{len(films)} films, {megabytes:.0f} MB, JPEG baseline", flush=True)

        start = time.perf_counter()
        for path in sorted(folder.iterdir()):
            pydicom.dcmread(io.BytesIO(path.read_bytes()), stop_before_pixels=False)
        folder_s = time.perf_counter() - start
        print(f"  folder read + parse:        {len(films) / folder_s:8.1f} images/s", flush=True)

        with OrthancServer(scratch / "orthanc") as server:
            for film in films:
                server.upload(film.part10)
            pacs = source_for(server, settings=replace(FAST, retries=4))
            start = time.perf_counter()
            refs = pacs.search_films(parse_study_date(NIGHT))
            print(f"  QIDO-RS search:             {time.perf_counter() - start:8.3f} s for {len(refs)} instances")
            for workers in args.workers:
                tuned = source_for(server, settings=replace(FAST, workers=workers, max_in_flight=2 * workers))
                start = time.perf_counter()
                failed = sum(result.error is not None for result in tuned.retrieve_all(refs))
                seconds = time.perf_counter() - start
                print(f"  WADO-RS, {workers} worker(s):        {len(refs) / seconds:8.1f} images/s "
                      f"({folder_s / seconds:.2f}x the folder; {failed} failed)", flush=True)


if __name__ == "__main__":
    main()
