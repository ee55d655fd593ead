"""``--data`` names a source; :func:`load_dataset` turns any of them into a Dataset.

Sources:
  - a registered name (:func:`register_source`); built in:
    ``cifar10``: the official binary archive, fetched and checksummed by
    tensorflow-datasets' download manager on first use, parsed with numpy;
    ``synthetic``: a small generated dataset (see ``synthetic.py``).
  - a path: an official archive (python or binary version, as ``.tar.gz`` or
    extracted folder), or an image-folder tree ``ROOT/{train,test}/<class>/*``
    as a folder or a ``.tar``/``.tar.gz``/``.tar.xz``.

A new source is one function returning a :class:`~jaxcnn.data.dataset.Dataset`
(uint8 (N, H, W, C) images of any size and channel count, any number of
classes) and one call, from anywhere::

    def load(options: LoadOptions) -> Dataset:
        return Dataset(train_x, train_y, test_x, test_y, class_names,
                       source="digits", fingerprint="digits-v1")

    register_source("digits", load)      # then --data digits, or load_dataset("digits")

Decoded arrays of paths are cached by source content (``cache.py``); a registered
source caches (or not) as it likes, under ``options.cache_dir``.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from jaxcnn.data import cache
from jaxcnn.data.dataset import Dataset, check_dataset
from jaxcnn.data.files import FileTree, open_folder, open_tar
from jaxcnn.data.folders import detect_folder_tree, parse_folder_tree
from jaxcnn.data.official import detect_official, parse_official
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
# From tensorflow-datasets' registered checksums for cifar10 (url_checksums/cifar10.txt).
CIFAR10_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"

LOCAL_ALTERNATIVES = (
    "use --data synthetic, or --data PATH to a local copy: the official "
    "cifar-10-python.tar.gz / cifar-10-binary.tar.gz (or its extracted folder), "
    "or an image-folder tree such as cifar10-jpeg.tar.xz"
)


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """What a registered source is called with.

    cache_dir: where it may keep decoded copies; show_progress: whether it may draw
    progress bars (on stderr).
    """

    cache_dir: Path
    show_progress: bool = True


Loader = Callable[[LoadOptions], Dataset]
_SOURCES: dict[str, Loader] = {}


def register_source(name: str, load: Loader) -> None:
    """Makes ``--data name`` (and ``load_dataset(name)``) call ``load(LoadOptions)``.

    The returned Dataset is checked (``check_dataset``) before use. Raises ValueError
    for an empty name or one already registered.
    """
    if not isinstance(name, str) or not name or name in _SOURCES:
        raise ValueError(f"a data source needs a new, non-empty name; got {name!r} "
                         f"(registered: {', '.join(_SOURCES)})")
    _SOURCES[name] = load


def source_names() -> tuple[str, ...]:
    """The registered sources' names, built-ins first."""
    return tuple(_SOURCES)


def load_dataset(spec: str, cache_dir: Path | None = None, show_progress: bool = True) -> Dataset:
    """Loads the source named by ``spec`` (see the module docstring).

    Raises:
      DataError: with a one-line message naming the path and the problem.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
    if spec in _SOURCES:
        return check_dataset(_SOURCES[spec](LoadOptions(cache_dir, show_progress)))
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(
            f"{spec}: no such file or folder; --data takes {', '.join(_SOURCES)}, "
            "or a path to an official CIFAR-10 archive or an image-folder tree"
        )
    return _load_path(path, cache_dir, show_progress)


def _load_path(path: Path, cache_dir: Path, show_progress: bool) -> Dataset:
    if path.is_dir():
        fingerprint = cache.folder_fingerprint(path)
    else:
        try:
            fingerprint = cache.file_fingerprint(path)
        except OSError as err:
            raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    cached = cache.load_cached(cache_dir, fingerprint, str(path))
    if cached is not None:
        return cached
    files = open_folder(path) if path.is_dir() else open_tar(path)
    ds = check_dataset(_parse_tree(files, str(path), fingerprint, show_progress))
    cache.store(cache_dir, ds)
    return ds


def _parse_tree(files: FileTree, origin: str, fingerprint: str, show_progress: bool) -> Dataset:
    official = detect_official(files)
    if official is not None:
        fmt, prefix = official
        return parse_official(files, fmt, prefix, origin, fingerprint)
    prefix = detect_folder_tree(files)
    if prefix is not None:
        total = sum(1 for n in files if n.startswith(prefix))
        # Only in a terminal: a log would keep a half bar ("decoding images: 0%") above
        # an error line.
        with tqdm(total=total, desc="decoding images", unit="img", leave=False, file=sys.stderr,
                  disable=not (show_progress and sys.stderr.isatty())) as bar:
            return parse_folder_tree(files, prefix, origin, fingerprint, progress=bar.update)
    raise DataError(
        f"{origin}: not a CIFAR-10 archive or image-folder tree "
        "(found no data_batch_1, data_batch_1.bin, or train/ and test/ folders)"
    )


def _network_reachable(host: str, timeout: float = 5.0) -> str | None:
    """None if ``host:443`` accepts a connection, else the reason it did not."""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return None
    except OSError as err:
        return str(err) or type(err).__name__


def _load_cifar10_download(cache_dir: Path, show_progress: bool) -> Dataset:
    fingerprint = "sha256:" + CIFAR10_SHA256
    cached = cache.load_cached(cache_dir, fingerprint, "cifar10")
    if cached is not None:
        return cached
    downloads = cache_dir / "downloads"
    reason = _network_reachable("www.cs.toronto.edu")
    if reason is not None:
        raise DataError(f"cannot download CIFAR-10 (no network: {reason}); {LOCAL_ALTERNATIVES}")
    # Imported here: tensorflow-datasets is slow to import and absent on some machines.
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            f"--data cifar10 needs tensorflow-datasets (pip install tensorflow-datasets); "
            f"or {LOCAL_ALTERNATIVES}"
        ) from None
    from tensorflow_datasets.core.download import checksums

    url_infos = {CIFAR10_URL: checksums.UrlInfo(size=170052171, checksum=CIFAR10_SHA256,
                                                filename="cifar-10-binary.tar.gz")}
    manager = tfds.download.DownloadManager(download_dir=downloads, url_infos=url_infos,
                                            force_checksums_validation=True)
    try:
        archive = Path(manager.download(CIFAR10_URL))
    except Exception as err:  # network and checksum failures come in many types
        raise DataError(f"downloading CIFAR-10 failed ({err}); {LOCAL_ALTERNATIVES}") from None
    ds = _parse_tree(open_tar(archive), "cifar10", fingerprint, show_progress)
    ds = check_dataset(ds)
    cache.store(cache_dir, ds)
    return ds


register_source("cifar10", lambda options: _load_cifar10_download(options.cache_dir,
                                                                  options.show_progress))
register_source("synthetic", lambda options: make_synthetic())
