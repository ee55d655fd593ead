"""Bad data and damaged archives end in one clear line, never a traceback."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxcnn.cli import study_main
from jaxcnn.data import load_dataset
from jaxcnn.data.cache import _entry
from jaxcnn.errors import DataError
from jaxcnn.studies import REGULARIZATION as STUDY
from tests import archives


def load(path, cache_dir):
    return load_dataset(str(path), cache_dir=cache_dir, show_progress=False)


def assert_data_error(path, cache_dir, *fragments):
    with pytest.raises(DataError) as info:
        load(path, cache_dir)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def tree(tmp_path, files):
    return archives.write_folder(files, tmp_path / "t") / "tree"


def test_missing_path(tmp_path, cache_dir):
    assert_data_error(tmp_path / "nope", cache_dir, str(tmp_path / "nope"), "no such file")


def test_truncated_tar_xz(tmp_path, cache_dir):
    path = archives.write_tar(archives.folder_files()[0], tmp_path / "a.tar.xz", "w:xz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_data_error(path, cache_dir, str(path), "truncated")


def test_text_file_named_tar_gz(tmp_path, cache_dir):
    path = tmp_path / "cifar.tar.gz"
    path.write_text("this is not an archive\n")
    assert_data_error(path, cache_dir, str(path), "not a tar")


def test_official_binary_wrong_record_size(tmp_path, cache_dir):
    files = archives.official_files("binary")[0]
    files["cifar-10-batches-bin/data_batch_3.bin"] += b"\x00" * 10
    path = archives.write_tar(files, tmp_path / "b.tar.gz")
    assert_data_error(path, cache_dir, str(path), "data_batch_3.bin", "3,073-byte records")


@pytest.mark.parametrize("fmt, member", [("python", "cifar-10-batches-py/data_batch_4"),
                                         ("binary", "cifar-10-batches-bin/test_batch.bin")])
def test_official_missing_batch(tmp_path, cache_dir, fmt, member):
    files = archives.official_files(fmt)[0]
    del files[member]
    path = archives.write_tar(files, tmp_path / "o.tar.gz")
    assert_data_error(path, cache_dir, str(path), "missing " + member.rsplit("/", 1)[1])


def test_official_python_batch_with_wrong_shape(tmp_path, cache_dir):
    import pickle

    files = archives.official_files("python")[0]
    files["cifar-10-batches-py/data_batch_2"] = pickle.dumps(
        {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
    path = archives.write_tar(files, tmp_path / "p.tar.gz")
    assert_data_error(path, cache_dir, "data_batch_2", "(4, 100)")


def test_pickle_that_runs_code_is_refused(tmp_path, cache_dir):
    files = archives.official_files("python")[0]
    # A pickle that would call os.system: the loader must refuse to resolve it.
    files["cifar-10-batches-py/data_batch_1"] = b"cos\nsystem\n(S'echo pwned'\ntR."
    path = archives.write_tar(files, tmp_path / "p.tar.gz")
    assert_data_error(path, cache_dir, "data_batch_1", "refusing to load os.system")


def test_corrupt_image(tmp_path, cache_dir):
    files = archives.folder_files()[0]
    files["tree/train/dog/0001.png"] = files["tree/train/dog/0001.png"][:40]
    message = assert_data_error(tree(tmp_path, files), cache_dir, "train/dog/0001.png",
                                "not a readable")
    files["tree/train/dog/0001.png"] = b"not an image at all"
    other = assert_data_error(tree(tmp_path / "b", files), cache_dir, "train/dog/0001.png",
                              "cannot identify image file")
    for text in (message, other):  # the file's name, not Pillow's in-memory buffer
        assert "BytesIO" not in text and "0x" not in text


def test_non_image_file(tmp_path, cache_dir):
    files = archives.folder_files()[0]
    files["tree/test/cat/notes.txt"] = b"hello"
    assert_data_error(tree(tmp_path, files), cache_dir, "test/cat/notes.txt", "not an image")


def test_empty_class_folder(tmp_path, cache_dir):
    files = archives.folder_files()[0]
    root = tree(tmp_path, files)
    for png in (root / "train" / "ship").iterdir():
        png.unlink()
    assert_data_error(root, cache_dir, "train/ship", "holds no images")


def test_empty_class_folder_in_a_tar(tmp_path, cache_dir):
    files = {k: v for k, v in archives.folder_files()[0].items() if "/test/ship/" not in k}
    path = archives.write_tar(files, tmp_path / "t.tar", "w")
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("tree/test/ship")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    assert_data_error(path, cache_dir, "test/ship", "holds no images")


def test_train_and_test_name_different_classes(tmp_path, cache_dir):
    files = archives.folder_files()[0]
    files = {k.replace("/test/ship/", "/test/boat/"): v for k, v in files.items()}
    assert_data_error(tree(tmp_path, files), cache_dir, "different classes", "'ship'", "'boat'")


@pytest.mark.parametrize("shape, found", [((32, 32), "32x32x1 (e.g. train/cat/0000.png)"),
                                         ((64, 48, 3), "64x48x3 (e.g. train/cat/0000.png)")])
def test_a_tree_of_mixed_sizes_or_channels_names_a_file_of_each(tmp_path, cache_dir, shape,
                                                                 found):
    files = archives.folder_files()[0]
    files["tree/train/cat/0000.png"] = archives.png_bytes(np.zeros(shape, np.uint8))
    assert_data_error(tree(tmp_path, files), cache_dir, "differ in size or channels", found,
                      "32x32x3 (e.g. train/cat/0001.png)")


def test_rgba_and_palette_images_are_converted_with_a_note(tmp_path, cache_dir, capsys):
    from PIL import Image

    files, expected = archives.folder_files()
    rgba = np.concatenate([expected["train"][0][0], np.full((32, 32, 1), 7, np.uint8)], -1)
    files["tree/train/cat/0000.png"] = archives.png_bytes(rgba)
    palette = io.BytesIO()
    Image.fromarray(expected["train"][0][1]).convert("P").save(palette, format="PNG")
    files["tree/train/cat/0001.png"] = palette.getvalue()
    ds = load(tree(tmp_path, files), cache_dir)
    assert ds.train_images.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(ds.train_images[0], expected["train"][0][0])  # alpha dropped
    assert "converted 2 images to RGB (from P, RGBA)" in capsys.readouterr().err


def test_a_grayscale_tree_of_any_size_loads_as_one_channel(tmp_path, cache_dir):
    rng = np.random.default_rng(0)
    files = {f"tree/{split}/{c}/{i}.png": archives.png_bytes(
        rng.integers(0, 256, (28, 20), dtype=np.uint8))
        for split in ("train", "test") for c in ("a", "b", "c") for i in range(2)}
    ds = load(tree(tmp_path, files), cache_dir)
    assert ds.train_images.shape == (6, 28, 20, 1) and ds.class_names == ("a", "b", "c")


def test_corrupt_cache_is_rebuilt(tmp_path, cache_dir, capsys):
    path = archives.write_tar(archives.folder_files()[0], tmp_path / "a.tar.gz")
    first = load(path, cache_dir)
    entry = _entry(cache_dir, first.fingerprint)
    entry.write_bytes(entry.read_bytes()[:100])  # damage it
    second = load(path, cache_dir)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert "damaged" in capsys.readouterr().err
    assert load(path, cache_dir).fingerprint == first.fingerprint  # rebuilt and valid again


def test_cli_bad_archive_is_one_line_without_output(tmp_path, capsys):
    """No leftover progress bar either: output is not a terminal here."""
    bad = tmp_path / "bad.tar.gz"
    bad.write_text("nope")
    out = tmp_path / "out"
    assert study_main(STUDY, ["--data", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0]
    assert not out.exists()


def test_cli_corrupt_image_tree_is_one_line_without_a_progress_bar(tmp_path, capsys):
    files = archives.folder_files()[0]
    files["tree/test/cat/0000.png"] = b"\x89PNG broken"
    root = tree(tmp_path, files)
    assert study_main(STUDY, ["--data", str(root), "--out", str(tmp_path / "out"),
                              "--cache-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "test/cat/0000.png" in err and "decoding images" not in err


# --- randomly damaged archives: they load correctly or raise DataError -------------------

def _pristine() -> dict[str, bytes]:
    python_files = archives.official_files("python", per_batch=2)[0]
    binary_files = archives.official_files("binary", per_batch=2)[0]
    official_py = archives.write_tar_bytes(python_files, "w:gz")
    official_bin = archives.write_tar_bytes(binary_files, "w")
    folder = archives.write_tar_bytes(archives.folder_files(per_class=1)[0], "w:xz")
    return {"python.tar.gz": official_py, "binary.tar": official_bin, "tree.tar.xz": folder}


PRISTINE = _pristine()

damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)),
                                         min_size=1, max_size=8)),
    st.tuples(st.just("insert"), st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=64))),
)


def _damage(blob: bytes, how) -> bytes:
    kind, arg = how
    if kind == "truncate":
        return blob[: int(arg * len(blob))]
    if kind == "flip":
        data = bytearray(blob)
        for where, xor in arg:
            data[min(int(where * len(data)), len(data) - 1)] ^= xor
        return bytes(data)
    where, extra = arg
    cut = int(where * len(blob))
    return blob[:cut] + extra + blob[cut:]


# JAXCNN_FUZZ_EXAMPLES raises the count for a longer local search (1,500 ran clean).
@settings(max_examples=int(os.environ.get("JAXCNN_FUZZ_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(PRISTINE)), how=damage)
def test_damaged_archives_load_or_raise_data_error(tmp_path, name, how):
    path = tmp_path / name
    path.write_bytes(_damage(PRISTINE[name], how))
    cache_dir = tmp_path / "cache"
    try:
        ds = load(path, cache_dir)
    except DataError as err:
        assert "\n" not in str(err)
        return
    # Loaded: then it is a well-formed dataset.
    assert ds.train_images.dtype == np.uint8 and ds.train_images.shape[1:] == (32, 32, 3)
    assert ds.train_labels.shape == (len(ds.train_images),)
    assert ds.train_labels.min() >= 0 and ds.train_labels.max() < len(ds.class_names)


def test_write_tar_bytes_round_trip():
    blob = archives.write_tar_bytes({"a/b.txt": b"x"}, "w:gz")
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        assert tar.getnames() == ["a/b.txt"]
