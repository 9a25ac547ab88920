"""Input discovery for scoring: directory scans, manifests and --root confinement (no model needed)."""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pneumo_batch.errors import ImageError, InputError
from pneumo_batch.inputs import iter_image_files, open_input, resolve_path


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_directory_scan_is_recursive_sorted_and_keeps_only_image_files(tmp_path):
    for name in ["b.png", "a.JPG", "sub/z.jpeg", "sub/deeper/c.tif", "a-sub/x.png", "notes.txt", ".hidden.png",
                 ".cache/y.png", "MANIFEST.csv"]:
        _touch(tmp_path / name)
    (tmp_path / "empty-dir.png").mkdir()  # a directory named like an image is not a file to score
    os.symlink(tmp_path / "missing.png", tmp_path / "broken.png")  # kept: it becomes an error row
    os.symlink(tmp_path / "sub", tmp_path / "linked-dir")  # symlinked folders are not followed

    found = list(iter_image_files(tmp_path))

    assert found == ["a-sub/x.png", "a.JPG", "b.png", "broken.png", "sub/deeper/c.tif", "sub/z.jpeg"]
    source = open_input(tmp_path)
    assert (source.kind, source.num_rows, source.source_column) == ("directory", 6, "path")
    chunks = list(source.chunks(4))
    assert [chunk.num_rows for chunk in chunks] == [4, 2]
    assert sum((chunk.column("image_id").to_pylist() for chunk in chunks), []) == found
    assert sum((chunk.column("path").to_pylist() for chunk in chunks), []) == found


def test_unlistable_subfolder_is_an_input_error_not_silently_skipped(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    _touch(locked / "a.png")
    _touch(tmp_path / "b.png")
    real_scandir = os.scandir

    def scandir(path):
        # root may list any folder, so the refusal is simulated where the scan asks
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match="cannot list .*locked: Permission denied"):
        open_input(tmp_path)


def test_manifest_is_streamed_in_exact_chunks_across_row_groups(tmp_path):
    table = pa.table({"path": [f"{i}.png" for i in range(23)], "label": list(range(23)), "site": ["a"] * 23})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=7)

    source = open_input(tmp_path / "m.parquet")

    assert (source.kind, source.num_rows, source.source_column, source.base_dir) == ("manifest", 23, "path", tmp_path)
    assert source.passthrough.names == ["label", "site"]
    chunks = list(source.chunks(10))
    assert [chunk.num_rows for chunk in chunks] == [10, 10, 3]
    assert sum((chunk.column("path").to_pylist() for chunk in chunks), []) == table.column("path").to_pylist()
    assert sum((chunk.column("label").to_pylist() for chunk in chunks), []) == list(range(23))
    assert chunks[0].column("image_id").null_count == 10  # no image_id column: filled in by scoring


def test_manifest_with_image_bytes_and_large_string_ids(tmp_path):
    table = pa.table(
        {
            "image_id": pa.array(["a", None], pa.large_string()),
            "image": pa.array([b"\x89PNG", None], pa.large_binary()),
        }
    )
    pq.write_table(table, tmp_path / "m.parquet")
    source = open_input(tmp_path / "m.parquet")
    assert source.source_column == "image"
    (chunk,) = source.chunks(8)
    assert chunk.column("image_id").type == pa.string()
    assert chunk.column("image_id").to_pylist() == ["a", None]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent.parquet", "input not found"),
        (lambda d: _touch(d / "bad.parquet", b"not parquet at all"), "cannot read .* as a Parquet manifest"),
        (lambda d: _write(d / "m.parquet", pa.table({"file": ["a.png"]})), "needs a 'path' or an 'image' column"),
        (lambda d: _write(d / "m.parquet", pa.table({"path": [1, 2]})), "'path' must hold strings"),
        (lambda d: _write(d / "m.parquet", pa.table({"image": ["text"]})), "'image' must hold bytes"),
    ],
    ids=["missing", "not-parquet", "no-path-or-image", "path-not-string", "image-not-bytes"],
)
def test_unusable_manifest_is_one_clear_input_error(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        open_input(make(tmp_path))


def _write(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def test_root_confines_dotdot_absolute_and_symlink_escapes(tmp_path):
    root = tmp_path / "root"
    outside = _touch(tmp_path / "outside.png")
    inside = _touch(root / "images" / "in.png")
    os.symlink(outside, root / "images" / "escape.png")
    os.symlink(inside, root / "images" / "alias.png")
    real_root = os.path.realpath(root)
    base = str(root / "images")

    assert resolve_path("in.png", base, real_root) == os.path.realpath(inside)
    assert resolve_path("alias.png", base, real_root) == os.path.realpath(inside)
    assert resolve_path("../images/in.png", base, real_root) == os.path.realpath(inside)
    assert resolve_path(str(inside), base, real_root) == os.path.realpath(inside)
    assert resolve_path("not-there.png", base, real_root).endswith("not-there.png")  # read later: "file not found"
    for escaping in ["../../outside.png", str(outside), "escape.png"]:
        with pytest.raises(ImageError, match="outside --root"):
            resolve_path(escaping, base, real_root)
    with pytest.raises(ImageError, match="empty path"):
        resolve_path("", base, real_root)
    # without a root nothing is confined
    assert resolve_path("../../outside.png", base, None) == os.path.join(base, "../../outside.png")


def test_root_that_is_a_prefix_of_a_sibling_does_not_admit_the_sibling(tmp_path):
    _touch(tmp_path / "data-other" / "a.png")
    (tmp_path / "data").mkdir()
    with pytest.raises(ImageError, match="outside --root"):
        resolve_path("../data-other/a.png", str(tmp_path / "data"), os.path.realpath(tmp_path / "data"))
