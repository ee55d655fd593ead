"""Builders of tiny CIFAR-10-shaped archives and folder trees, for loader tests."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "ship")


def random_images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32, 32, 3) uint8 images and (n,) labels cycling over 10 classes."""
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, (np.arange(n) % 10).astype(np.int32)


def _chw_rows(images: np.ndarray) -> np.ndarray:
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def official_files(fmt: str, per_batch: int = 4, seed: int = 0
                   ) -> tuple[dict[str, bytes], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Member name -> bytes of an official archive in ``fmt`` ("python"|"binary").

    Returns (files, train_images, train_labels, test_images, test_labels).
    """
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    arrays = {}
    for name in batches:
        images, labels = random_images(rng, per_batch)
        labels = rng.permutation(labels)
        arrays[name] = (images, labels)
        if fmt == "python":
            blob = pickle.dumps({b"data": _chw_rows(images), b"labels": labels.tolist(),
                                 b"batch_label": name.encode()})
            files[f"cifar-10-batches-py/{name}"] = blob
        else:
            records = np.concatenate([labels[:, None].astype(np.uint8), _chw_rows(images)], 1)
            files[f"cifar-10-batches-bin/{name}.bin"] = records.tobytes()
    names = [f"class{i}" for i in range(10)]
    if fmt == "python":
        files["cifar-10-batches-py/batches.meta"] = pickle.dumps(
            {b"label_names": [n.encode() for n in names]})
    else:
        files["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(names) + "\n").encode()
    train_images = np.concatenate([arrays[b][0] for b in batches[:5]])
    train_labels = np.concatenate([arrays[b][1] for b in batches[:5]])
    return files, train_images, train_labels, *arrays["test_batch"]


def png_bytes(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def folder_files(per_class: int = 2, seed: int = 0, root: str = "tree",
                 classes: tuple[str, ...] = CLASSES
                 ) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """An image-folder tree as name -> PNG bytes, and the expected arrays per split.

    ``classes`` must be sorted (the loader numbers classes in sorted order).
    """
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    expected = {}
    for split in ("train", "test"):
        images, labels = [], []
        for label, cls in enumerate(classes):
            for i in range(per_class):
                image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                files[f"{root}/{split}/{cls}/{i:04d}.png"] = png_bytes(image)
                images.append(image)
                labels.append(label)
        expected[split] = (np.stack(images), np.array(labels, np.int32))
    return files, expected


def write_folder(files: dict[str, bytes], root: Path) -> Path:
    for name, blob in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return root


def write_tar(files: dict[str, bytes], path: Path, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def write_tar_bytes(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()
