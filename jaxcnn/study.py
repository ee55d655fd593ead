"""Run studies: plan the members, train each distinct model once, write results.

:func:`run_studies` takes one or more :class:`~jaxcnn.studies.Study` and one
:class:`~jaxcnn.experiment.Experiment`, and:

1. loads and splits the data, and builds every study's configurations
   (:func:`prepare`);
2. resumes what ``--out`` already holds (:func:`open_results`): finished
   configurations are kept, and a model already finished in another study of the
   same ``--out`` with the same settings is copied rather than trained again;
3. turns each distinct model still missing into members (one per seed), groups
   them by network, and trains each group with one compiled program
   (:func:`train_missing`, ``runner.py``), its members split over the local
   devices, over processes when there are several, and in chunks when the memory
   plan says they do not all fit;
4. as each model's last member finishes, writes it into every study that has it
   (:class:`_Writer`: results.json atomically, statistics, final parameters), so a
   run that dies loses at most the epochs since the last checkpoint;
5. writes figures and prints each study's table (:func:`finish`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import shlex
import shutil
import time
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np

from jaxcnn import distributed, environment, history, outlock, rounds
from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.data import load_dataset, prepare_data
from jaxcnn.errors import ConfigError, DataError, ResumeError
from jaxcnn.experiment import (
    DecisionOptions,
    Experiment,
    Runtime,
    check_compatible,
    setting_differences,
)
from jaxcnn.memory import free_bytes, member_bytes, plan_chunk
from jaxcnn.optim import describe_chain
from jaxcnn.progress import EpochLines, StepBoard, log, plural
from jaxcnn.report import console_table, estimation_comparisons
from jaxcnn.results import read_results, write_json_atomic
from jaxcnn.runner import (
    DeviceData,
    Member,
    MemberResult,
    Programs,
    RunSettings,
    member_mesh,
    train_members,
)
from jaxcnn.studies import STUDIES, Study, StudyContext


@dataclasses.dataclass
class Want:
    """A (study, configuration name) still missing, and its configuration."""

    study: str
    name: str
    config: Configuration


@dataclasses.dataclass
class Prepared:
    """Everything a run needs before training: data, configurations, settings."""

    dataset: object
    prepared: object
    ctx: StudyContext
    settings: dict
    configs: dict[str, dict[str, Configuration]]  # study -> name -> configuration
    siblings: dict[str, list[str]]  # "study/config" -> the same model elsewhere


def batch_size_notice(batch_size: int, num_train: int) -> str | None:
    """A warning when one batch holds the whole training set, else None."""
    if batch_size <= num_train:
        return None
    return (f"warning: --batch-size {batch_size} is larger than the {num_train} training "
            "images: every epoch is one padded step (one update per epoch)")


def same_models(all_configs: dict[str, dict[str, Configuration]]) -> dict[str, list[str]]:
    """"study/config" -> the other "study/config" entries that are the same model."""
    by_identity = defaultdict(list)
    for study, configs in all_configs.items():
        for name, config in configs.items():
            by_identity[config.identity()].append(f"{study}/{name}")
    return {entry: [e for e in entries if e != entry]
            for entries in by_identity.values() for entry in entries}


def prepare(studies: list[Study], experiment: Experiment, runtime: Runtime,
            configs: list[str] | None) -> Prepared:
    """Loads and splits the data; builds each study's configurations (``configs``
    restricts a single study to some of its own)."""
    dataset = load_dataset(experiment.data, cache_dir=runtime.cache_dir,
                           show_progress=runtime.progress)
    if dataset.num_classes < 2:
        raise DataError(f"{dataset.source}: {dataset.num_classes} class; a classifier "
                        "needs at least 2 class folders")
    if (experiment.train_examples is not None
            and experiment.train_examples < dataset.num_classes):
        raise ConfigError(f"--train-examples {experiment.train_examples} is fewer than the "
                          f"{dataset.num_classes} classes of {dataset.source}; give at least "
                          f"{dataset.num_classes} (the subset is stratified over classes)")
    prepared = prepare_data(dataset, val_size=experiment.val_size,
                            train_examples=experiment.train_examples,
                            normalization=experiment.normalization)
    notice = batch_size_notice(experiment.batch_size, len(prepared.train))
    if notice and distributed.is_main():
        log(notice)
    ctx = StudyContext(experiment, experiment.steps_per_epoch(len(prepared.train)),
                       dataset.num_classes, tuple(dataset.image_shape))
    try:
        all_configs = {s.name: s.build_configs(ctx) for s in studies}
    except ValueError as err:  # e.g. images too small for the network's three poolings
        raise DataError(f"{dataset.source}: {err}") from None
    if configs is not None:
        (only,) = studies
        unknown = [n for n in configs if n not in all_configs[only.name]]
        if unknown:
            raise ConfigError(f"argument --configs: unknown configuration {unknown[0]!r} "
                              f"(choose from {', '.join(all_configs[only.name])})")
        all_configs[only.name] = {n: c for n, c in all_configs[only.name].items() if n in configs}
    settings = experiment.settings(dataset.fingerprint)
    # Models are linked ("same_model_as") only under one protocol: the studies of this run,
    # and those already in --out under the same settings (issue 18: a 1-epoch sweep on
    # 10,000 images is not the same model as a 2-epoch study on all of them).
    known = {name: study.build_configs(ctx) for name, study in STUDIES.items()
             if name not in all_configs and same_protocol_in_out(runtime.out, name, settings)}
    return Prepared(dataset, prepared, ctx, settings, all_configs,
                    same_models({**known, **all_configs}))


def same_protocol_in_out(out: str, study: str, settings: dict) -> bool:
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


def study_metadata(study: Study, experiment: Experiment, runtime: Runtime, run: RunSettings,
                   prep: Prepared) -> dict:
    """What results.json says about the run, besides the numbers."""
    data, split = prep.dataset, prep.prepared
    command = shlex.join(["python", "-m", f"experiments.{study.name}", *experiment.flags(),
                          *study.extra_flags, "--out", str(runtime.out)])
    return {
        "versions": environment.versions(), "device": environment.device(),
        "git_commit": environment.git_commit(),
        "data": {"source": data.source, "fingerprint": data.fingerprint,
                 "class_names": list(data.class_names),
                 "train_examples": len(split.train), "val_examples": len(split.val),
                 "test_examples": len(split.test), "val_is_test": split.val_is_test,
                 "normalization_mean": split.normalization.mean.tolist(),
                 "normalization_std": split.normalization.std.tolist()},
        "settings": prep.settings, "reference": study.reference_in(prep.ctx),
        "runtime": {"batching": run.batching, "conv": run.conv, "workers": run.workers,
                    "members_per_chunk": run.members_per_chunk, "devices": run.devices,
                    "processes": jax.process_count()},
        "command": command, "invoked_as": environment.command_line(), **study.metadata,
    }


def open_results(studies: list[Study], experiment: Experiment, runtime: Runtime,
                 run: RunSettings, prep: Prepared) -> tuple[dict, dict]:
    """Each study's results dict and path: the existing file (after checking it was made
    with the same settings), or a new one. Process 0 writes; the others read after it."""
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
            check_compatible(existing["metadata"]["settings"], prep.settings, paths[study.name])
    distributed.barrier("jaxcnn: checked")
    if distributed.is_main():
        for study in studies:
            path = paths[study.name]
            if runtime.fresh:
                start_over(path, list(prep.configs[study.name]))
            current = read_results(path) or {"experiment": study.name, "metadata": {},
                                             "configs": {}}
            current["metadata"].update(study_metadata(study, experiment, runtime, run, prep))
            current["metadata"].setdefault("finished_after_seconds", {})
            try:
                write_json_atomic(path, current)
            except (NotADirectoryError, FileExistsError):
                raise ConfigError(f"--out {runtime.out}: a part of that path is a file; "
                                  "give another --out") from None
    distributed.barrier("jaxcnn: opened")
    return {s.name: read_results(paths[s.name]) for s in studies}, paths


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
        write_json_atomic(path, existing)
        log(f"--fresh: starting {', '.join(names)} over; keeping {', '.join(kept)} in {path}")
    for name in names:
        shutil.rmtree(folder / "params" / name, ignore_errors=True)


def config_record(config: Configuration, reference: str, name: str, seeds: list[dict],
                  schedule: dict, same_model_as: list[str], trained_as: str) -> dict:
    """A configuration's entry in results.json ``configs``."""
    return {"description": config.description, "is_reference": name == reference,
            "init": config.init, "model": config.model_record(),
            "optimizer": describe_chain(config.optimizer, dict(config.regularizers)),
            "optimizer_config": dataclasses.asdict(config.optimizer),
            "identity": config.fingerprint(), "same_model_as": same_model_as,
            "trained_as": trained_as, "schedule": schedule, "seeds": seeds}


