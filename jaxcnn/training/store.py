"""The results store: everything a run reads from and writes to ``--out``.

Layout (see also ``checkpoint.py``)::

    OUT/<study>/results.json         metadata, configurations, seeds, statistics
    OUT/<study>/params/<config>/     final parameters of every seed
    OUT/checkpoints/<chunk>/         unfinished chunks (dropped once written)

:class:`ResultsStore` opens each study's file (checking that a resumed one was made
with the same settings, or starting configurations over under ``--fresh``), takes
finished members (:meth:`ResultsStore.add`) and writes a model into every study that
has it once its last seed is in, copies models another study of ``--out`` already
finished, and clears checkpoints no longer needed. Process 0 writes; the other
processes read after it. Nothing here imports the training machinery.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from jaxcnn.errors import ConfigError, ResumeError
from jaxcnn.experiment import Experiment, Runtime, check_compatible, setting_differences
from jaxcnn.models import registry
from jaxcnn.optim.adam import describe_chain
from jaxcnn.optim.optax_optimizer import Optimizer
from jaxcnn.platform import distributed, environment
from jaxcnn.platform.progress import log
from jaxcnn.stats import rounds
from jaxcnn.training import checkpoint, predictions
from jaxcnn.training.members import Member, MemberResult
from jaxcnn.training.plan import RoundPlan, Want
from jaxcnn.training.results import SCHEMA_VERSION, read_results, write_results

if TYPE_CHECKING:
    from jaxcnn.configs import Configuration
    from jaxcnn.studies import Study
    from jaxcnn.training.prepared import Prepared
    from jaxcnn.training.runner import Checkpointer, RunSettings


def same_protocol_in_out(out: str | Path, study: str, settings: dict) -> bool:
    """Whether OUT/<study>/results.json exists and was made with ``settings`` (the seed
    count aside: it is a budget). A damaged file counts as absent here; the run that
    opens it says what is wrong."""
    try:
        existing = read_results(Path(out) / study / "results.json")
    except ResumeError:
        return False
    if existing is None:
        return False
    old = existing["metadata"]["settings"]
    return setting_differences({**old, "seeds": settings.get("seeds")}, settings) is None


def data_path(data: str) -> str | None:
    """The absolute path of a --data file or folder (None for a named source such as
    cifar10 or synthetic): what ``report --run-missing`` uses when the recorded
    spelling was relative to another folder."""
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else None


def study_metadata(study: Study, experiment: Experiment, runtime: Runtime, run: RunSettings,
                   prep: Prepared) -> dict:
    """What results.json says about the run, besides the numbers."""
    data, split = prep.dataset, prep.prepared
    command = shlex.join([*study.command, *experiment.flags(),
                          *study.extra_flags, "--out", str(runtime.out)])
    return {
        "versions": environment.versions(), "device": environment.device(),
        "git_commit": environment.git_commit(), "git_dirty": environment.git_dirty(),
        "data": {"source": data.source, "fingerprint": data.fingerprint,
                 "path": data_path(experiment.data),
                 "class_names": list(data.class_names),
                 "train_examples": len(split.train), "val_examples": len(split.val),
                 "test_examples": len(split.test), "val_is_test": split.val_is_test,
                 "normalization_mean": split.normalization.mean.tolist(),
                 "normalization_std": split.normalization.std.tolist()},
        "title": study.title, "settings": prep.settings,
        "reference": study.reference_in(prep.ctx), "metric": study.metric.record(),
        "runtime": {"batching": run.batching, "conv": run.conv, "workers": run.workers,
                    "members_per_chunk": run.members_per_chunk, "devices": run.devices,
                    "processes": jax.process_count()},
        "command": command, "invoked_as": environment.command_line(), **study.metadata,
    }


def check_fresh(path: Path, names: list[str], settings: dict) -> None:
    """Before --fresh starts ``names`` over: refuses (ResumeError) when the study keeps
    other configurations made with other settings, which the new ones would mix with."""
    try:
        existing = read_results(path)
    except ResumeError:
        return  # unreadable: start_over sets it aside
    kept = [n for n in (existing or {"configs": {}})["configs"] if n not in names]
    differences = kept and setting_differences(existing["metadata"]["settings"], settings)
    if differences:
        raise ResumeError(
            f"{path} also holds {', '.join(kept)}, which --fresh keeps, made with "
            f"{differences[0]}, not {differences[1]}; give the same flags, --fresh without "
            "--configs to start the whole study over, or another --out")


def start_over(path: Path, names: list[str]) -> None:
    """--fresh: removes the results and parameters of configurations ``names`` of the
    study at ``path`` and nothing else; the whole study folder goes only when it holds
    no other configuration. An unreadable results file is set aside, not deleted."""
    folder = path.parent
    if not folder.exists():
        return
    try:
        existing = read_results(path)
    except ResumeError:
        aside = path.with_name(path.name + ".unreadable")
        path.replace(aside)
        log(f"--fresh: {path} could not be read; moved it to {aside}")
    else:
        kept = {n: c for n, c in (existing or {"configs": {}})["configs"].items()
                if n not in names}
        if not kept:
            shutil.rmtree(folder)
            return
        existing["configs"] = kept
        for key in ("finished_after_seconds", "resumed_from_epoch"):
            for name in names:
                existing["metadata"].get(key, {}).pop(name, None)
        existing.pop("statistics", None)  # recomputed when the run finishes
        write_results(path, existing)
        log(f"--fresh: starting {', '.join(names)} over; keeping {', '.join(kept)} in {path}")
    for name in names:
        shutil.rmtree(folder / "params" / name, ignore_errors=True)


def optimizer_record(config: Configuration) -> dict:
    """results.json's ``optimizer`` (text) and ``optimizer_config`` (fields) of a
    configuration: the built-in Adam chain's, or an optax optimizer's."""
    opt = config.optimizer
    if isinstance(opt, Optimizer):
        return {"optimizer": opt.describe(), "optimizer_config": opt.record()}
    return {"optimizer": describe_chain(opt, dict(config.regularizers)),
            "optimizer_config": dataclasses.asdict(opt)}


def config_record(config: Configuration, reference: str, name: str, seeds: list[dict],
                  schedule: dict, same_model_as: list[str], trained_as: str) -> dict:
    """A configuration's entry in results.json ``configs``."""
    return {"description": config.description, "is_reference": name == reference,
            "init": config.init, "model": config.model_record(),
            **optimizer_record(config),
            "identity": config.fingerprint(), "same_model_as": same_model_as,
            "trained_as": trained_as, "schedule": schedule, "seeds": seeds}


