"""Scaling out: members split over devices and processes, and in memory-planned chunks,
give the numbers of one device, one process, one chunk (bit for bit on the CPU).

Several CPU devices are forced with XLA_FLAGS, which must be set before JAX starts, so
those runs are subprocesses. Results are compared under the same XLA configuration
(the same number of forced devices): the number of host devices changes how XLA:CPU
splits a matmul over threads, and with it the last bits.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jaxcnn.experiment import Experiment, Runtime
from jaxcnn.models.model import Network
from jaxcnn.pipeline import run_studies
from jaxcnn.studies import REGULARIZATION
from jaxcnn.training.memory import member_bytes
from tests.conftest import TINY_BATCH, TINY_FLAGS, TINY_TRAIN

ROOT = Path(__file__).resolve().parents[1]
TINY = list(TINY_FLAGS)


def configs(out: Path, study: str) -> dict:
    return json.loads((out / study / "results.json").read_text())["configs"]


def run(module: str, flags: list[str], devices: int) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen([sys.executable, "-m", module, *flags], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_in_one_process(commands: list[tuple[str, list[str]]], devices: int) -> subprocess.Popen:
    """Several entry points' main(argv) in one process: compiled programs are shared."""
    script = ("import importlib, sys\n"
              f"for module, argv in {commands!r}:\n"
              "    code = importlib.import_module(module).main(argv)\n"
              "    if code: sys.exit(code)\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_members_split_over_four_devices_equal_one_device(tmp_path):
    """The three studies run together (9 distinct members) and a sweep of 3 values x 3
    seeds: 9 members each, padded to 12 (3 per device), so both use one compiled program."""
    def seeds(n: int) -> list[str]:
        at = TINY.index("--seeds")
        return [*TINY[:at], "--seeds", str(n), *TINY[at + 2:]]

    sweep = ["--param", "lr=0.001,0.002,0.004"]
    commands = []
    for devices in (1, 4):
        out = ["--out", str(tmp_path / f"d{devices}"), "--devices", str(devices)]
        commands += [("experiments.all", [*seeds(1), *out]),
                     ("experiments.sweep", [*seeds(3), *sweep, *out])]
    assert "on 4 devices" in finish(run_in_one_process(commands, 4))
    for study in ("regularization", "initialization", "schedules", "sweep"):
        assert configs(tmp_path / "d4", study) == configs(tmp_path / "d1", study), study
    runtime = json.loads((tmp_path / "d4" / "sweep" / "results.json").read_text())
    assert runtime["metadata"]["runtime"]["devices"] == 4
    assert len(runtime["configs"]) == 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_equal_one_process(tmp_path):
    """jax.distributed with two processes of two CPU devices each: every process trains
    its share; process 0 gathers and writes the results the single process writes."""
    single = tmp_path / "single"
    finish(run("experiments.regularization", [*TINY, "--out", str(single)], 2))
    port = free_port()
    hosts = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    multi = tmp_path / "multi"
    procs = [run("experiments.regularization",
                 [*TINY, "--out", str(multi), *hosts, "--process-id", str(i)], 2)
             for i in (1, 0)]
    outputs = [finish(p) for p in procs]
    assert configs(multi, "regularization") == configs(single, "regularization")
    meta = json.loads((multi / "regularization" / "results.json").read_text())["metadata"]
    assert meta["runtime"]["processes"] == 2
    assert "process 1 of 2" in outputs[0] and "process 0 of 2" in outputs[1]
    for output in outputs:  # issue 19 item 10: no gloo banners, no orbax merge warning
        assert "[Gloo]" not in output and "Skipping merge of OCDBT" not in output, output
    assert "paired by seed against" in outputs[1]  # stdout (the table) drained at exit
    assert not list((multi / "checkpoints").glob("*"))  # each process cleared its own


@pytest.mark.slow
def test_memory_plan_chunks_when_the_device_holds_less_and_chunked_equals_unchunked(
        tmp_path, capsys):
    experiment = Experiment(data="synthetic", seeds=2, epochs=1, train_examples=TINY_TRAIN,
                            val_size=50, batch_size=TINY_BATCH)
    one_chunk = run_studies([REGULARIZATION], experiment,
                            Runtime(batching="map", progress=False, out=tmp_path / "one",
                                    memory_budget=10**6))
    assert "memory plan" not in capsys.readouterr().err
    # Room for exactly two members (and the data) per chunk: 8 members (4 configurations
    # x 2 seeds) in 4 chunks.
    per_member = member_bytes(Network(), TINY_BATCH, "winograd").total
    budget = (2.5 * per_member + 7 * 2**20) / 0.8 / 2**20
    chunked = run_studies([REGULARIZATION], experiment,
                          Runtime(batching="map", progress=False, out=tmp_path / "chunked",
                                  memory_budget=budget))
    assert "4 successive chunks of 2" in capsys.readouterr().err
    assert chunked["regularization"]["configs"] == one_chunk["regularization"]["configs"]
