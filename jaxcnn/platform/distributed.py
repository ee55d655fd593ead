"""Several processes (hosts) on JAX's own distributed runtime.

Each process trains its own share of the members on its own devices (members
are independent, so training needs no communication); the coordination service
started by ``jax.distributed.initialize`` lines the processes up, and the
results are gathered to every process (``multihost_utils.process_allgather``)
so that process 0 alone writes them. Checkpoints are per chunk and each chunk
belongs to one process, so a restarted process resumes its own members.

Launching: every process runs the same command with ``--coordinator HOST:PORT
--num-processes N --process-id I`` (or, under SLURM and other clusters JAX
detects, ``--distributed`` alone). ``--out`` must be a filesystem every process
sees (the results are read by all and written by process 0).

Start-up is bounded: the flags are checked first (address syntax, port range,
host name, process id), then the processes meet in a handshake of our own on
the coordinator's port, and only then start JAX's runtime (whose client aborts
the process natively when a peer never comes). Whatever goes wrong ends within
``--init-timeout`` seconds with one line naming the coordinator and what to check.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import io
import json
import os
import socket
import sys
import threading
import time
from typing import Any

import jax
import numpy as np

from jaxcnn.errors import ConfigError, StartupError

# The pre-flight handshake's greeting: a stray client on the port is told apart from a peer.
_HELLO = "jaxcnn-rendezvous-1"


def parse_coordinator(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPV6]:PORT`` too) as (host, port); ConfigError naming the flag."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--coordinator {text!r}: expected HOST:PORT, process 0's address "
                          "and a free port, e.g. 10.0.0.1:34567 or 127.0.0.1:34567")
    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"--coordinator {text}: port {int(port)} is outside 1-65535")
    return host, int(port)


def resolve(host: str, port: int, timeout: float) -> str:
    """The IP address of ``host``, looked up within ``timeout`` seconds (a resolver that
    does not answer would otherwise hang the start-up)."""
    found: dict[str, Any] = {}

    def look_up() -> None:
        try:
            found["info"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as err:  # socket.gaierror and friends
            found["error"] = err

    worker = threading.Thread(target=look_up, daemon=True)
    worker.start()
    worker.join(timeout)
    if "info" in found:
        return found["info"][0][4][0]
    why = found["error"].strerror if "error" in found else f"no answer within {timeout:g} s"
    raise ConfigError(f"--coordinator {host}:{port}: cannot resolve the host name {host!r} "
                      f"({why}); check the name, or give process 0's IP address")


def check_flags(coordinator: str, num_processes: int, process_id: int,
                timeout: float) -> tuple[str, int]:
    """Everything about the three flags that can be checked before any process waits:
    the address's syntax, port range, host name, and the process id's range."""
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id {process_id} is out of range for --num-processes "
                          f"{num_processes}: use 0..{num_processes - 1}")
    host, port = parse_coordinator(coordinator)
    return resolve(host, port, min(timeout, 10.0)), port


def initialize(coordinator: str | None, num_processes: int | None,
               process_id: int | None, detect: bool = False, timeout: float = 90) -> None:
    """Starts JAX's distributed runtime when asked to (no-op otherwise).

    With explicit flags, the flags are checked and the processes meet in a bounded
    handshake of our own (:func:`rendezvous`) before ``jax.distributed.initialize``,
    whose client aborts the whole process natively when a peer never comes: a
    failure is then one line naming the coordinator and what to check, within
    ``timeout`` seconds. On the CPU the processes' collectives go through gloo
    (needed to gather the results); it must be chosen before the backend starts.
    """
    explicit = (coordinator, num_processes, process_id)
    if not detect and all(v is None for v in explicit):
        return
    if not detect and any(v is None for v in explicit):
        raise ConfigError("--coordinator, --num-processes and --process-id go together "
                          "(or --distributed alone, to let JAX read a cluster's environment)")
    seconds = max(1, int(timeout))
    if not detect:
        address, port = check_flags(coordinator, num_processes, process_id, timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if not detect:
        rendezvous(coordinator, address, port, num_processes, process_id, timeout)
    try:
        jax.distributed.initialize(coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=seconds)
    except (RuntimeError, ValueError) as err:  # e.g. no cluster found, or started twice
        raise StartupError(f"jax.distributed could not start ({err}); check --coordinator, "
                           "--num-processes and --process-id, or the cluster's "
                           "environment with --distributed") from None
    # gloo prints a banner from C++ each time a communicator connects: at the first
    # collective below and at each program's first cross-process collective later.
    drop_gloo_banners()
    barrier("jaxcnn: started")


BANNER = b"[Gloo] Rank "


class _BannerFilter:
    """Line filter over a byte stream: drops lines that start with :data:`BANNER` and
    passes everything else on at once (a partial line as soon as it cannot be one)."""

    def __init__(self, write):
        self.write, self.pending, self.passing = write, b"", False

    def feed(self, data: bytes) -> None:
        while data:
            if self.passing:  # the rest of a line already known not to be a banner
                head, newline, data = data.partition(b"\n")
                self.write(head + newline)
                self.passing = not newline
                continue
            self.pending += data
            data = b""
            line, newline, rest = self.pending.partition(b"\n")
            if newline:
                if not line.startswith(BANNER):
                    self.write(line + newline)
                self.pending, data = b"", rest
            elif not (BANNER.startswith(line) or line.startswith(BANNER)):
                self.write(line)
                self.pending, self.passing = b"", True

    def close(self) -> None:
        if self.pending and not self.pending.startswith(BANNER):
            self.write(self.pending)
        self.pending = b""


def drop_gloo_banners() -> None:
    """For the rest of the process, lines starting "[Gloo] Rank " are dropped from file
    descriptor 1 (gloo writes them from C++, below Python's sys.stdout): fd 1 becomes a
    pipe that a thread copies to the real stdout, line by line, leaving the banners out.
    At exit the real stdout comes back and the thread drains the pipe."""
    sys.stdout.flush()
    real = os.dup(1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.close(write_end)

    def write_all(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(real, view):]

    def pump() -> None:
        lines = _BannerFilter(write_all)
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                lines.feed(chunk)
        lines.close()

    thread = threading.Thread(target=pump, name="jaxcnn-gloo-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stdout.flush()
        ctypes.CDLL(None).fflush(None)  # C stdio buffers, before fd 1 goes back
        os.dup2(real, 1)  # closes the pipe's only write end: the thread sees its end
        thread.join(timeout=10)

    atexit.register(restore)


def rendezvous(coordinator: str, address: str, port: int, num_processes: int,
               process_id: int, timeout: float) -> None:
    """Every process meets process 0 on the coordinator's port before JAX does.

    Process 0 listens, each other process connects and says who it is; process 0
    answers once all have come (or tells one what is wrong with it). The port is
    free again afterwards for JAX's coordination service (the peers close first,
    so no closed connection lingers on process 0's side of it).
    """
    if num_processes == 1:
        return
    deadline = time.monotonic() + timeout
    if process_id == 0:
        _host_rendezvous(coordinator, address, port, num_processes, deadline, timeout)
    else:
        _join_rendezvous(coordinator, address, port, num_processes, process_id, deadline,
                         timeout)


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall((json.dumps(message) + "\n").encode())


def _tell(conn: socket.socket, error: str) -> None:
    """Sends a peer the line it should fail with, then closes the connection."""
    with contextlib.suppress(OSError), conn:
        _send(conn, {"hello": _HELLO, "error": error})


def _receive(conn: socket.socket, seconds: float) -> dict | None:
    """One JSON line from ``conn`` within ``seconds``; None if none (or not ours)."""
    conn.settimeout(max(seconds, 0.05))
    data = b""
    try:
        while not data.endswith(b"\n") and len(data) < 4096:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        message = json.loads(data)
    except (OSError, ValueError):
        return None
    return message if isinstance(message, dict) and message.get("hello") == _HELLO else None
def _listen(coordinator: str, address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        return socket.create_server(("::" if family == socket.AF_INET6 else "", port),
                                    family=family)
    except OSError as err:
        raise StartupError(f"--coordinator {coordinator}: process 0 cannot listen on port "
                           f"{port} ({err.strerror}); choose a free port (1024-65535) of this "
                           "host") from None


def _peer_problem(hello: dict, num_processes: int, joined: dict) -> str | None:
    """Why a peer's greeting does not fit this run, None if it does."""
    theirs, pid = hello.get("num_processes"), hello.get("process_id")
    if theirs != num_processes:
        return (f"process {pid} was started with --num-processes {theirs}, process 0 with "
                f"{num_processes}; start every process with the same --num-processes")
    if pid in joined or pid == 0:
        return (f"two processes were started with --process-id {pid}; give each its own id "
                f"0..{num_processes - 1}")
    return None


def _host_rendezvous(coordinator: str, address: str, port: int, num_processes: int,
                     deadline: float, timeout: float) -> None:
    """Process 0's side: waits for every other process, then answers them all."""
    joined: dict[int, socket.socket] = {}
    try:
        with _listen(coordinator, address, port) as server:
            while len(joined) < num_processes - 1:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(range(1, num_processes)) - set(joined))
                    raise StartupError(
                        f"--coordinator {coordinator}: {len(missing)} of the "
                        f"{num_processes - 1} other processes did not connect within "
                        f"{timeout:g} s (--process-id {', '.join(map(str, missing))}); start "
                        f"them with the same --coordinator and --num-processes {num_processes},"
                        f" check that port {port} of this host is reachable from theirs "
                        "(firewall), or raise --init-timeout")
                server.settimeout(left)
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                hello = _receive(conn, min(5.0, left))
                if hello is None:  # not one of ours (a port scan, a stray client)
                    conn.close()
                    continue
                problem = _peer_problem(hello, num_processes, joined)
                if problem is not None:
                    _tell(conn, f"--coordinator {coordinator}: {problem}")
                    raise StartupError(f"--coordinator {coordinator}: {problem}")
                joined[hello["process_id"]] = conn
        for conn in joined.values():
            _send(conn, {"hello": _HELLO, "ok": True})
        for conn in joined.values():
            _receive(conn, 2.0)  # the peer closes first (see rendezvous)
    except StartupError as err:
        for conn in joined.values():  # so the peers stop waiting, with the same line
            _tell(conn, str(err))
        raise
    finally:
        for conn in joined.values():
            conn.close()


