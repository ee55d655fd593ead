"""Read a folder or a tar archive as one flat mapping ``relative path -> bytes``.

Both the official CIFAR-10 archives and image-folder trees arrive either as a
folder on disk or as a (possibly compressed) tar of one. Reading both into the
same shape lets one parser serve each format, whichever way it was shipped.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from jaxcnn.errors import DataError


class FileTree(Mapping[str, bytes]):
    """Read-only mapping from POSIX relative paths to file contents.

    Folders read lazily (a file is opened when its bytes are asked for); tar
    archives are read in one pass, since compressed tars cannot seek cheaply.
    Hidden entries (any path component starting with ".") are left out.
    """

    def __init__(self, names: list[str], read: Callable[[str], bytes], origin: str,
                 dirs: set[str] | None = None):
        self._names = sorted(names)
        # Every folder, including empty ones, as a relative path without "/".
        self.dirs = set(dirs or ())
        for name in self._names:
            parts = name.split("/")
            self.dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        self._set = set(self._names)
        self._read = read
        self.origin = origin

    def __getitem__(self, name: str) -> bytes:
        if name not in self._set:
            raise KeyError(name)
        return self._read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _visible(rel: str) -> bool:
    return not any(part.startswith(".") for part in rel.split("/"))


def open_folder(root: Path) -> FileTree:
    """All visible regular files under ``root``."""
    names, dirs = [], set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirs.update(d if rel_dir == "." else f"{rel_dir}/{d}" for d in dirnames)
        for fname in filenames:
            rel = fname if rel_dir == "." else f"{rel_dir}/{fname}"
            if _visible(rel):
                names.append(rel)

    def read(rel: str) -> bytes:
        try:
            return (root / rel).read_bytes()
        except OSError as err:
            raise DataError(f"{root / rel}: cannot read ({err.strerror or err})") from None

    return FileTree(names, read, str(root), dirs)


def open_tar(path: Path) -> FileTree:
    """All visible regular members of a .tar / .tar.gz / .tar.xz / .tar.bz2."""
    contents: dict[str, bytes] = {}
    dirs: set[str] = set()
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                name = name.rstrip("/")
                if member.isdir() and _visible(name):
                    dirs.add(name)
                if not member.isfile() or not _visible(name):
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                contents[name] = handle.read()
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError, ValueError) as err:
        reason = str(err) or type(err).__name__
        if "could not be opened successfully" in reason:  # tarfile tried every compression
            reason = "not a .tar, .tar.gz, .tar.bz2 or .tar.xz file"
        raise DataError(
            f"{path}: cannot read it as a tar archive ({reason}); "
            "is it truncated or not a tar file?"
        ) from None
    if not contents:
        raise DataError(f"{path}: the archive holds no files")
    return FileTree(list(contents), contents.__getitem__, str(path), dirs)