def kept_seeds(results: dict[str, dict], entries: list[Want]) -> set[int]:
    """The seeds --out already holds for every "study/name" of one model (a later round
    trains only the others)."""
    held = [{r["seed"] for r in results[w.study]["configs"].get(w.name, {}).get("seeds", [])}
            for w in entries]
    return set.intersection(*held) if held else set()


class _Writer:
    """Writes finished models into their studies, and clears checkpoints no longer needed.

    A model is written once every seed of its target (``targets[canonical]``: seeds
    0..n-1 of this round) is either finished now or already in --out for every study
    that has it (``kept[canonical]``: a later round adds seeds to earlier ones)."""

    def __init__(self, results: dict[str, dict], paths: dict[str, Path], wants: dict,
                 studies: dict[str, Study], prep: Prepared, runtime: Runtime, started: float,
                 counts: dict[str, int]):
        self.results, self.paths, self.wants, self.studies = results, paths, wants, studies
        self.prep, self.runtime, self.started = prep, runtime, started
        self.targets = {c: list(range(max(counts[f"{w.study}/{w.name}"] for w in entries)))
                        for c, entries in wants.items()}
        self.kept = {c: kept_seeds(results, entries) for c, entries in wants.items()}
        self.finished: dict[str, dict[int, MemberResult]] = defaultdict(dict)
        self.pending_chunks: list[tuple[object, set[str]]] = []
        self.members_trained = 0

    def missing_seeds(self, canonical: str) -> list[int]:
        """The target seeds of a model neither kept from --out nor finished in this run."""
        done = self.kept[canonical] | set(self.finished[canonical])
        return [s for s in self.targets[canonical] if s not in done]

    def chunk_started(self, checkpointer, members: list[Member]) -> None:
        self.pending_chunks.append((checkpointer, {m.key for m in members}))

    def on_done(self, results: list[MemberResult]) -> None:
        self.members_trained += len(results)
        for r in results:
            canonical = r.member.config
            if r.member.seed not in self.targets[canonical]:
                continue  # a copied model's seeds beyond this round's
            fresh = r.member.seed not in self.finished[canonical]
            self.finished[canonical][r.member.seed] = r
            if fresh and not self.missing_seeds(canonical):
                self._write_model(canonical)

    def _params_meta(self, config: Configuration) -> dict:
        norm = self.prep.prepared.normalization
        return {"model": config.model_record(),
                "normalization": {"mean": norm.mean.tolist(), "std": norm.std.tolist()},
                "class_names": list(self.prep.dataset.class_names)}

    def _write_model(self, canonical: str) -> None:
        from jaxcnn import checkpoint

        members = [self.finished[canonical][s] for s in sorted(self.finished[canonical])]
        done = {m.member.key for m in members}
        if distributed.is_main():
            wall = round(time.perf_counter() - self.started, 2)
            for want in self.wants[canonical]:
                results = self.results[want.study]
                seeds, params = self._merged(canonical, want, members)
                results["configs"][want.name] = config_record(
                    want.config, results["metadata"]["reference"], want.name, seeds,
                    members[0].schedule,
                    self.prep.siblings.get(f"{want.study}/{want.name}", []), canonical)
                results["metadata"]["finished_after_seconds"][want.name] = wall
                resumed = max(m.resumed_from_epoch for m in members)
                if resumed:
                    results["metadata"].setdefault("resumed_from_epoch", {})[want.name] = resumed
                checkpoint.save_params(self.paths[want.study].parent / "params" / want.name,
                                       params, [s["seed"] for s in seeds],
                                       self._params_meta(want.config))
                results["statistics"] = self.studies[want.study].statistics(
                    results, self.runtime.all_pairs)
                write_json_atomic(self.paths[want.study], results)
        self.clear_checkpoints(done)

    def _merged(self, canonical: str, want: Want, members: list[MemberResult]
                ) -> tuple[list[dict], object]:
        """The seed records (in seed order) and stacked parameters (S, ...) of a model:
        the seeds --out kept for ``want`` and the ones finished now."""
        from jaxcnn import checkpoint

        records = {m.member.seed: m.record for m in members}
        params = {m.member.seed: m.params for m in members}
        old = self.results[want.study]["configs"].get(want.name)
        keep = self.kept[canonical] - set(records)
        if old is not None and keep:
            stacked, meta = checkpoint.load_params_tree(
                self.paths[want.study].parent / "params" / want.name)
            for i, seed in enumerate(meta["seeds"]):
                if seed in keep:
                    params[seed] = jax.tree.map(lambda x, i=i: np.asarray(x[i]), stacked)
            records.update({r["seed"]: r for r in old["seeds"] if r["seed"] in keep})
        order = sorted(records)
        return ([records[s] for s in order],
                jax.tree.map(lambda *xs: np.stack(xs), *[params[s] for s in order]))

    def clear_checkpoints(self, written: set[str]) -> None:
        """Drops the checkpoints of chunks whose every member is now written."""
        still = []
        for ckpt, keys in self.pending_chunks:
            keys -= written
            if keys:
                still.append((ckpt, keys))
            elif ckpt is not None:
                ckpt.clear()
        self.pending_chunks = still


