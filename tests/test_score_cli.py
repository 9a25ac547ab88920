"""`pneumo-batch score`: exit codes, one-line errors and the summary line, through the real CLI."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pneumo_batch.cli.app import app
from pneumo_batch.cli.common import ExitCode

runner = CliRunner()


def _score(*args: str):
    return runner.invoke(app, ["score", *args])


def test_all_rows_scored_exits_0_with_a_one_line_summary(exported_test_split, tiny_tflite_model, tmp_path):
    out = tmp_path / "p.parquet"
    result = _score(str(exported_test_split), "--out", str(out), "--model", str(tiny_tflite_model),
                    "--workers", "1", "--batch-size", "50")

    assert result.exit_code == ExitCode.OK, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "scoring 200 rows"
    assert lines[-1].startswith("scored 200 rows, 0 errors, ")
    assert lines[-1].endswith(f"images/s -> {out}")
    assert pq.read_table(out).num_rows == 200


def test_some_error_rows_exit_3_and_the_file_is_complete(tiny_tflite_model, tmp_path, pneumoniamnist):
    from PIL import Image

    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(pneumoniamnist.test.images[0]).save(images / "good.png")
    (images / "bad.png").write_text("not an image")
    out = tmp_path / "p.parquet"

    result = _score(str(images), "--out", str(out), "--model", str(tiny_tflite_model), "--workers", "1")

    assert result.exit_code == ExitCode.ROWS_FAILED == 3, result.output
    assert "scored 2 rows, 1 errors" in result.stderr
    table = pq.read_table(out)
    assert table.column("image_id").to_pylist() == ["bad.png", "good.png"]
    assert table.column("status").to_pylist() == ["error", "ok"]


def _no_image_column(tmp_path):
    pq.write_table(pa.table({"file": ["a.png"]}), tmp_path / "m.parquet")
    return tmp_path / "m.parquet"


def _not_parquet(tmp_path):
    (tmp_path / "m.parquet").write_text("hello")
    return tmp_path / "m.parquet"


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda d: d / "absent", [], "input not found"),
        (_no_image_column, [], "needs a 'path' or an 'image' column"),
        (_not_parquet, [], "as a Parquet manifest"),
        (lambda d: d, ["--model", "/no/such/model"], "not a model directory"),
        (lambda d: d, ["--root", "/no/such/root"], "--root is not a directory"),
    ],
    ids=["missing-input", "no-path-column", "unreadable-manifest", "missing-model", "missing-root"],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, tiny_tflite_model, make_input, extra, message):
    args = [str(make_input(tmp_path)), "--out", str(tmp_path / "o.parquet"), "--workers", "1"]
    if "--model" not in extra:
        args += ["--model", str(tiny_tflite_model)]
    result = _score(*args, *extra)

    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_without_model_option_the_default_model_is_required(tmp_path, monkeypatch):
    monkeypatch.setenv("PNEUMO_BATCH_MODEL", str(tmp_path / "nowhere"))
    (tmp_path / "in").mkdir()
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "o.parquet"))
    assert result.exit_code == ExitCode.USAGE
    assert "not a model directory" in result.stderr


def test_missing_out_option_is_a_usage_error(tmp_path):
    result = _score(str(tmp_path))
    assert result.exit_code == ExitCode.USAGE
    assert "--out" in result.output


def test_help_documents_the_command():
    result = _score("--help")
    assert result.exit_code == 0
    for text in ("--out", "--model", "--workers", "--batch-size", "--root", "resumes", "exit code is 3"):
        assert text in result.output
