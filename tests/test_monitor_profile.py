"""The training reference profile: same columns and types as scoring's predictions, real features, labels."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pneumo_batch import predictions as cols
from pneumo_batch.errors import InputError
from pneumo_batch.imaging.features import FILE_FEATURES, NUMERIC_IMAGE_FEATURES, intensity_features
from pneumo_batch.model import ModelArtifact
from pneumo_batch.monitoring import build_monitoring_report
from pneumo_batch.monitoring.reference import reference_profile_frame, write_reference_profile
from pneumo_batch.predictions import output_schema


@pytest.fixture()
def fake_artifact(tmp_path, fake_model_metadata) -> ModelArtifact:
    metadata = {
        **fake_model_metadata,
        "default_variant": "float32",
        "variants": {"float32": {"file": "model.tflite", "sha256": "ab" * 32}},
        "input": {"size": 28},
    }
    return ModelArtifact(directory=tmp_path, metadata=metadata)


def test_written_profile_has_scorings_schema(pneumoniamnist, fake_artifact, fake_scorer, tmp_path):
    val = pneumoniamnist.val
    path = write_reference_profile(
        fake_artifact, val.images, val.labels, tmp_path / "reference_profile.parquet", scorer=fake_scorer
    )
    table = pq.read_table(path)
    expected = output_schema(["screening", "balanced"], pa.schema([pa.field("label", pa.int8())]))
    assert table.schema.remove_metadata().equals(expected.remove_metadata())
    description = json.loads(table.schema.metadata[cols.PARQUET_METADATA_KEY])
    assert description["kind"] == "reference_profile"
    assert description["model_sha256"] == "ab" * 32 and description["rows"] == len(val)

    frame = table.to_pandas()
    assert (frame["status"] == "ok").all() and frame["error"].isna().all()
    assert frame["label"].tolist() == val.labels.tolist()
    features = intensity_features(val.images)
    for name in NUMERIC_IMAGE_FEATURES:
        np.testing.assert_allclose(frame[name], features[name], rtol=1e-6)
    for name in FILE_FEATURES:
        assert frame[name].isna().all()
    thresholds = {name: p["threshold"] for name, p in fake_artifact.metadata["operating_points"].items()}
    for name, threshold in thresholds.items():
        assert (frame[f"threshold_{name}"] == threshold).all()
        assert (frame[f"pred_{name}"] == (frame["p_pneumonia"] >= np.float32(threshold))).all()
    assert not (tmp_path / ".reference_profile.parquet.tmp").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["reference_profile.parquet"]


def test_written_profile_is_a_reference_for_monitoring(pneumoniamnist, fake_artifact, fake_scorer, tmp_path, make_predictions):
    train = pneumoniamnist.train
    path = write_reference_profile(fake_artifact, train.images, train.labels, tmp_path / "profile.parquet",
                                   scorer=fake_scorer)
    rows = np.random.default_rng(1).choice(len(train), 300, replace=False)
    summary = build_monitoring_report(
        make_predictions(train.images[rows], train.labels[rows]), path, tmp_path / "out",
        model_metadata=fake_artifact.metadata,
    )
    assert summary.alert is False
    assert {d.column for d in summary.drift} == {*NUMERIC_IMAGE_FEATURES, "p_pneumonia"}


def test_profile_frame_checks_its_inputs(pneumoniamnist):
    images = pneumoniamnist.val.images[:4]
    with pytest.raises(InputError, match="4 images but 3 labels"):
        reference_profile_frame(images, np.zeros(3), np.zeros(4), {"screening": 0.5})
    with pytest.raises(InputError, match="uint8"):
        reference_profile_frame(images.astype(np.float32), np.zeros(4), np.zeros(4), {"screening": 0.5})
    with pytest.raises(InputError, match="operating point"):
        reference_profile_frame(images, np.zeros(4), np.zeros(4), {})