def missing_models(studies: list[Study], results: dict, prep: Prepared, counts: dict[str, int],
                   quiet: bool = False) -> tuple[dict[str, list[Want]], dict[str, Configuration]]:
    """The models with seeds still missing (``counts``: "study/name" -> seeds wanted),
    each once, under the first "study/name" it has."""
    wants: dict[str, list[Want]] = {}
    identity_of: dict[str, Configuration] = {}
    canonical_of: dict[Configuration, str] = {}
    for study in studies:
        for name, config in prep.configs[study.name].items():
            existing = results[study.name]["configs"].get(name)
            if existing is not None:
                if existing.get("identity") not in (None, config.fingerprint()):
                    raise ResumeError(f"{study.name}/{name} in --out is another model than the "
                                      "one asked for; use another --out or --fresh")
                if len(existing["seeds"]) >= counts[f"{study.name}/{name}"]:
                    if distributed.is_main() and not quiet:
                        log(f"[{study.name}/{name}] already finished; skipping")
                    continue
            canonical = canonical_of.setdefault(config.identity(), f"{study.name}/{name}")
            identity_of[canonical] = config
            wants.setdefault(canonical, []).append(Want(study.name, name, config))
    return wants, identity_of


def reuse_from_out(out: Path, settings: dict, identity_of: dict[str, Configuration],
                   skip: set[str]) -> dict[str, tuple[str, str]]:
    """Finished models in other studies of ``out`` with the same settings.

    Returns canonical -> (study, config name) to copy from.
    """
    found = {}
    fingerprints = {config.fingerprint(): canonical for canonical, config in identity_of.items()}
    for path in sorted(out.glob("*/results.json")):
        if path.parent.name in skip:
            continue
        try:
            existing = read_results(path)
        except ResumeError:  # an unreadable file elsewhere is not ours to judge
            continue
        if existing is None or existing.get("metadata", {}).get("settings") != settings:
            continue
        for name, record in existing.get("configs", {}).items():
            canonical = fingerprints.get(record.get("identity"))
            if canonical is not None and canonical not in found:
                found[canonical] = (existing["experiment"], name)
    return found


