"""Training: fit a network (:mod:`~.fit`), quantize it (:mod:`~.quantize`), choose operating points on
validation data (:mod:`~.evaluation`) and package a self-describing model directory (:mod:`~.package`,
with plots and a model card from :mod:`~.reporting`), and fine-tune a model's network on a site's labelled
films (:mod:`~.finetune`, behind ``pneumo-batch adapt``). Needs the ``train`` extra (TensorFlow), imported late.
"""

from pneumo_batch.training.fit import PRESETS, FitResult, TrainingConfig, config_from_preset, fit_model
from pneumo_batch.training.package import train_and_package
from pneumo_batch.training.quantize import MAX_QUANTIZATION_AUC_LOSS, VARIANT_PREFERENCE, choose_variant, convert_variants

__all__ = [
    "MAX_QUANTIZATION_AUC_LOSS",
    "PRESETS",
    "VARIANT_PREFERENCE",
    "FitResult",
    "TrainingConfig",
    "choose_variant",
    "config_from_preset",
    "convert_variants",
    "fit_model",
    "train_and_package",
]
