"""The label store: reads arrive late, in pieces, twice, corrected, and with another root's ids."""

from __future__ import annotations

import pandas as pd
import pytest
from labels_nights import reads_csv, write_nights
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode
from pneumo_batch.errors import InputError
from pneumo_batch.labels import add_labels, join_labels, latest_labels, night_coverage, read_reads, read_scored_history
from pneumo_batch.labels.store import labels_folder


@pytest.fixture()
def root(tmp_path, scored_test_split):
    write_nights(tmp_path / "root", scored_test_split, [200, 200, 224])
    return tmp_path / "root"


def truth(scored, start, stop):
    part = scored.iloc[start:stop]
    return part["image_id"].tolist(), part["label"].astype(int).to_numpy()


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_reads_in_pieces_twice_corrected_and_foreign(root, scored_test_split, tmp_path):
    ids, labels = truth(scored_test_split, 0, 150)
    first = reads_csv(tmp_path / "a.csv", ids[:100], labels[:100], read_at="2026-11-03T10:00:00Z", source="report")
    result = invoke("labels", "add", str(first), "--output-root", str(root))
    assert result.exit_code == 0, result.output
    assert "100 films new" in result.output and "0 relabelled" in result.output

    again = invoke("labels", "add", str(first), "--output-root", str(root))
    assert again.exit_code == 0 and "nothing changed" in again.output
    as_parquet = tmp_path / "a.parquet"
    pd.read_csv(first).to_parquet(as_parquet)  # the same reads in the other format
    assert "nothing changed" in invoke("labels", "add", str(as_parquet), "--output-root", str(root)).output
    assert len(list(labels_folder(root).iterdir())) == 1

    # the second piece in words, with one film of the first piece corrected, and two ids of another root
    corrected = ids[5]
    second_ids = ids[100:150] + [corrected, "other-root-film-1", "other-root-film-2"]
    second_labels = [*labels[100:150], 1 - labels[5], 1, 0]
    second = reads_csv(tmp_path / "b.csv", second_ids, second_labels, words=True, read_at="2026-11-05T09:00:00")
    result = invoke("labels", "add", str(second), "--output-root", str(root))
    assert result.exit_code == 0, result.output
    assert "52 films new, 1 relabelled" in result.output
    assert "2 match none" in result.output and "other-root" not in result.output

    latest = latest_labels(read_reads(root)).set_index("id")
    assert latest.loc[corrected, "label"] == 1 - labels[5] and latest.loc[corrected, "n_changes"] == 1
    assert len(read_reads(root)) == 100 + 53  # history kept: the first read of the corrected film too

    scored = read_scored_history(root, ["image_id", "status", "in_scope"])
    joined, coverage = join_labels(scored, root)
    assert (coverage.n_matched, coverage.n_unmatched, coverage.n_relabelled) == (150, 2, 1)
    expected = dict(zip(ids, labels)) | {corrected: 1 - labels[5]}
    got = joined[joined["labelled"]].set_index("image_id")["label"].astype(int).to_dict()
    assert got == expected

    table, _ = night_coverage(root)
    first_night = table.iloc[0]
    in_scope = int(scored.iloc[:200].pipe(lambda f: ((f.status == "ok") & f.in_scope.fillna(True))).sum())
    assert (first_night["in_scope"], first_night["relabelled"]) == (in_scope, 1)
    assert first_night["labelled"] == int(joined.iloc[:200].pipe(lambda f: f.labelled & (f.status == "ok") & f.in_scope.fillna(True)).sum())
    shown = invoke("labels", "show", "--output-root", str(root))
    assert shown.exit_code == 0 and "2026-11-01" in shown.output and "other-root" not in shown.output


def test_an_older_read_does_not_override_a_newer_one(root, scored_test_split, tmp_path):
    ids, labels = truth(scored_test_split, 0, 3)
    add_labels(reads_csv(tmp_path / "new.csv", ids, labels, read_at="2026-11-10"), root)
    late_but_older = add_labels(reads_csv(tmp_path / "old.csv", ids, 1 - labels, read_at="2026-11-02"), root)
    assert late_but_older.n_changed == 0 and late_but_older.n_confirmed == 3  # the label that counts is unchanged
    latest = latest_labels(read_reads(root)).set_index("id")
    assert latest.loc[ids, "label"].tolist() == list(labels)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("film,label\nsecret-id,1\n", "no id column"),
        ("image_id,diagnosis\nsecret-id,1\n", "no label column"),
        ("image_id,label\nsecret-id,2\nother,1\n", "1 rows have a label outside"),
        ("image_id,label\nsecret-id,maybe\n", "label outside"),
        ("image_id,label\n,1\n", "empty image_id"),
        ("image_id,label,read_at\nsecret-id,1,yesterday-ish\n", "read_at"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(content, message, root, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = invoke("labels", "add", str(path), "--output-root", str(root))
    assert result.exit_code == ExitCode.USAGE
    assert message in result.output and "secret-id" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not labels_folder(root).exists()
    with pytest.raises(InputError):
        add_labels(path, root)


def test_sop_instance_uid_reads_match_dicom_rows(root, tmp_path):
    import pyarrow.parquet as pq

    night = root / "predictions" / "date=2026-11-01" / "predictions.parquet"
    frame = pq.read_table(night).to_pandas()
    frame["sop_instance_uid"] = [f"1.2.3.{i}" for i in range(len(frame))]
    frame.to_parquet(night)
    pd.DataFrame({"sop_instance_uid": ["1.2.3.0", "1.2.3.1"], "label": ["Pneumonia", "NORMAL"]}).to_parquet(tmp_path / "r.parquet")
    add_labels(tmp_path / "r.parquet", root)
    joined, coverage = join_labels(read_scored_history(root, ["image_id", "sop_instance_uid", "status"]), root)
    assert joined.loc[joined["labelled"], "label"].tolist() == [1, 0] and coverage.n_unmatched == 0
