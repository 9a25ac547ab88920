"""Quantizing a fitted network into TFLite variants, and choosing the one to deploy.

Three variants: float32, dynamic-range and full-integer int8 (calibrated on
training images). The deployed one is int8 unless its test AUC is more than
:data:`MAX_QUANTIZATION_AUC_LOSS` below the Keras model's, then the next in
:data:`VARIANT_PREFERENCE` within it: the test split is a fidelity check of
quantization here, never a source of a threshold.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import numpy as np

from pneumo_batch.imaging.preprocess import MODEL_INPUT_SIZE, pixels_to_model_input


VARIANT_PREFERENCE = ("int8", "dynamic", "float32")
MAX_QUANTIZATION_AUC_LOSS = 0.005
VARIANT_DESCRIPTIONS = {
    "float32": "float32 weights and activations (no quantization)",
    "dynamic": "dynamic-range quantization: int8 weights, float activations",
    "int8": "full-integer quantization: int8 weights and activations, calibrated on training images; float32 input and output",
}


def convert_variants(model: Any, calibration_images: np.ndarray,
                     variants: tuple[str, ...] = ("float32", "dynamic", "int8")) -> dict[str, bytes]:
    """Convert a Keras model to TFLite bytes: float32, dynamic-range and full-integer int8 (or those asked)."""
    import tensorflow as tf

    # An all-black and an all-white image pin the input range to [0, 1]:
    # a sample whose brightest pixel is 248 would clip brighter images.
    extremes = np.stack([np.zeros((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), np.uint8), np.full((MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), 255, np.uint8)])
    calibration = pixels_to_model_input(np.concatenate([calibration_images, extremes]))

    def representative() -> Any:
        for index in range(len(calibration)):
            yield [calibration[index : index + 1]]

    converted = {}
    for variant in variants:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "int8":
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with warnings.catch_warnings():
            # The converter asks for input statistics that only matter for
            # integer model inputs; ours are float32, quantized in-graph.
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected", UserWarning)
            with contextlib.redirect_stdout(io.StringIO()):  # Keras' export prints the saved signature
                converted[variant] = converter.convert()
    return converted


def choose_variant(keras_test_auc: float, test_auc: dict[str, float]) -> tuple[str, str]:
    """The first variant in :data:`VARIANT_PREFERENCE` within the allowed AUC loss, and why."""
    for variant in VARIANT_PREFERENCE:
        loss = keras_test_auc - test_auc[variant]
        if loss <= MAX_QUANTIZATION_AUC_LOSS:
            skipped = VARIANT_PREFERENCE[: VARIANT_PREFERENCE.index(variant)]
            why = (
                f"test AUC {test_auc[variant]:.4f} is within {MAX_QUANTIZATION_AUC_LOSS} of the Keras model's "
                f"{keras_test_auc:.4f}"
            )
            if skipped:
                why += "; " + ", ".join(
                    f"{s} lost {keras_test_auc - test_auc[s]:.4f} AUC, more than allowed" for s in skipped
                )
            return variant, why
    best = max(test_auc, key=test_auc.__getitem__)
    return best, f"every variant lost more than {MAX_QUANTIZATION_AUC_LOSS} AUC; {best} lost least"
