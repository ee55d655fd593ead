"""One writer per ``--out``: an advisory lock on ``OUT/.jaxcnn.lock``.

Two runs writing the same output folder would both train, checkpoint and write
the same files (and crash on each other's checkpoints). Each run therefore holds
an exclusive ``fcntl.flock`` on ``OUT/.jaxcnn.lock`` while it writes. The lock
belongs to the open file, so the kernel releases it when the process exits in
any way (return, exception, Ctrl-C, SIGKILL, a crash): a lock never outlives its
run, and a stale file is never taken for a live holder.

The file's content says who holds it, for the message a second run prints::

    {"pid": 12345, "host": "node7", "started": "2026-11-30T15:31:28+00:00",
     "command": "python -m experiments.regularization --seeds 5 --out results"}

The file stays after the run, its content cleared: only an flock says whether a
run holds it. (It is removed, with the folder, only when the run created the
folder and wrote nothing else; a run that was waiting on it then notices and
locks the new file instead, see ``_acquire``.)
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from jaxcnn.errors import ConfigError, OutBusyError
from jaxcnn.platform import environment

LOCK_NAME = ".jaxcnn.lock"


def holder_text(raw: str) -> str:
    """The lock file's content as words: "pid 12345 on node7 since ... (command)"."""
    try:
        who = json.loads(raw)
        return (f"pid {who['pid']} on {who['host']} since {who['started']} "
                f"({who['command']})")
    except (ValueError, KeyError, TypeError):
        return "another process (it wrote no details)"


def _open_lock_file(out: Path) -> int:
    """Creates ``out`` if needed and opens its lock file; ConfigError if impossible."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        return os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"--out {out}: a part of that path is a file; give another "
                          "--out") from None
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write there ({err.strerror}); give a "
                          "folder you can write to") from None


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 65536).decode(errors="replace")


@contextlib.contextmanager
def hold(out: Path, wait: bool = False, poll_seconds: float = 1.0,
         notify: Callable[[str], None] | None = None) -> Iterator[None]:
    """Holds the lock on ``out`` (created if needed) for the ``with`` block.

    If another run holds it: raises :class:`OutBusyError` (one line naming the holder
    and the ways out), or with ``wait`` polls every ``poll_seconds`` until it is free,
    telling ``notify`` once whom it waits for. A folder this call created and that
    holds nothing but the lock file at the end (a run refused before writing) is
    removed again.
    """
    out = Path(out)
    created = not out.exists()
    fd = _acquire(out, wait, poll_seconds, notify)
    try:
        _write_holder(fd)
        yield
    finally:
        os.ftruncate(fd, 0)  # before the unlock, so no later holder's text is cut
        if created:
            _remove_if_unused(out)  # still locked: a waiter sees the file gone (_acquire)
        os.close(fd)  # releases the flock


def _acquire(out: Path, wait: bool, poll_seconds: float,
             notify: Callable[[str], None] | None) -> int:
    """An open descriptor of ``out``'s lock file, locked by this process."""
    told = False
    while True:
        fd = _open_lock_file(out)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = holder_text(_read(fd))
            os.close(fd)
            if not wait:
                raise OutBusyError(f"--out {out} is being written by {holder}; wait for it "
                                   "to finish, add --wait to wait for it, or give another "
                                   "--out") from None
            if not told and notify is not None:
                notify(f"--out {out} is being written by {holder}; waiting for it")
                told = True
            time.sleep(poll_seconds)
            continue
        if _is_current(fd, out / LOCK_NAME):
            return fd
        os.close(fd)  # the holder removed the file while we waited: lock the new one


def _is_current(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not one removed meanwhile)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _remove_if_unused(out: Path) -> None:
    with contextlib.suppress(OSError):
        if [p.name for p in out.iterdir()] == [LOCK_NAME]:
            (out / LOCK_NAME).unlink()
            out.rmdir()


def _write_holder(fd: int) -> None:
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                       "command": environment.command_line()})
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode())
    os.fsync(fd)
