"""The one input contract of the model, shared by training and scoring.

:func:`pixels_to_model_input` turns 28x28 ``uint8`` pixels, from a decoded
file (:mod:`pneumo_batch.imaging.raster`) or straight from the dataset, into
the model's float input. Training calls it on the dataset arrays; scoring
calls it on what a decoder returned.
"""

from __future__ import annotations

import numpy as np

from pneumo_batch.errors import PreprocessingError


MODEL_INPUT_SIZE = 28


def pixels_to_model_input(pixels: np.ndarray) -> np.ndarray:
    """Turn 28x28 ``uint8`` pixels, one image or a stack, into float32 (N, 28, 28, 1) in [0, 1].

    Raises :class:`PreprocessingError` for any other dtype or shape rather
    than guessing a scale.
    """
    if pixels.dtype != np.uint8:
        raise PreprocessingError(f"model input must be uint8 pixels, got {pixels.dtype}")
    stack = pixels[np.newaxis] if pixels.ndim == 2 else pixels
    if stack.ndim == 4 and stack.shape[-1] == 1:
        stack = stack[..., 0]
    if stack.ndim != 3 or stack.shape[1:] != (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE):
        raise PreprocessingError(
            f"model input must be {MODEL_INPUT_SIZE}x{MODEL_INPUT_SIZE} pixels, got shape {pixels.shape}"
        )
    return (stack.astype(np.float32) / np.float32(255.0))[..., np.newaxis]