def copy_finished(canonical: str, study_name: str, name: str, out: Path, writer: _Writer) -> None:
    """Takes a model finished in another study of the same --out instead of training it."""
    from jaxcnn import checkpoint

    source = read_results(out / study_name / "results.json")["configs"][name]
    params, _ = checkpoint.load_params_tree(out / study_name / "params" / name)
    params = jax.tree.map(np.asarray, params)
    if distributed.is_main():
        log(f"[{canonical}] the same model is finished in {study_name}/{name}; copying it")
    results = [MemberResult(Member(canonical, record["seed"], None), record,
                            source.get("schedule") or {},
                            jax.tree.map(lambda x, i=i: x[i], params))
               for i, record in enumerate(source["seeds"])]
    writer.on_done(results)
    writer.members_trained -= len(results)  # copied, not trained


def resolve_settings(runtime: Runtime, experiment: Experiment) -> RunSettings:
    """The run settings the runtime flags stand for on this machine (before planning)."""
    local = jax.local_device_count()
    devices = runtime.devices or local
    if devices > local:
        raise ConfigError(f"--devices {devices}: this process has {local} local device(s)")
    return RunSettings(epochs=experiment.epochs, batch_size=experiment.batch_size,
                       batching=runtime.batching, conv=runtime.conv, workers=runtime.workers,
                       members_per_chunk=runtime.members_per_chunk, devices=devices,
                       show_progress=runtime.progress).resolved()