def _stacked(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.stack(xs), *trees)


class ResultsStore:
    """The studies' results under ``--out`` while a run is on (see the module docstring).

    results: study -> its results dict as last written; paths: study -> results.json.
    Per round (:meth:`begin_round`) it collects finished members by model and writes a
    model once every target seed is finished now or already held.
    """

    def __init__(self, out: Path, studies: dict[str, Study], prep: Prepared,
                 paths: dict[str, Path], all_pairs: bool, started: float):
        self.out, self.studies, self.prep, self.paths = out, studies, prep, paths
        self.all_pairs, self.started = all_pairs, started
        self.results: dict[str, dict] = {}
        self.plan: RoundPlan | None = None
        self.finished: dict[str, dict[int, MemberResult]] = defaultdict(dict)
        self.pending_chunks: list[tuple[Checkpointer, set[str]]] = []
        self.members_trained = 0
        self.reload()

    @classmethod
    def open(cls, studies: list[Study], experiment: Experiment, runtime: Runtime,
             run: RunSettings, prep: Prepared, started: float) -> ResultsStore:
        """Checks (or, with --fresh, starts over) and opens each study's results.json,
        recording this run's metadata in it."""
        paths = {}
        for study in studies:
            out_dir = Path(runtime.out) / study.name
            if out_dir.exists() and not out_dir.is_dir():
                raise ConfigError(f"--out {runtime.out}: {out_dir} is a file, not a folder; "
                                  "give another --out")
            paths[study.name] = out_dir / "results.json"
            if runtime.fresh:
                check_fresh(paths[study.name], list(prep.configs[study.name]), prep.settings)
                continue
            existing = read_results(paths[study.name])
            if existing is not None:
                check_compatible(existing["metadata"]["settings"], prep.settings,
                                 paths[study.name])
        distributed.barrier("jaxcnn: checked")
        if distributed.is_main():
            for study in studies:
                cls._open_one(study, paths[study.name], experiment, runtime, run, prep)
        distributed.barrier("jaxcnn: opened")
        return cls(Path(runtime.out), {s.name: s for s in studies}, prep, paths,
                   runtime.all_pairs, started)

    @staticmethod
    def _open_one(study: Study, path: Path, experiment: Experiment, runtime: Runtime,
                  run: RunSettings, prep: Prepared) -> None:
        if runtime.fresh:
            start_over(path, list(prep.configs[study.name]))
        current = read_results(path) or {"schema_version": SCHEMA_VERSION,
                                         "experiment": study.name, "metadata": {},
                                         "configs": {}}
        current["schema_version"] = SCHEMA_VERSION  # what this code writes (and reads)
        current["metadata"].update(study_metadata(study, experiment, runtime, run, prep))
        current["metadata"].setdefault("finished_after_seconds", {})
        try:
            write_results(path, current)
        except (NotADirectoryError, FileExistsError):
            raise ConfigError(f"--out {runtime.out}: a part of that path is a file; "
                              "give another --out") from None

    def reload(self) -> None:
        """Reads every study's results.json again (after process 0 wrote it)."""
        self.results = {name: read_results(path) for name, path in self.paths.items()}

    def save(self) -> None:
        """Writes every study's results dict (process 0)."""
        if distributed.is_main():
            for name, path in self.paths.items():
                write_results(path, self.results[name])

    # -- one round ---------------------------------------------------------------------

    def begin_round(self, plan: RoundPlan) -> None:
        self.plan = plan
        self.finished = defaultdict(dict)

    def members_to_train(self) -> list[tuple[str, int]]:
        """(canonical entry, seed) of the round's members neither held nor finished."""
        return self.plan.members(self.finished)

    def track(self, checkpointer: Checkpointer | None, members: list[Member]) -> None:
        """Remembers a chunk's checkpointer, to clear once its every member is written."""
        if checkpointer is not None:
            self.pending_chunks.append((checkpointer, {m.key for m in members}))

    def add(self, finished: list[MemberResult], trained: bool = True) -> None:
        """Takes finished members; writes each model whose last target seed is now in."""
        if trained:
            self.members_trained += len(finished)
        for r in finished:
            canonical = r.member.config
            if r.member.seed not in self.plan.targets[canonical]:
                continue  # a copied model's seeds beyond this round's
            fresh = r.member.seed not in self.finished[canonical]
            self.finished[canonical][r.member.seed] = r
            if fresh and not self.plan.missing_seeds(canonical, self.finished[canonical]):
                self._write_model(canonical)

    def _write_model(self, canonical: str) -> None:
        members = [self.finished[canonical][s] for s in sorted(self.finished[canonical])]
        if distributed.is_main():
            wall = round(time.perf_counter() - self.started, 2)
            for want in self.plan.wants[canonical]:
                results = self.results[want.study]
                seeds, params = self._merged(canonical, want, members)
                results["configs"][want.name] = config_record(
                    want.config, results["metadata"]["reference"], want.name, seeds,
                    members[0].schedule, self.prep.siblings.get(want.entry, []), canonical)
                results["metadata"]["finished_after_seconds"][want.name] = wall
                resumed = max(m.resumed_from_epoch for m in members)
                if resumed:
                    results["metadata"].setdefault("resumed_from_epoch", {})[want.name] = resumed
                checkpoint.save_params(self.paths[want.study].parent / "params" / want.name,
                                       params, [s["seed"] for s in seeds],
                                       self._params_meta(want.config))
                self._write_predictions(want, [s["seed"] for s in seeds], members,
                                        self.plan.kept[canonical])
                results["statistics"] = self.studies[want.study].statistics(
                    results, self.all_pairs)
                write_results(self.paths[want.study], results)
        self.clear_checkpoints({m.member.key for m in members})

    def _write_predictions(self, want: Want, seeds: list[int], members: list[MemberResult],
                           kept_seeds: set[int]) -> None:
        """The configuration's predictions file (``predictions.py``): this round's members
        and the seeds --out kept (``kept_seeds``: a file left by another model is never
        read); not written where a seed has none (results from before predictions were
        stored)."""
        path = predictions.path_of(self.paths[want.study].parent, want.name)
        rows = {m.member.seed: m.predictions for m in members if m.predictions is not None}
        kept = predictions.read(path) or {}
        rows.update({s: kept[s] for s in seeds
                     if s not in rows and s in kept and s in kept_seeds})
        if any(s not in rows for s in seeds):
            path.unlink(missing_ok=True)  # an incomplete file would not reproduce results
            return
        split = self.prep.prepared
        held_out = None if split.val_is_test else np.stack([split.rows(s)[1] for s in seeds])
        predictions.write(path, seeds, [rows[s] for s in seeds], split.test.labels,
                          None if held_out is None else split.pool.labels[held_out], held_out)

    def _params_meta(self, config: Configuration) -> dict:
        norm = self.prep.prepared.normalization
        return {"model": {**config.model_record(),
                          "model_source": registry.source_module(config.network.model)},
                "normalization": {"mean": norm.mean.tolist(), "std": norm.std.tolist()},
                "class_names": list(self.prep.dataset.class_names)}

    def _merged(self, canonical: str, want: Want, members: list[MemberResult]
                ) -> tuple[list[dict], Any]:
        """The seed records (in seed order) and stacked parameters (S, ...) of a model:
        the seeds --out kept for ``want`` and the ones finished now."""
        records = {m.member.seed: m.record for m in members}
        params = {m.member.seed: m.params for m in members}
        old = self.results[want.study]["configs"].get(want.name)
        keep = self.plan.kept[canonical] - set(records)
        if old is not None and keep:
            stacked, meta = checkpoint.load_params_tree(
                self.paths[want.study].parent / "params" / want.name)
            for i, seed in enumerate(meta["seeds"]):
                if seed in keep:
                    params[seed] = jax.tree.map(lambda x, i=i: np.asarray(x[i]), stacked)
            records.update({r["seed"]: r for r in old["seeds"] if r["seed"] in keep})
        order = sorted(records)
        return [records[s] for s in order], _stacked([params[s] for s in order])

    def clear_checkpoints(self, written: set[str]) -> None:
        """Drops the checkpoints of chunks whose every member is now written."""
        still = []
        for ckpt, keys in self.pending_chunks:
            keys -= written
            if keys:
                still.append((ckpt, keys))
            else:
                ckpt.clear()
        self.pending_chunks = still

    # -- models finished in another study of --out ---------------------------------------

    def finished_elsewhere(self, configs: dict[str, Configuration]
                           ) -> dict[str, tuple[str, str]]:
        """Models of ``configs`` (canonical -> configuration) finished in a study of --out
        outside this run, made with the same settings: canonical -> (study, name)."""
        found = {}
        fingerprints = {config.fingerprint(): canonical for canonical, config in configs.items()}
        for path in sorted(self.out.glob("*/results.json")):
            if path.parent.name in self.studies:
                continue
            try:
                existing = read_results(path)
            except ResumeError:  # an unreadable file elsewhere is not ours to judge
                continue
            if (existing is None
                    or existing.get("metadata", {}).get("settings") != self.prep.settings):
                continue
            for name, record in existing.get("configs", {}).items():
                canonical = fingerprints.get(record.get("identity"))
                if canonical is not None and canonical not in found:
                    found[canonical] = (existing["experiment"], name)
        return found

    def copy_finished(self, canonical: str, study_name: str, name: str) -> None:
        """Takes a model finished in another study of --out instead of training it."""
        source = read_results(self.out / study_name / "results.json")["configs"][name]
        params, _ = checkpoint.load_params_tree(self.out / study_name / "params" / name)
        params = jax.tree.map(np.asarray, params)
        if distributed.is_main():
            log(f"[{canonical}] the same model is finished in {study_name}/{name}; copying it")
        rows = predictions.read(predictions.path_of(self.out / study_name, name)) or {}
        self.add([MemberResult(Member(canonical, record["seed"], None), record,
                               source.get("schedule") or {},
                               jax.tree.map(lambda x, i=i: x[i], params),
                               predictions=rows.get(record["seed"]))
                  for i, record in enumerate(source["seeds"])], trained=False)

    # -- the end of a run -----------------------------------------------------------------

    def finish(self, total_seconds: float, compile_seconds: dict,
               compile_cache: dict | None = None) -> None:
        """Orders each study's configurations as its study does, recomputes statistics and
        verdict annotations, records the run's totals, and writes (process 0)."""
        for name, study in self.studies.items():
            current = self.results[name]
            order = list(self.prep.configs[name])
            current["configs"] = {n: current["configs"][n] for n in
                                  order + [n for n in current["configs"] if n not in order]
                                  if n in current["configs"]}
            current["statistics"] = study.statistics(current, self.all_pairs)
            if "decisions" in current:
                rounds.annotate({name: current}, current["decisions"])
            current["metadata"]["total_wall_seconds_this_invocation"] = total_seconds
            current["metadata"]["compile_seconds"] = compile_seconds
            current["metadata"]["compile_cache"] = compile_cache
            current["metadata"]["members_trained_this_invocation"] = self.members_trained
        self.save()
