"""How far high a label-free prevalence estimate runs on PneumoniaMNIST test nights, from the model's own figures.

The test split is not a pure label shift of the validation split the
estimate is corrected with: its normal films are flagged more often (the
shipped model's screening specificity is lower on test than on validation).
An estimate that reads the flag rate through validation's rates then runs
high by about (1 - prevalence) x (the extra false-positive rate) / (TPR - FPR
on validation). Tests derive their tolerance from this instead of a number
that holds for one model only.
"""

from __future__ import annotations

from pneumo_batch.model import ModelArtifact


def estimate_bias_on_test_nights(model: ModelArtifact, prevalence: float) -> float:
    point = model.metadata["operating_points"]["screening"]
    val_fpr = 1 - point["validation"]["specificity"]["estimate"]
    val_tpr = point["validation"]["sensitivity"]["estimate"]
    test_fpr = 1 - point["test"]["specificity"]["estimate"]
    return (1 - prevalence) * max(test_fpr - val_fpr, 0.0) / (val_tpr - val_fpr)