def plan_group(run: RunSettings, network, members: int, data: DeviceData,
               runtime: Runtime) -> RunSettings:
    """Chunks of as many members as fit in memory (lockstep batchings, no explicit size)."""
    if run.members_per_chunk is not None:
        return run
    budget = (runtime.memory_budget * 2**20 if runtime.memory_budget
              else free_bytes(devices_sharing=run.devices))
    plan = plan_chunk(members, run.devices, member_bytes(network, run.batch_size, run.conv),
                      data.nbytes, budget)
    if plan.notice and distributed.is_main():
        log(plan.notice)
    # The estimate picks the first width; the runner narrows it if the compiled program
    # says it does not fit in ``budget``.
    return dataclasses.replace(run, members_per_chunk=plan.members_per_device * run.devices,
                               memory_free=budget)


def train_missing(wants: dict, identity_of: dict, writer: _Writer, run: RunSettings,
                  data: DeviceData, prep: Prepared, runtime: Runtime,
                  programs: Programs) -> dict[str, float]:
    """Trains every missing model's members (this process's share), group by group, with
    ``programs`` (the run's compiled programs, kept across its rounds)."""
    from jaxcnn import checkpoint

    members = [Member(canonical, seed, hyperparams(identity_of[canonical],
                                                   prep.ctx.steps_per_epoch))
               for canonical in wants for seed in writer.missing_seeds(canonical)]
    groups: dict = defaultdict(list)
    for m in distributed.share(members):
        groups[identity_of[m.config].network].append(m)
    board = StepBoard(runtime.progress and distributed.is_main())
    lines = EpochLines({c: len(distributed.share([m for m in members if m.config == c]))
                        for c in wants}, run.epochs,
                       "test" if prep.prepared.val_is_test else "val")
    several = jax.process_count() > 1
    local_results: list[MemberResult] = []

    def checkpointer_for(chunk: list[Member]):
        ckpt = checkpoint.ChunkCheckpointer(Path(runtime.out) / "checkpoints"
                                            / checkpoint.chunk_key(chunk, prep.settings))
        if runtime.fresh:
            ckpt.clear()
        writer.chunk_started(ckpt, chunk)
        return ckpt

    compile_seconds = {}
    for network, group in groups.items():
        group_run = plan_group(run, network, len(group), data, runtime)
        board.start(len(group) * run.epochs * prep.ctx.steps_per_epoch, "training")
        log(f"training {plural(len(group), 'member')} "
            f"({plural(len({m.config for m in group}), 'configuration')} x seeds) of one "
            f"network ({network.describe()}) with one compiled program"
            + (f", on {plural(run.devices, 'device')}" if run.devices > 1 else "")
            + (f", process {jax.process_index()} of {jax.process_count()}" if several else ""))
        program = train_members(network, group, data, group_run,
                                on_done=local_results.extend if several else writer.on_done,
                                checkpointer_for=checkpointer_for, lines=lines, board=board,
                                programs=programs)
        board.close()
        compile_seconds[network.describe()] = round(program.compile_seconds, 2)
    if several:
        gather_and_write(local_results, writer)
    return compile_seconds


