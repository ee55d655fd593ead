import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests must not touch the user's cache or the network.
os.environ.setdefault("JAXCNN_CACHE", str(Path(__file__).parent / ".cache-unused"))
# Nor JAX's persistent compilation cache: a test that checks it turns it on in its own
# processes (tests/test_run.py).
os.environ.setdefault("JAXCNN_COMPILE_CACHE", "0")

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.xz"

# Every test that trains uses these sizes (100 training images, batches of 16: 7 steps,
# the last of 4 images), so the compiled programs are shared across the whole run.
TINY_TRAIN, TINY_BATCH = 100, 16
# The command-line flags of that tiny run (2 seeds x 1 epoch, 50 validation images): one list
# for every test that trains through a command line.
TINY_FLAGS = ("--data", "synthetic", "--seeds", "2", "--epochs", "1", "--train-examples",
              str(TINY_TRAIN), "--val-size", "50", "--batch-size", str(TINY_BATCH),
              "--no-progress")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"real CIFAR-10 copy not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def tiny_data():
    """Device-resident synthetic splits: 100 train, 50 val, 50 test images."""
    from jaxcnn.data import prepare_data
    from jaxcnn.data.synthetic import make_synthetic
    from jaxcnn.training.runner import DeviceData

    return DeviceData(prepare_data(make_synthetic(300, 50), val_size=50,
                                   train_examples=TINY_TRAIN))


@pytest.fixture(scope="session")
def programs():
    """One set of compiled chunk programs for the whole test session. A run of the package
    compiles its own (``Programs.for_run``); the tests' many tiny runs share this one
    instead (:func:`runs_share_programs`), so each program compiles once per session."""
    from jaxcnn.training.runner import Programs

    return Programs()


@pytest.fixture(scope="session", autouse=True)
def runs_share_programs(programs):
    """Every run_studies of the session trains with the shared ``programs`` (a test that
    checks what one run compiles on its own undoes this with its monkeypatch)."""
    from jaxcnn.training.runner import Programs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Programs, "for_run", classmethod(lambda cls: programs))
        yield


@contextlib.contextmanager
def count_compiles() -> Iterator[list[float]]:
    """Every XLA backend compilation while active, as the list of their durations (s)."""
    import jax

    durations: list[float] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            durations.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield durations
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
