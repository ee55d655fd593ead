"""results.json is written whole (temp file + rename), readable like any other file, and a
hand-edited or damaged one is one line naming the place and the fix."""

from __future__ import annotations

import importlib
import json
import os
import stat
from pathlib import Path

import pytest

from jaxcnn.errors import ResumeError
from jaxcnn.training import results


def test_atomic_write_leaves_no_temp_file_and_the_usual_permissions(tmp_path):
    path = tmp_path / "study" / "results.json"
    results.write_json_atomic(path, {"a": [1, 2.5]})
    results.write_json_atomic(path, {"a": [3]})  # replaces the old file
    assert json.loads(path.read_text()) == {"a": [3]}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_neither_import_nor_writing_touches_the_umask(tmp_path, monkeypatch):
    """Issue 17: the umask is process state (and setting it is not thread-safe)."""
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real(mask))
    module = importlib.reload(results)
    module.write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert calls == []


def valid() -> dict:
    seed = {"seed": 0, "test_accuracy": 61.5, "test_loss": 1.1, "diverged_epoch": None,
            "history": {"train_loss": [1.5, None], "val_accuracy": [50.0, 55.0]}}
    return {"experiment": "regularization",
            "metadata": {"settings": {"seeds": 1}, "data": {"val_is_test": False},
                         "reference": "baseline"},
            "configs": {"baseline": {"seeds": [seed]}}}


def edited(change) -> dict:
    payload = valid()
    change(payload)
    return payload


@pytest.mark.parametrize("payload, named", [
    (edited(lambda p: p.pop("metadata")), "no 'metadata'"),
    (edited(lambda p: p["metadata"].pop("settings")), "metadata.settings is missing"),
    (edited(lambda p: p["configs"]["baseline"]["seeds"][0].update(test_accuracy="61.5")),
     "configs.baseline.seeds[0].test_accuracy is '61.5', not a number"),
    (edited(lambda p: p["configs"]["baseline"]["seeds"][0]["history"]["train_loss"]
            .append("x")), "configs.baseline.seeds[0].history.train_loss holds 'x'"),
    (edited(lambda p: p["configs"]["baseline"]["seeds"][0].update(seed=True)),
     "seeds[0].seed is True, not an integer"),
    (edited(lambda p: p["configs"].update(l2={"seeds": "none"})), "configs.l2 has no list"),
    ([1, 2], "the file holds no JSON object"),
])
def test_a_hand_edited_file_is_one_line_naming_the_place_and_the_fix(tmp_path, payload, named):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ResumeError) as error:
        results.read_results(path)
    message = str(error.value)
    assert named in message and str(path) in message and "\n" not in message
    assert "rerun that study with --fresh" in message


def test_a_well_formed_file_reads_back_and_a_missing_one_is_none(tmp_path):
    path = tmp_path / "results.json"
    results.write_json_atomic(path, valid())
    assert results.read_results(path) == valid()
    assert results.read_results(tmp_path / "absent.json") is None


@pytest.mark.parametrize("content", [b'{"experiment": "regu', b"\xff\xfe\x00garbage"])
def test_a_corrupt_file_is_one_line(tmp_path, content):
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(ResumeError, match="cannot read the existing results"):
        results.read_results(path)


@pytest.mark.parametrize("old, new, continues", [
    (5, 5, True), (5, 8, True), (5, "auto", True), ("auto", "auto", True),
    (5, 3, False), ("auto", 5, False),
])
def test_the_seed_count_is_a_budget_that_may_grow(tmp_path, old, new, continues):
    """A run of --seeds 5 continues under --seeds 8 or --seeds auto (the finished seeds
    are the same members); fewer seeds, or auto back to a fixed count, is refused with
    one line naming both flags."""
    from jaxcnn.experiment import check_compatible

    settings = {"data": "synthetic", "data_fingerprint": "f", "epochs": 2}
    path = tmp_path / "results.json"
    if continues:
        check_compatible({**settings, "seeds": old}, {**settings, "seeds": new}, path)
        return
    with pytest.raises(ResumeError) as error:
        check_compatible({**settings, "seeds": old}, {**settings, "seeds": new}, path)
    assert f"--seeds {old}, not --seeds {new}" in str(error.value)
    assert "\n" not in str(error.value)


def test_results_record_whether_the_checkout_was_dirty(tmp_path):
    """metadata.git_dirty: False on a clean checkout, True once a file changes or is added,
    None outside git."""
    import subprocess

    from jaxcnn.platform.environment import git_dirty

    assert git_dirty(tmp_path) is None
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "a"], cwd=tmp_path, check=True)
    assert git_dirty(tmp_path) is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_dirty(tmp_path) is True


def _minimal(**extra) -> dict:
    return {**extra, "experiment": "regularization",
            "metadata": {"settings": {}, "data": {}, "reference": "baseline"},
            "configs": {"baseline": {"seeds": [{"seed": 0, "test_accuracy": 50.0,
                                                "test_loss": 1.0, "diverged_epoch": None}]}}}