def gather_and_write(local: list[MemberResult], writer: _Writer) -> None:
    """Every process's finished members to every process; process 0 writes them."""
    blob = distributed.pack(
        [{"config": r.member.config, "seed": r.member.seed, "record": r.record,
          "schedule": r.schedule, "resumed_from_epoch": r.resumed_from_epoch} for r in local],
        [r.params for r in local])
    everyone = []
    for part in distributed.allgather_bytes(blob):
        records, params = distributed.unpack(part)
        everyone += [MemberResult(Member(r["config"], r["seed"], None), r["record"],
                                  r["schedule"], p, r["resumed_from_epoch"])
                     for r, p in zip(records, params)]
    mine = {r.member.key for r in local}
    writer.on_done(everyone)
    distributed.barrier("jaxcnn: written")
    writer.clear_checkpoints(mine)


def finish(studies: list[Study], results: dict, paths: dict, prep: Prepared, runtime: Runtime,
           started: float, compile_seconds: dict, members_trained: int) -> None:
    """Orders each study's configurations, final statistics, figures and the console table."""
    total = round(time.perf_counter() - started, 2)
    for study in studies:
        current = results[study.name]
        order = list(prep.configs[study.name])
        current["configs"] = {n: current["configs"][n] for n in
                              order + [n for n in current["configs"] if n not in order]
                              if n in current["configs"]}
        current["statistics"] = study.statistics(current, runtime.all_pairs)
        if "decisions" in current:
            rounds.annotate({study.name: current}, current["decisions"])
        current["metadata"]["total_wall_seconds_this_invocation"] = total
        current["metadata"]["compile_seconds"] = compile_seconds
        current["metadata"]["members_trained_this_invocation"] = members_trained
        write_json_atomic(paths[study.name], current)
        figures = write_figures(study, current, paths[study.name].parent)
        print(console_table(current))
        log(f"wrote {paths[study.name]}" + "".join(f", {p}" for p in figures))
    log(f"total wall time {total:.1f} s ({plural(members_trained, 'member')} trained)")


def check_study_names(studies: list[Study]) -> None:
    """A study's name is its folder under --out: one plain name, never a path out of it."""
    for study in studies:
        name = study.name
        if (not name or name.startswith(".") or Path(name).name != name
                or not all(c.isalnum() or c in "-_." for c in name)):
            raise ConfigError(f"study name {name!r}: must be one folder name inside --out "
                              "(letters, digits, '-', '_', '.'; not starting with '.')")


