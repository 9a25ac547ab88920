"""A full-size X-ray and its 28x28 PneumoniaMNIST twin get nearly the same score and the same decision.

The 40 shared JPEGs come from the source dataset's train split, so each has
a twin among PneumoniaMNIST's train/val images: the one whose pixels are
closest to what our preprocessing makes of the JPEG.
"""

import numpy as np

from pneumo_batch.model import load_model
from pneumo_batch.preprocess import decode_image, pixels_to_model_input


def test_full_size_xrays_score_like_their_pneumoniamnist_twins(shipped_default_model, xray_jpegs_dir, pneumoniamnist):
    files = sorted(xray_jpegs_dir.rglob("*.jpeg"))
    assert len(files) == 40
    ours = np.stack([decode_image(path).pixels for path in files])
    candidates = np.concatenate([pneumoniamnist.train.images, pneumoniamnist.val.images])
    labels = np.concatenate([pneumoniamnist.train.labels, pneumoniamnist.val.labels])
    distance = np.sqrt(
        ((ours.reshape(len(ours), 1, -1).astype(np.float32) - candidates.reshape(1, len(candidates), -1)) ** 2).mean(-1)
    )
    twins = distance.argmin(axis=1)
    # the data README measures about 5/255 RMSE for this preprocessing
    assert distance.min(axis=1).max() < 8
    assert [int(labels[t]) for t in twins] == [int(path.parent.name == "PNEUMONIA") for path in files]

    model = load_model(shipped_default_model)
    scorer = model.scorer()
    full_size = scorer.predict(pixels_to_model_input(ours))
    twin = scorer.predict(pixels_to_model_input(candidates[twins]))
    assert np.abs(full_size - twin).max() < 0.1
    assert np.median(np.abs(full_size - twin)) < 0.01
    for point in model.operating_points:
        np.testing.assert_array_equal(full_size >= point.threshold, twin >= point.threshold, err_msg=point.name)
