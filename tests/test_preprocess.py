import io

import numpy as np
import pytest
from PIL import Image

from pneumo_batch.errors import ImageError, PreprocessingError
from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.imaging.raster import MAX_IMAGE_PIXELS, decode_image


def _encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def xray(pneumoniamnist) -> np.ndarray:
    return pneumoniamnist.test.images[0]


def test_dataset_image_round_trips_exactly(xray):
    decoded = decode_image(_encode(Image.fromarray(xray)))
    np.testing.assert_array_equal(decoded.pixels, xray)
    assert (decoded.width, decoded.height, decoded.mode, decoded.format) == (28, 28, "L", "PNG")


def test_sixteen_bit_copy_gives_the_same_pixels(xray):
    sixteen = Image.fromarray(xray.astype(np.uint16) * 257)
    decoded = decode_image(_encode(sixteen))
    assert decoded.mode.startswith("I")
    np.testing.assert_array_equal(decoded.pixels, xray)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA", "CMYK"])
def test_colour_modes_become_the_same_grayscale(xray, mode):
    image = Image.fromarray(xray).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(_encode(image, fmt, **({"quality": 100} if fmt == "JPEG" else {})))
    assert decoded.mode == mode
    assert np.abs(decoded.pixels.astype(int) - xray).max() <= (6 if fmt == "JPEG" else 1)


def test_large_non_square_image_is_centre_cropped_and_downscaled(xray):
    big = Image.fromarray(xray).resize((560, 560), Image.Resampling.BICUBIC)
    # pad the sides with white bars: the centre crop must remove them
    canvas = Image.new("L", (800, 560), 255)
    canvas.paste(big, (120, 0))
    decoded = decode_image(_encode(canvas))
    assert (decoded.width, decoded.height) == (800, 560)
    np.testing.assert_array_equal(decoded.pixels, decode_image(_encode(big)).pixels)
    # an up- and down-sampled copy of the dataset image stays close to it
    assert np.sqrt(np.mean((decoded.pixels.astype(float) - xray) ** 2)) < 8


def test_jpeg_draft_decode_stays_close_to_full_decode(xray):
    big = Image.fromarray(xray).resize((1400, 1200), Image.Resampling.BICUBIC)
    data = _encode(big, "JPEG", quality=95)
    drafted = decode_image(data).pixels.astype(float)
    full = Image.open(io.BytesIO(data))
    side, left = 1200, 100
    reference = np.asarray(full.crop((left, 0, left + side, side)).resize((28, 28), Image.Resampling.BILINEAR), float)
    assert np.sqrt(np.mean((drafted - reference) ** 2)) < 3


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a recognised image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode|not a recognised"),
    ],
)
def test_bad_bytes_raise_image_error(payload, message):
    with pytest.raises(ImageError, match=message):
        decode_image(payload)


def test_truncated_file_raises_image_error(xray, tmp_path):
    data = _encode(Image.fromarray(xray).resize((400, 400)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cannot decode"):
        decode_image(path)


def test_missing_directory_and_empty_paths(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="directory"):
        decode_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        decode_image(tmp_path / "empty.png")


def test_decompression_bomb_is_refused_before_decoding():
    side = int(np.sqrt(MAX_IMAGE_PIXELS)) + 100
    bomb = _encode(Image.new("1", (side, side)))
    assert len(bomb) < 2_000_000
    with pytest.raises(ImageError, match="exceeds the limit|decompression bomb"):
        decode_image(bomb)


def test_model_input_contract():
    pixels = np.full((3, 28, 28), 255, np.uint8)
    model_input = pixels_to_model_input(pixels)
    assert model_input.shape == (3, 28, 28, 1) and model_input.dtype == np.float32
    assert model_input.max() == 1.0
    assert pixels_to_model_input(pixels[0]).shape == (1, 28, 28, 1)
    with pytest.raises(PreprocessingError, match="uint8"):
        pixels_to_model_input(pixels.astype(np.float32))
    with pytest.raises(PreprocessingError, match="28x28"):
        pixels_to_model_input(np.zeros((2, 32, 32), np.uint8))
