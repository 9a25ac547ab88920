"""Realized performance by subgroup: age band, sex, view, input kind, scanner; Holm-corrected alerts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from labels_nights import write_resampled_nights
from pydicom.dataset import Dataset

from pneumo_batch import storage
from pneumo_batch.imaging.dicom_header import HEADER_COLUMNS, read_header
from pneumo_batch.labels import add_labels
from pneumo_batch.monitoring import refresh_realized
from pneumo_batch.monitoring.subgroups import subgroup_labels
from pneumo_batch.predictions import output_schema


def test_the_scanner_columns_come_from_the_header_and_never_the_station():
    ds = Dataset()
    ds.Manufacturer, ds.ManufacturerModelName = "Acme Imaging ", "DR-9000"
    ds.StationName, ds.InstitutionName = "XRAY-ROOM-SECRET", "Secret Hospital"
    header = read_header(ds)
    columns = header.columns()
    assert (columns["manufacturer"], columns["manufacturer_model_name"]) == ("Acme Imaging", "DR-9000")
    assert "SECRET" not in repr(columns).upper()
    assert {"manufacturer", "manufacturer_model_name"} <= set(HEADER_COLUMNS)
    assert {"manufacturer", "manufacturer_model_name"} <= set(output_schema([], pa.schema([])).names)


def test_age_bands():
    import pandas as pd

    rows = pd.DataFrame({"patient_age_years": [0.5, 1.0, 5.9, 6.0, 12.99, 13.0, 17.5, 30.0, None]})
    assert subgroup_labels(rows)["age_band"].tolist() == [
        "under 1", "1-5", "1-5", "6-12", "6-12", "13-17", "13-17", "18 and over", "unknown"]


@pytest.fixture()
def root_with_headers(tmp_path, scored_test_split):
    """Nights of test films given DICOM-like headers; scanner B's unflagged normals are read as pneumonia."""
    root = tmp_path / "root"
    rows = write_resampled_nights(root, scored_test_split, n_nights=6, size=300, seed=7)
    rng = np.random.default_rng(0)
    scanners: dict[str, str] = {}
    for partition in sorted((root / "predictions").glob("date=*/predictions.parquet")):
        frame = pq.read_table(partition).to_pandas()
        frame["patient_age_years"] = rng.choice([0.5, 3.0, 9.0, 15.0], len(frame))
        frame["patient_sex"] = rng.choice(["M", "F"], len(frame))
        frame["view_position"] = rng.choice(["AP", "PA"], len(frame))
        frame["manufacturer"] = rng.choice(["Acme", "Bolt"], len(frame), p=[0.7, 0.3])
        frame["manufacturer_model_name"] = "X1"
        storage.write_parquet(partition, pa.Table.from_pandas(frame, preserve_index=False))
        scanners.update(zip(frame["image_id"], frame["manufacturer"]))
    rows["manufacturer"] = rows["image_id"].map(scanners)
    bolt_missed = (rows["manufacturer"] == "Bolt") & ~rows["pred_screening"].astype(bool) & (rows["label"] == 0)
    rows.loc[bolt_missed[bolt_missed].index[: int(bolt_missed.sum() * 0.8)], "label"] = 1
    (tmp_path / "reads.csv").write_text(rows[["image_id", "label"]].to_csv(index=False))
    add_labels(tmp_path / "reads.csv", root)
    return root, rows


def test_subgroup_figures_and_the_holm_corrected_alert(root_with_headers):
    root, rows = root_with_headers
    subgroups = refresh_realized(root)["subgroups"]
    assert subgroups["alerts"] == ["scanner BOLT / X1"]
    scanners = {entry["group"]: entry for entry in subgroups["dimensions"]["scanner"]}
    bolt = rows[(rows["manufacturer"] == "Bolt") & (rows["status"] == "ok") & rows["in_scope"].fillna(True)]
    positives = bolt[bolt["label"] == 1]
    assert scanners["BOLT / X1"]["n_labelled"] == len(bolt)
    assert scanners["BOLT / X1"]["sensitivity"]["estimate"] == pytest.approx(positives["pred_screening"].astype(bool).mean())
    assert scanners["BOLT / X1"]["p_holm"] >= scanners["BOLT / X1"]["p_value"]
    assert {e["group"] for e in subgroups["dimensions"]["age_band"]} == {"under 1", "1-5", "6-12", "13-17"}
    assert all(not e.get("alert") for d, entries in subgroups["dimensions"].items() if d != "scanner" for e in entries)
    assert [e["group"] for e in subgroups["dimensions"]["input_kind"]] == ["PNG"]