def test_the_schema_version_is_read_or_refused_in_one_line(tmp_path):
    """Files from before the version (no key) are read as they are; a newer version is
    refused naming both versions and what to do; a nonsense one is a damaged file."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_minimal()))
    assert results.read_results(path)["configs"]["baseline"]["seeds"][0]["seed"] == 0
    path.write_text(json.dumps(_minimal(schema_version=results.SCHEMA_VERSION)))
    assert results.read_results(path)["schema_version"] == results.SCHEMA_VERSION
    path.write_text(json.dumps(_minimal(schema_version=results.SCHEMA_VERSION + 1)))
    with pytest.raises(ResumeError) as err:
        results.read_results(path)
    message = str(err.value)
    assert "newer jaxcnn" in message and f"schema {results.SCHEMA_VERSION + 1}" in message
    assert "upgrade jaxcnn" in message and "\n" not in message
    path.write_text(json.dumps(_minimal(schema_version="two")))
    with pytest.raises(ResumeError, match="schema_version is 'two'"):
        results.read_results(path)


def _block(*studies: str, looks: int = 1) -> dict:
    """A decisions block over ``studies``' comparisons (one per study), ``looks`` looks."""
    return {"design": {"kind": "sequential", "margin": 1.0},
            "family": {"mode": "run", "size": {"all": len(studies)}, "members": {}},
            "comparisons": {f"{s}/b vs {s}/a": {"looks": [{"n": 2 * (i + 1)}
                                                           for i in range(looks)],
                                                 "final": None} for s in studies}}


def test_a_runs_decisions_are_stored_once_per_out(tmp_path):
    """Studies run together refer to one block in OUT/decisions.json (issue 26 item 6),
    read back as the block itself; a later round replaces it; a report that merges separate
    runs drops the blocks no study refers to; a version-2 file with its own copy still
    reads; a missing decisions.json is one line."""
    out = tmp_path / "out"
    together = _block("regularization", "schedules")
    for study in ("regularization", "schedules"):
        results.write_results(out / study / "results.json",
                              {**_minimal(schema_version=3), "experiment": study,
                               "decisions": together})
    raw = json.loads((out / "schedules" / "results.json").read_text())
    assert raw["decisions"] == {"stored_in": "decisions.json", "run": "regularization+schedules"}
    stored = json.loads((out / "decisions.json").read_text())["runs"]
    assert stored == {"regularization+schedules": together}
    for study in ("regularization", "schedules"):
        assert results.read_results(out / study / "results.json")["decisions"] == together
    later = _block("regularization", "schedules", looks=2)  # the next round, same run
    results.write_results(out / "schedules" / "results.json",
                          {**_minimal(schema_version=3), "decisions": later})
    assert json.loads((out / "decisions.json").read_text())["runs"] == {
        "regularization+schedules": later}
    alone = _block("initialization")  # a separate run into the same --out
    results.write_results(out / "initialization" / "results.json",
                          {**_minimal(schema_version=3), "decisions": alone})
    assert set(json.loads((out / "decisions.json").read_text())["runs"]) == {
        "regularization+schedules", "initialization"}
    merged = _block("initialization", "regularization", "schedules")  # a report's merge
    everything = {s: {**_minimal(), "decisions": merged}
                  for s in ("initialization", "regularization", "schedules")}
    for study, payload in everything.items():
        results.write_results(out / study / "results.json", payload)
    results.keep_decisions(out, everything)
    assert set(json.loads((out / "decisions.json").read_text())["runs"]) == {
        "initialization+regularization+schedules"}
    old = tmp_path / "old" / "s" / "results.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({**_minimal(schema_version=2), "decisions": together}))
    assert results.read_results(old)["decisions"] == together
    (out / "decisions.json").unlink()
    with pytest.raises(ResumeError) as err:
        results.read_results(out / "schedules" / "results.json")
    assert "are not in" in str(err.value) and "--fresh" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_typed_records_round_trip_every_committed_file_unchanged():
    """Issue 26 item 7: results.json <-> dataclasses (training/records.py), keys the records
    do not model carried through, so a file read and written again is the same."""
    import jaxcnn as jc
    from jaxcnn.training.records import StudyRecord

    root = importlib.import_module("jaxcnn").__file__
    out = os.path.join(os.path.dirname(os.path.dirname(root)), "experiments", "results")
    for study in ("regularization", "initialization", "schedules", "sweep"):
        payload = results.read_results(Path(out) / study / "results.json")
        record = StudyRecord.from_json(payload)
        assert record.to_json() == payload, study
        assert jc.results(out, study) == record
    regularization = jc.results(out, "regularization")
    seeds = regularization.configs["l2"].seeds
    assert [s.seed for s in seeds] == list(range(len(seeds))) and len(seeds) >= 5
    assert all(isinstance(s.test_accuracy, float) for s in seeds)
    assert regularization.other["decisions"]["design"]["kind"] == "sequential"
    with pytest.raises(FileNotFoundError, match="no results of study 'nothing'"):
        jc.results(out, "nothing")
    assert StudyRecord.from_json(valid()).to_json() == valid()
    assert StudyRecord.from_json({**valid(), "schema_version": 3}).schema_version == 3
