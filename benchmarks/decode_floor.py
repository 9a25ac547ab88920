"""The decode floor: the cheapest way to turn a file into the model's 28 px input, which scoring cannot beat.

Pillow at the smallest DCT scale for a JPEG (any other raster decoded in
full), or decode_dicom for DICOM, then a centre crop and a bilinear resize.
score_benchmark runs it in worker processes (its floor); profile_benchmark
times it in one thread. pneumo-batch is imported only for DICOM, so the
floor of a raster input pays for none of it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 28
JPEG_DRAFT_SIDE = 4 * SIZE


def cheapest(path: str) -> np.ndarray:
    if path.endswith(".dcm"):
        from pneumo_batch.imaging.dicom import decode_dicom
        from pneumo_batch.imaging.raster import image_to_pixels

        return image_to_pixels(decode_dicom(path).image)
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft("L", (JPEG_DRAFT_SIDE, JPEG_DRAFT_SIDE))
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        square = image.crop((left, top, left + side, top + side))
        if square.mode != "L":
            square = square.convert("L")
        return np.asarray(square.resize((SIZE, SIZE), Image.Resampling.BILINEAR))