def _join_rendezvous(coordinator: str, address: str, port: int, num_processes: int,
                     process_id: int, deadline: float, timeout: float) -> None:
    """Another process's side: connects to process 0 (retrying until the deadline, as it
    may start later) and waits for its answer."""
    hello = {"hello": _HELLO, "process_id": process_id, "num_processes": num_processes}
    stranger = False  # something answered on the port, but not a waiting process 0
    while (left := deadline - time.monotonic()) > 0:
        try:
            conn = socket.create_connection((address, port), timeout=min(left, 2.0))
        except OSError:
            time.sleep(min(0.5, left))
            continue
        with conn:
            try:
                _send(conn, hello)
            except OSError:
                continue
            answer = _receive(conn, deadline - time.monotonic())
        if answer is not None and "error" in answer:
            raise StartupError(answer["error"])
        if answer is not None and answer.get("ok"):
            return
        stranger = True
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
    found = ("something answers there that is not a jaxcnn process 0 waiting for its peers"
             if stranger else "process 0 did not answer")
    raise StartupError(f"--coordinator {coordinator}: {found} within {timeout:g} s; start "
                       "process 0 (--process-id 0) with the same --coordinator and "
                       f"--num-processes {num_processes}, check that {coordinator} is its "
                       "address and reachable from this host (firewall), or raise "
                       "--init-timeout")