def run_studies(studies: list[Study], experiment: Experiment, runtime: Runtime,
                configs: list[str] | None = None,
                decisions: DecisionOptions | None = None) -> dict[str, dict]:
    """Runs (or resumes) ``studies`` together; returns each study's results dict.

    Every comparison ends better, worse, equivalent within the margin, or undecided
    (``decisions``; default DecisionOptions()). With ``experiment.seeds == "auto"``
    seeds are trained in rounds, each only for the configurations an undecided
    comparison needs, until all are decided or ``decisions.max_seeds`` is spent
    (:mod:`jaxcnn.rounds`); a rerun continues from what --out holds.

    A model that appears in several of them (or is already finished in another
    study under ``runtime.out`` with the same settings) is trained once.
    ``configs`` restricts a single study to some of its configurations.
    The run holds the lock on ``runtime.out`` (:mod:`jaxcnn.outlock`) throughout;
    process 0 takes it before waiting for other processes, so a busy --out stops it
    at once (and its peers within --init-timeout).
    """
    check_study_names(studies)
    with contextlib.ExitStack() as held:
        first = not runtime.distributed and not runtime.process_id  # process 0 or alone
        if first:
            held.enter_context(outlock.hold(Path(runtime.out), runtime.wait, notify=log))
        distributed.initialize(runtime.coordinator, runtime.num_processes,
                               runtime.process_id, runtime.distributed, runtime.init_timeout)
        if not first and distributed.is_main():  # --distributed: the index is known now
            held.enter_context(outlock.hold(Path(runtime.out), runtime.wait, notify=log))
        return _run_holding_out(studies, experiment, runtime, configs,
                                decisions or DecisionOptions())


def _run_holding_out(studies: list[Study], experiment: Experiment, runtime: Runtime,
                     configs: list[str] | None, options: DecisionOptions) -> dict[str, dict]:
    """:func:`run_studies`' work, once --out is this run's: rounds of seeds (one round
    for a fixed --seeds N) until every comparison is decided or the budget is spent."""
    started = time.perf_counter()
    prep = prepare(studies, experiment, runtime, configs)
    run = resolve_settings(runtime, experiment)
    results, paths = open_results(studies, experiment, runtime, run, prep)
    comps = rounds.comparisons(studies, {s.name: results[s.name]["metadata"]["reference"]
                                         for s in studies},
                               {s.name: list(prep.configs[s.name]) for s in studies},
                               runtime.all_pairs)
    try:
        design, looks = rounds.resume(results, options.design(experiment))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if design is not None and design.caps and distributed.is_main():
        for name, n in rounds.spent_out(looks):
            log(f"{name} stays undecided: its error was all spent by {n} seeds (the run that "
                "looked had no --horizon above its --max-seeds); to decide it, start over "
                "with --fresh and a --horizon above --max-seeds")
    state = _RunState(prep, run, paths, DeviceData(prep.prepared, member_mesh(run.devices)),
                      Programs.for_run(), started)
    keys = [f"{s.name}/{n}" for s in studies for n in prep.configs[s.name]]
    for number in itertools.count(1):
        counts = _same_model_counts(
            rounds.seed_counts(design, looks, comps, rounds.seeds_of(results), keys,
                               single=1), prep)
        wants, identity_of = missing_models(studies, results, prep, counts, quiet=number > 1)
        if wants:
            if design is not None and design.kind == "sequential" and distributed.is_main():
                log(f"round {number}: {_round_line(wants, counts)}")
            _train_round(studies, results, wants, identity_of, counts, state, runtime)
            results = {s.name: read_results(paths[s.name]) for s in studies}
        before = {name: len(history) for name, history in looks.items()}
        looks = rounds.decide_round(results, comps, design, looks)
        if distributed.is_main():
            for study in studies:
                write_json_atomic(paths[study.name], results[study.name])
        distributed.barrier(f"jaxcnn: round {number} decided")
        if not wants and before == {name: len(history) for name, history in looks.items()}:
            break  # nothing trained and no new look: every comparison is where it stays
    if distributed.is_main():
        finish(studies, results, paths, prep, runtime, started, state.compile_seconds,
               state.members_trained)
    distributed.barrier("jaxcnn: finished")
    return results


@dataclasses.dataclass
class _RunState:
    """What a run keeps across its rounds: data on the devices, compiled programs, and
    what it has trained."""

    prep: Prepared
    run: RunSettings
    paths: dict[str, Path]
    data: DeviceData
    programs: Programs
    started: float
    compile_seconds: dict = dataclasses.field(default_factory=dict)
    members_trained: int = 0


