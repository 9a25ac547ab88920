"""Distillation: a teacher model's probabilities for the training images, which :func:`~.fit.fit_model` blends into the targets.

The ``dsnet-distilled`` preset (``pneumo_dsnet``, 2.3 M multiply-adds an
image) learns from the labels and from the 3-block CNN
(``models/pneumo-cnn-v1``, 16.4 M): each target is half the label, half the
teacher's probability. The teacher's graded confidence tells the small
network which films are borderline, which the 0/1 labels cannot; trained on
the labels alone the same network lost 0.002 test AUC (3-seed means,
docs/training.md).
The teacher scores through its float32 file: what it learned, without
quantization steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pneumo_batch.imaging.preprocess import pixels_to_model_input
from pneumo_batch.model import ModelArtifact, load_model, model_dir_named

#: The teacher's file; the deployed one when a directory has no float32 variant.
TEACHER_VARIANT = "float32"


def load_teacher(name_or_path: str) -> ModelArtifact:
    return load_model(model_dir_named(name_or_path))


def teacher_scores(teacher: ModelArtifact, images: np.ndarray) -> np.ndarray:
    """The teacher's probabilities for uint8 images (N, 28, 28), float32 (N,).

    On one thread, so that the targets, and with them the seeded fit, do
    not hang on how LiteRT splits its float work between threads.
    """
    return teacher.scorer(_variant(teacher), num_threads=1).predict(pixels_to_model_input(images))


def teacher_record(teacher: ModelArtifact) -> dict[str, Any]:
    """What the metadata says of the teacher: enough to find and check it, nothing else."""
    variant = _variant(teacher) or teacher.default_variant
    return {"name": teacher.name, "version": teacher.version, "variant": variant,
            "sha256": teacher.variant_sha256(variant)}


def _variant(teacher: ModelArtifact) -> str | None:
    return TEACHER_VARIANT if TEACHER_VARIANT in teacher.metadata.get("variants", {}) else None
