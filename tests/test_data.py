"""Loaders on tiny archives built here, caching, splits and normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from jaxcnn.data import load_dataset, prepare_data, sources
from jaxcnn.data.splits import channel_statistics, stratified_indices
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.errors import ConfigError
from tests import archives


@pytest.mark.parametrize("fmt", ["python", "binary"])
@pytest.mark.parametrize("packed", ["tar.gz", "folder"])
def test_official_archive(tmp_path, cache_dir, fmt, packed):
    files, train_x, train_y, test_x, test_y = archives.official_files(fmt)
    if packed == "tar.gz":
        path = archives.write_tar(files, tmp_path / f"cifar-10-{fmt}.tar.gz")
    else:  # the extracted folder, e.g. cifar-10-batches-py/
        root = archives.write_folder(files, tmp_path / "x")
        path = next(root.iterdir())
    ds = load_dataset(str(path), cache_dir=cache_dir, show_progress=False)
    np.testing.assert_array_equal(ds.train_images, train_x)
    np.testing.assert_array_equal(ds.train_labels, train_y)
    np.testing.assert_array_equal(ds.test_images, test_x)
    np.testing.assert_array_equal(ds.test_labels, test_y)
    assert ds.class_names == tuple(f"class{i}" for i in range(10))
    assert ds.train_images.dtype == np.uint8 and ds.train_images.shape[1:] == (32, 32, 3)


def test_official_formats_agree_on_pixel_order(tmp_path, cache_dir):
    """Python pickles and binary records store CHW rows; both must decode to NHWC alike."""
    py = archives.write_tar(archives.official_files("python", seed=3)[0], tmp_path / "p.tar.gz")
    bn = archives.write_tar(archives.official_files("binary", seed=3)[0], tmp_path / "b.tar.gz")
    a = load_dataset(str(py), cache_dir=cache_dir, show_progress=False)
    b = load_dataset(str(bn), cache_dir=cache_dir, show_progress=False)
    np.testing.assert_array_equal(a.train_images, b.train_images)


@pytest.mark.parametrize("packed", ["folder", "tar", "tar.gz", "tar.xz"])
def test_image_folder_tree(tmp_path, cache_dir, packed):
    files, expected = archives.folder_files()
    if packed == "folder":
        path = archives.write_folder(files, tmp_path) / "tree"
    else:
        mode = {"tar": "w", "tar.gz": "w:gz", "tar.xz": "w:xz"}[packed]
        path = archives.write_tar(files, tmp_path / f"tree.{packed}", mode)
    ds = load_dataset(str(path), cache_dir=cache_dir, show_progress=False)
    assert ds.class_names == archives.CLASSES  # sorted folder names
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(ds, f"{split}_images"), expected[split][0])
        np.testing.assert_array_equal(getattr(ds, f"{split}_labels"), expected[split][1])


def test_folder_tree_jpeg_is_decoded(tmp_path, cache_dir):
    # Smooth images, since JPEG is lossy: the decode must be close, not equal.
    ramp = np.linspace(0, 255, 32)
    image = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], 128 + 0 * ramp[:, None]),
                     -1).astype(np.uint8)
    files = {f"t/{split}/{cls}/0.jpg": archives.png_bytes(image, "JPEG")
             for split in ("train", "test") for cls in archives.CLASSES}
    ds = load_dataset(str(archives.write_folder(files, tmp_path) / "t"),
                      cache_dir=cache_dir, show_progress=False)
    assert ds.train_images.shape == (3, 32, 32, 3)
    assert np.abs(ds.train_images.astype(int) - image).mean() < 3


def test_second_load_comes_from_the_cache_and_is_identical(tmp_path, cache_dir, monkeypatch):
    files, _ = archives.folder_files(per_class=30)
    path = archives.write_tar(files, tmp_path / "tree.tar.xz", "w:xz")
    first = load_dataset(str(path), cache_dir=cache_dir, show_progress=False)
    assert len(list(cache_dir.glob("decoded-*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the archive was opened again instead of the cache")

    monkeypatch.setattr(sources, "open_tar", no_decoding)
    second = load_dataset(str(path), cache_dir=cache_dir, show_progress=False)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert first.fingerprint == second.fingerprint


def test_cache_is_keyed_by_content(tmp_path, cache_dir):
    path = tmp_path / "tree.tar.gz"
    archives.write_tar(archives.folder_files(seed=1)[0], path)
    a = load_dataset(str(path), cache_dir=cache_dir, show_progress=False)
    archives.write_tar(archives.folder_files(seed=2)[0], path)  # same name, new content
    b = load_dataset(str(path), cache_dir=cache_dir, show_progress=False)
    assert a.fingerprint != b.fingerprint
    assert not np.array_equal(a.train_images, b.train_images)


def test_synthetic_is_deterministic_and_balanced():
    a, b = make_synthetic(500, 100), make_synthetic(500, 100)
    np.testing.assert_array_equal(a.train_images, b.train_images)
    assert np.bincount(a.train_labels).tolist() == [50] * 10


def test_channel_statistics_match_numpy():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5000, 32, 32, 3), dtype=np.uint8)
    stats = channel_statistics(images)
    pixels = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(stats.mean, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.std, pixels.std(0), rtol=1e-5)


def test_normalisation_uses_training_split_only():
    ds = make_synthetic(2000, 400)
    prepared = prepare_data(ds, val_size=500)
    expected = channel_statistics(prepared.train.images)
    np.testing.assert_array_equal(prepared.normalization.mean, expected.mean)
    half = prepare_data(ds, val_size=500, normalization="half")
    np.testing.assert_array_equal(half.normalization.std, [0.5, 0.5, 0.5])


def test_stratified_validation_split():
    ds = make_synthetic(2000, 400)
    prepared = prepare_data(ds, val_size=500)
    assert len(prepared.val) == 500 and len(prepared.train) == 1500
    assert np.bincount(prepared.val.labels).tolist() == [50] * 10
    # Held-out images are not trained on.
    train_rows = {row.tobytes() for row in prepared.train.images.reshape(1500, -1)}
    assert not any(row.tobytes() in train_rows for row in prepared.val.images.reshape(500, -1))
    assert not prepared.val_is_test


def test_val_size_zero_uses_test_set():
    ds = make_synthetic(1000, 200)
    prepared = prepare_data(ds, val_size=0)
    assert prepared.val_is_test and prepared.val is prepared.test
    assert len(prepared.train) == 1000


def test_train_examples_subset_is_stratified():
    ds = make_synthetic(2000, 200)
    prepared = prepare_data(ds, val_size=500, train_examples=300)
    assert np.bincount(prepared.train.labels).tolist() == [30] * 10


def test_stratified_indices_uneven_classes():
    labels = np.array([0] * 7 + [1] * 3)
    rng = np.random.default_rng(0)
    picked = stratified_indices(labels, 5, rng)
    assert len(picked) == 5 and len(set(picked)) == 5
    assert np.bincount(labels[picked]).tolist() in ([4, 1], [3, 2])


@pytest.mark.parametrize("kwargs", [{"val_size": 2000}, {"val_size": -1},
                                    {"val_size": 100, "train_examples": 5000}])
def test_impossible_split_sizes_raise(kwargs):
    with pytest.raises(ConfigError):
        prepare_data(make_synthetic(1000, 100), **kwargs)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_cifar10_jpeg_copy(real_data, tmp_path):
    ds = load_dataset(str(real_data), cache_dir=tmp_path, show_progress=False)
    assert ds.train_images.shape == (50000, 32, 32, 3)
    assert ds.test_images.shape == (10000, 32, 32, 3)
    assert ds.class_names[0] == "airplane" and len(ds.class_names) == 10
    assert np.bincount(ds.train_labels).tolist() == [5000] * 10
    stats = channel_statistics(ds.train_images)
    np.testing.assert_allclose(stats.mean, [0.491, 0.482, 0.447], atol=2e-3)


# --- registered sources and other image shapes -------------------------------------------

def _digits(options: sources.LoadOptions):
    return make_synthetic(60, 30, seed=4, image_shape=(28, 28, 1), num_classes=3)


def test_a_registered_source_loads_by_name_with_its_own_shape(cache_dir, monkeypatch):
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))  # restored afterwards
    sources.register_source("test-digits", _digits)
    ds = load_dataset("test-digits", cache_dir=cache_dir, show_progress=False)
    assert ds.train_images.shape == (60, 28, 28, 1) and ds.image_shape == (28, 28, 1)
    assert ds.num_classes == 3 and set(np.unique(ds.train_labels)) == {0, 1, 2}
    prepared = prepare_data(ds, val_size=9)
    pixels = prepared.train.images.reshape(-1, 1) / 255.0
    np.testing.assert_allclose(prepared.normalization.mean, pixels.mean(0), rtol=1e-6)
    assert prepared.normalization.std.shape == (1,)
    half = prepare_data(ds, val_size=9, normalization="half")
    np.testing.assert_array_equal(half.normalization.mean, [0.5])
    with pytest.raises(ValueError, match="new, non-empty name"):
        sources.register_source("test-digits", _digits)


def test_built_in_sources_are_registered_and_synthetic_is_unchanged():
    assert sources.source_names()[:2] == ("cifar10", "synthetic")
    ds = make_synthetic(300, 50)
    assert ds.fingerprint == "synthetic-v1:300:50:0" and ds.image_shape == (32, 32, 3)


@pytest.mark.parametrize("change, message", [
    (dict(train_images=np.zeros((4, 28, 28), np.uint8)), "expected a uint8 numpy array"),
    (dict(train_images=np.zeros((4, 28, 28, 1), np.float32)), "expected a uint8 numpy array"),
    (dict(test_images=np.zeros((4, 32, 32, 1), np.uint8)), "both splits need one shape"),
    (dict(train_labels=np.zeros(4, np.float32)), "labels must be an integer"),
])
def test_a_source_with_bad_arrays_is_one_line_naming_it(cache_dir, monkeypatch, change, message):
    import dataclasses

    from jaxcnn.data.dataset import Dataset
    from jaxcnn.errors import DataError

    good = dict(train_images=np.zeros((4, 28, 28, 1), np.uint8), train_labels=np.arange(4) % 2,
                test_images=np.zeros((2, 28, 28, 1), np.uint8), test_labels=np.arange(2))
    ds = Dataset(**{**good, **change}, class_names=("a", "b"), source="bad-source",
                         fingerprint="x")
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))  # restored afterwards
    sources.register_source("test-bad", lambda options: dataclasses.replace(ds))
    with pytest.raises(DataError, match=message) as err:
        load_dataset("test-bad", cache_dir=cache_dir, show_progress=False)
    assert str(err.value).startswith("bad-source:") and "\n" not in str(err.value)