def is_main() -> bool:
    """Process 0: the one that writes results, figures and the report."""
    return jax.process_index() == 0


def share(items: list) -> list:
    """This process's share of ``items``: every process_count-th, from its index."""
    return items[jax.process_index()::jax.process_count()]


def barrier(name: str) -> None:
    """Waits until every process gets here (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def allgather_bytes(blob: bytes) -> list[bytes]:
    """Every process's ``blob``, in process order, on every process."""
    if jax.process_count() == 1:
        return [blob]
    from jax.experimental import multihost_utils

    sizes = np.asarray(multihost_utils.process_allgather(np.array([len(blob)], np.int64)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:len(blob)] = np.frombuffer(blob, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [gathered[i, :int(sizes[i, 0])].tobytes() for i in range(len(gathered))]


def pack(records: list[dict], arrays: list[Any]) -> bytes:
    """JSON records and their numpy pytrees as one blob (npz; no pickles)."""
    leaves, treedef_strings = [], []
    for tree in arrays:
        flat, treedef = jax.tree_util.tree_flatten(tree)
        leaves.append(flat)
        treedef_strings.append(json.dumps(jax.tree.unflatten(treedef, list(range(len(flat))))))
    buffer = io.BytesIO()
    np.savez(buffer, **{f"a{i}_{j}": np.asarray(leaf) for i, flat in enumerate(leaves)
                        for j, leaf in enumerate(flat)})
    header = json.dumps({"records": records, "trees": treedef_strings}).encode()
    return len(header).to_bytes(8, "little") + header + buffer.getvalue()


def unpack(blob: bytes) -> tuple[list[dict], list[Any]]:
    """The inverse of :func:`pack` (trees come back as nested dicts of arrays)."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    with np.load(io.BytesIO(blob[8 + size:]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    trees = []
    for i, layout in enumerate(header["trees"]):
        trees.append(jax.tree.map(lambda j, i=i: arrays[f"a{i}_{j}"], json.loads(layout)))
    return header["records"], trees
