"""In-scope rules: is an image one the model was made for?

Pixel gate (issue 14), the part that works for files without a header:

- :mod:`~pneumo_batch.scope.network`: the deployed int8 ``.tflite`` copied
  with its ReLU activations as extra outputs (same weights, bit-identical
  logit), run once per block for both the score and the features;
- :mod:`~pneumo_batch.scope.image_stats`: what the full-size decode shows
  that the 28 px input loses (colour, proportions, histogram, texture, layout);
- :mod:`~pneumo_batch.scope.gate`: loads ``scope_gate.npz`` from the model
  directory and turns a chunk into ``scope_score`` / ``in_scope`` /
  ``scope_reason`` (numpy only);
- :mod:`~pneumo_batch.scope.fit` and :mod:`~pneumo_batch.scope.exposure`:
  fit it for an existing model directory without retraining the network.

DICOM header rules (issue 13) will live beside these in ``header.py``.
"""
