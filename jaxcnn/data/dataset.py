"""The one thing every data source yields: a :class:`Dataset`."""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcnn.errors import DataError

# The official CIFAR-10 class order (label 0..9), used when an archive lacks its
# batches.meta file.
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Decoded images and labels of one source, as numpy arrays on the host.

    Attributes:
      train_images: (N_train, H, W, C) uint8, NHWC ((32, 32, 3) for CIFAR-10; any
        size and channel count, the same in both splits).
      train_labels: (N_train,) int32 in [0, len(class_names)).
      test_images: (N_test, H, W, C) uint8.
      test_labels: (N_test,) int32.
      class_names: name of each label, index = label.
      source: what was loaded, for humans (a path, "synthetic", "cifar10").
      fingerprint: identifies the source's content (e.g. "sha256:..."), so a
        results file can say exactly which data produced it.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    fingerprint: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(int(d) for d in self.train_images.shape[1:])


def check_dataset(ds: Dataset) -> Dataset:
    """Raises DataError unless ``ds`` has the documented shapes and dtypes."""
    if not isinstance(ds, Dataset):
        raise DataError(f"a data source returned {type(ds).__name__}, not a Dataset")
    for split in ("train", "test"):
        images = getattr(ds, f"{split}_images")
        labels = getattr(ds, f"{split}_labels")
        if (not isinstance(images, np.ndarray) or images.dtype != np.uint8
                or images.ndim != 4 or min(images.shape[1:]) < 1):
            raise DataError(
                f"{ds.source}: {split} images are {getattr(images, 'dtype', type(images))} "
                f"{getattr(images, 'shape', '')}, expected a uint8 numpy array (N, H, W, C)"
            )
        if images.shape[1:] != ds.train_images.shape[1:]:
            raise DataError(f"{ds.source}: test images are {images.shape[1:]}, train images "
                            f"{ds.train_images.shape[1:]}; both splits need one shape")
        if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{ds.source}: {split} labels must be an integer numpy array")
        if len(images) == 0:
            raise DataError(f"{ds.source}: the {split} split is empty")
        if labels.shape != (len(images),):
            raise DataError(
                f"{ds.source}: {len(images)} {split} images but {labels.shape} labels"
            )
        if labels.min() < 0 or labels.max() >= len(ds.class_names):
            raise DataError(
                f"{ds.source}: {split} labels span {labels.min()}..{labels.max()}, "
                f"but there are {len(ds.class_names)} classes"
            )
    return ds