def _same_model_counts(counts: dict[str, int], prep: Prepared) -> dict[str, int]:
    """Every "study/config" of one model gets the most seeds any of them wants, so the
    same model has the same seeds (and numbers) in every study that has it."""
    return {key: max([n] + [counts[k] for k in prep.siblings.get(key, []) if k in counts])
            for key, n in counts.items()}


def _round_line(wants: dict[str, list[Want]], counts: dict[str, int]) -> str:
    """One progress line: which configurations get seeds up to how many."""
    parts = [", ".join(f"{w.study}/{w.name}" for w in entries)
             + f" to {counts[f'{entries[0].study}/{entries[0].name}']} seeds"
             for entries in wants.values()]
    return "; ".join(parts)


def _train_round(studies: list[Study], results: dict, wants: dict, identity_of: dict,
                 counts: dict[str, int], state: _RunState, runtime: Runtime) -> None:
    """Trains (or copies) the seeds one round still misses and writes them into --out."""
    prep, run = state.prep, state.run
    writer = _Writer(results, state.paths, wants, {s.name: s for s in studies}, prep, runtime,
                     state.started, counts)
    for canonical, (study_name, name) in reuse_from_out(  # --fresh: train, do not copy
            Path(runtime.out), prep.settings, {} if runtime.fresh else identity_of,
            {s.name for s in studies}).items():
        copy_finished(canonical, study_name, name, Path(runtime.out), writer)
    if distributed.is_main():
        _describe_round(studies, wants, writer, prep, run)
    state.compile_seconds.update(train_missing(wants, identity_of, writer, run, state.data,
                                               prep, runtime, state.programs))
    state.members_trained += writer.members_trained
    distributed.barrier("jaxcnn: round trained")


def _describe_round(studies: list[Study], wants: dict, writer: _Writer, prep: Prepared,
                    run: RunSettings) -> None:
    """The log lines before a round trains: what, on what data and device."""
    split = prep.prepared
    members = sum(len(writer.missing_seeds(c)) for c in wants)
    log(f"{', '.join(s.name for s in studies)}: {plural(len(wants), 'model')} to train "
        f"({plural(members, 'member')}: configuration x seed) x "
        f"{plural(prep.ctx.experiment.epochs, 'epoch')} on {len(split.train)} images "
        f"({prep.dataset.source}); "
        + (f"the {len(split.test)} test images as per-epoch validation" if split.val_is_test
           else f"val split {len(split.val)}, test {len(split.test)}")
        + f"; {jax.devices()[0].device_kind}, batching {run.batching}"
        + (f" x {run.workers} workers" if run.workers > 1 else "") + f", conv {run.conv}")
    for canonical, entries in wants.items():
        if len(entries) > 1:
            others = ", ".join(f"{w.study}/{w.name}" for w in entries[1:])
            log(f"[{canonical}] is also {others}: the same model, trained once")


def write_figures(study: Study, results: dict, out_dir: Path) -> list[Path]:
    from jaxcnn import exports, plots

    meta = results["metadata"]
    val_name = "test" if meta["data"]["val_is_test"] else "val"
    steps = history.steps_per_epoch_of(meta)
    paths = [plots.plot_curves(results["configs"], out_dir / "curves.png", study.title,
                               val_name=val_name, steps_per_epoch=steps)]
    if "statistics" in results:
        paths.append(plots.plot_final_accuracy(
            results["configs"], results["statistics"], meta["reference"],
            out_dir / "test_accuracy.png", study.title))
    if study.name == "schedules" and results["configs"]:
        paths.append(plots.plot_schedules(results["configs"], steps,
                                          meta["settings"]["epochs"], out_dir / "schedules.png"))
    if results.get("decisions") and "statistics" in results:
        paths.append(plots.estimation_figure(
            estimation_comparisons(results), results["decisions"]["design"]["margin"],
            out_dir / "estimation.png", f"{study.title}: paired differences by seed"))
    if study.figures is not None:
        paths += study.figures(results, out_dir)
    exports.write_exports(results, out_dir)  # CSV files and TensorBoard runs, beside the JSON
    return paths
