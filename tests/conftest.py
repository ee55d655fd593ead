import os
from pathlib import Path

import pytest

# Tests must not touch the user's cache or the network.
os.environ.setdefault("JAXCNN_CACHE", str(Path(__file__).parent / ".cache-unused"))

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.xz"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.exists():
        pytest.skip(f"real CIFAR-10 copy not found at {REAL_DATA}")
    return REAL_DATA
