"""results.json is written whole (temp file + rename) and readable like any other file."""

from __future__ import annotations

import json
import os
import stat

from jaxcnn import results


def test_atomic_write_leaves_no_temp_file_and_the_usual_permissions(tmp_path):
    path = tmp_path / "study" / "results.json"
    results.write_json_atomic(path, {"a": [1, 2.5]})
    results.write_json_atomic(path, {"a": [3]})  # replaces the old file
    assert json.loads(path.read_text()) == {"a": [3]}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
