"""Parse an image-folder tree: ``ROOT/{train,test}/<class>/<image>``.

Classes are the sorted folder names; train and test must name the same ones.
Within a class, images are taken in file-name order, so the arrays (and every
result computed from them) do not depend on the order a tar stores members in.
"""

from __future__ import annotations

import io
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from jaxcnn.data.dataset import Dataset
from jaxcnn.data.files import FileTree
from jaxcnn.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def detect_folder_tree(files: FileTree) -> str | None:
    """Returns the prefix of the folder holding ``train/`` and ``test/``, if any."""
    roots_with: dict[str, set[str]] = {"train": set(), "test": set()}
    for name in files.dirs:
        parts = name.split("/")
        if parts[-1] in roots_with:
            roots_with[parts[-1]].add("/".join(parts[:-1]))
    common = sorted(roots_with["train"] & roots_with["test"], key=len)
    if common:
        return common[0] + "/" if common[0] else ""
    return None


def _decode(blob: bytes, where: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob)) as img:
                img.load()
                mode, size = img.mode, img.size
                array = np.asarray(img)
    except Exception as err:  # damaged files reach Pillow's decoders in many ways
        # Pillow names the in-memory buffer ("<_io.BytesIO object at 0x...>"), which
        # says nothing to a user; ``where`` already names the file.
        reason = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(err)).strip()
        raise DataError(f"{where}: not a readable image "
                        f"({reason or type(err).__name__})") from None
    if mode != "RGB" or size != (32, 32):
        raise DataError(
            f"{where}: image is {size[0]}x{size[1]} {mode}; every image must be 32x32 RGB"
        )
    return array


def parse_folder_tree(files: FileTree, prefix: str, origin: str,
                      fingerprint: str, progress=None) -> Dataset:
    """Decodes every image under ``prefix{train,test}/<class>/``.

    Args:
      files: relative path -> bytes (a folder or a tar, see ``files.py``).
      prefix: the path of the tree's root inside ``files`` ("" or "name/").
      origin: the user's path, for messages.
      fingerprint: identifies the content, stored on the Dataset.
      progress: optional callable(n) called as images are decoded.
    """
    per_split = _files_by_class(files, prefix, origin)
    class_names = _class_names(per_split, origin)
    arrays = {}
    for split in ("train", "test"):
        names, labels = _images_and_labels(per_split[split], class_names, split, origin)

        def decode(chunk: list[str]) -> list[np.ndarray]:
            out = [_decode(files[name], f"{origin}: {name}") for name in chunk]
            if progress is not None:
                progress(len(chunk))
            return out

        # Pillow releases the GIL while decoding, so threads use every core.
        chunks = [names[i:i + 500] for i in range(0, len(names), 500)]
        with ThreadPoolExecutor() as pool:
            decoded = [img for part in pool.map(decode, chunks) for img in part]
        arrays[split] = (np.stack(decoded), np.asarray(labels, dtype=np.int32))
    return Dataset(*arrays["train"], *arrays["test"], class_names, origin, fingerprint)


def _files_by_class(files: FileTree, prefix: str, origin: str
                    ) -> dict[str, dict[str, list[str]]]:
    """split -> class folder -> the file paths in it (empty folders included)."""
    per_split: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name in files.dirs:
        parts = name[len(prefix):].split("/") if name.startswith(prefix) else []
        if len(parts) == 2 and parts[0] in per_split:
            per_split[parts[0]].setdefault(parts[1], [])
    for name in files:
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix):].split("/")
        if parts[0] not in per_split:
            continue
        if len(parts) != 3:
            raise DataError(
                f"{origin}: unexpected file {name} (expected {parts[0]}/<class>/<image>)"
            )
        per_split[parts[0]].setdefault(parts[1], []).append(name)
    return per_split


def _class_names(per_split: dict[str, dict[str, list[str]]], origin: str) -> tuple[str, ...]:
    """The sorted class names, which train and test must share."""
    classes = {split: sorted(c) for split, c in per_split.items()}
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        raise DataError(
            f"{origin}: train and test name different classes "
            f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'})"
        )
    if not classes["train"]:
        raise DataError(f"{origin}: no class folders under train/ and test/")
    return tuple(classes["train"])


def _images_and_labels(by_class: dict[str, list[str]], class_names: tuple[str, ...],
                       split: str, origin: str) -> tuple[list[str], list[int]]:
    """One split's image paths in class order, and their labels."""
    names, labels = [], []
    for label, cls in enumerate(class_names):
        members = sorted(by_class[cls])
        images = [m for m in members if m.lower().endswith(IMAGE_SUFFIXES)]
        others = [m for m in members if not m.lower().endswith(IMAGE_SUFFIXES)]
        if others:
            raise DataError(
                f"{origin}: {others[0]} is not an image "
                f"(class folders may hold only {', '.join(IMAGE_SUFFIXES)} files)"
            )
        if not images:
            raise DataError(f"{origin}: class folder {split}/{cls} holds no images")
        names += images
        labels += [label] * len(images)
    return names, labels
