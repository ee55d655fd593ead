"""Parse an image-folder tree: ``ROOT/{train,test}/<class>/<image>``.

Classes are the sorted folder names; train and test must name the same ones.
Within a class, images are taken in file-name order, so the arrays (and every
result computed from them) do not depend on the order a tar stores members in.

Images may have any size and be grayscale (C = 1) or RGB (C = 3), the same for every
image of the tree; other modes are converted, with one line saying how many: RGBA,
palette and CMYK images to RGB (alpha dropped), two-level, 16-bit and grayscale-with-alpha
images to grayscale. A tree of mixed sizes or channels is refused, naming one file of each.
"""

from __future__ import annotations

import io
import re
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from jaxcnn.data.dataset import Dataset
from jaxcnn.data.files import FileTree
from jaxcnn.errors import DataError
from jaxcnn.platform.progress import log

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY = ("L", "LA", "1", "I", "I;16", "F")  # modes read as one channel; any other as RGB


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


def _decode(blob: bytes, where: str) -> tuple[np.ndarray, str | None]:
    """(the image as (H, W, C) uint8, its mode if it had to be converted, else None)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(blob)) as img:
                img.load()
                mode = img.mode
                target = "L" if mode in GRAY else "RGB"
                if mode in ("I", "I;16", "F"):  # wide grayscale: scale to 8 bits first
                    wide = np.asarray(img, np.float64)
                    array = np.clip(wide / max(wide.max(), 1.0) * 255.0, 0, 255).astype(np.uint8)
                else:
                    array = np.asarray(img if mode == target else img.convert(target))
    except Exception as err:  # damaged files reach Pillow's decoders in many ways
        # Pillow names the in-memory buffer ("<_io.BytesIO object at 0x...>"), which
        # says nothing to a user; ``where`` already names the file.
        reason = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(err)).strip()
        raise DataError(f"{where}: not a readable image "
                        f"({reason or type(err).__name__})") from None
    array = array.reshape(*array.shape[:2], -1).astype(np.uint8)
    return array, (None if mode in ("L", "RGB") else mode)


def _one_shape(names: list[str], images: list[np.ndarray], origin: str) -> None:
    """A DataError naming one file of each (H, W, C) unless every image has one shape."""
    first: dict[tuple[int, ...], str] = {}
    for name, image in zip(names, images):
        first.setdefault(image.shape, name)
    if len(first) > 1:
        shown = "; ".join(f"{'x'.join(map(str, s))} (e.g. {n})" for s, n in first.items())
        raise DataError(f"{origin}: the images differ in size or channels: {shown}; give "
                        "every image one size and mode (e.g. resize them)")


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
    arrays, all_names, all_images, converted = {}, [], [], Counter()
    for split in ("train", "test"):
        names, labels = _images_and_labels(per_split[split], class_names, split, origin)

        def decode(chunk: list[str]) -> list[tuple[np.ndarray, str | None]]:
            out = [_decode(files[name], f"{origin}: {name}") for name in chunk]
            if progress is not None:
                progress(len(chunk))
            return out

        # Pillow releases the GIL while decoding, so threads use every core.
        chunks = [names[i:i + 500] for i in range(0, len(names), 500)]
        with ThreadPoolExecutor() as pool:
            decoded = [item for part in pool.map(decode, chunks) for item in part]
        converted.update(mode for _, mode in decoded if mode is not None)
        images = [image for image, _ in decoded]
        all_names += [name[len(prefix):] for name in names]
        all_images += images
        _one_shape(all_names, all_images, origin)
        arrays[split] = (np.stack(images), np.asarray(labels, dtype=np.int32))
    if converted:
        channels = "grayscale" if arrays["train"][0].shape[-1] == 1 else "RGB"
        log(f"{origin}: converted {sum(converted.values())} images to {channels} (from "
            f"{', '.join(sorted(converted))})")
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
