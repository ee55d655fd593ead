"""Run studies: plan the members, train each distinct model once, write results.

:func:`run_studies` takes one or more :class:`~jaxcnn.studies.Study` and one
:class:`~jaxcnn.experiment.Experiment`, and:

1. loads and splits the data, and builds every study's configurations;
2. resumes what ``--out`` already holds (finished configurations are kept; a
   model already finished in another study of the same ``--out``, with the same
   settings, is copied rather than trained again);
3. turns each distinct model that is still missing into members (one per seed)
   and groups them by network, one compiled program per group (``runner.py``);
4. as each model's last member finishes, writes it into every study that has
   it (results.json atomically, statistics, final parameters), so a run that
   dies loses at most the epochs since the last checkpoint;
5. writes figures and prints each study's table.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import time
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np

from jaxcnn import environment, history
from jaxcnn.batching import check_batching, default_batching, default_workers
from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.conv import check_conv, default_conv
from jaxcnn.data import load_dataset, prepare_data
from jaxcnn.errors import ConfigError, DataError
from jaxcnn.experiment import Experiment, Runtime, check_compatible
from jaxcnn.optim import describe_chain
from jaxcnn.progress import EpochLines, StepBoard, log, plural
from jaxcnn.report import console_table
from jaxcnn.results import read_results, write_json_atomic
from jaxcnn.runner import DeviceData, Member, MemberResult, RunSettings, train_members
from jaxcnn.studies import STUDIES, Study, StudyContext


@dataclasses.dataclass
class Want:
    """A (study, configuration name) still missing, and its configuration."""

    study: str
    name: str
    config: Configuration


def batch_size_notice(batch_size: int, num_train: int) -> str | None:
    """A warning when one batch holds the whole training set, else None."""
    if batch_size <= num_train:
        return None
    return (f"warning: --batch-size {batch_size} is larger than the {num_train} training "
            "images: every epoch is one padded step (one update per epoch)")


def resolve_runtime(runtime: Runtime, platform: str, members: int) -> RunSettings:
    """The run settings that ``auto`` and the defaults stand for on ``platform``."""
    batching = default_batching(platform) if runtime.batching == "auto" else runtime.batching
    check_batching(batching)
    conv = default_conv(platform) if runtime.conv == "auto" else check_conv(runtime.conv)
    workers = runtime.workers or default_workers(batching)
    per_chunk = runtime.members_per_chunk or (1 if batching == "threads" else max(1, members))
    return RunSettings(epochs=0, batch_size=0, batching=batching, conv=conv, workers=workers,
                       members_per_chunk=per_chunk, show_progress=runtime.progress)


def _study_metadata(experiment: Experiment, runtime: Runtime, dataset, prepared,
                    settings: dict, reference: str, run: RunSettings, study: Study) -> dict:
    command = shlex.join(["python", "-m", f"experiments.{study.name}", *experiment.flags(),
                          "--out", str(runtime.out)])
    return {
        "versions": environment.versions(), "device": environment.device(),
        "git_commit": environment.git_commit(),
        "data": {"source": dataset.source, "fingerprint": dataset.fingerprint,
                 "class_names": list(dataset.class_names),
                 "train_examples": len(prepared.train), "val_examples": len(prepared.val),
                 "test_examples": len(prepared.test), "val_is_test": prepared.val_is_test,
                 "normalization_mean": prepared.normalization.mean.tolist(),
                 "normalization_std": prepared.normalization.std.tolist()},
        "settings": settings, "reference": reference,
        "runtime": {"batching": run.batching, "conv": run.conv, "workers": run.workers,
                    "members_per_chunk": run.members_per_chunk},
        "command": command,
    }


def config_record(config: Configuration, reference: str, name: str, seeds: list[dict],
                  schedule: dict, same_model_as: list[str], trained_as: str) -> dict:
    """A configuration's entry in results.json ``configs``."""
    return {"description": config.description, "is_reference": name == reference,
            "init": config.init, "model": config.model_record(),
            "optimizer": describe_chain(config.optimizer),
            "optimizer_config": dataclasses.asdict(config.optimizer),
            "identity": config.fingerprint(), "same_model_as": same_model_as,
            "trained_as": trained_as, "schedule": schedule, "seeds": seeds}


def same_models(all_configs: dict[str, dict[str, Configuration]]) -> dict[str, list[str]]:
    """"study/config" -> the other "study/config" entries that are the same model."""
    by_identity = defaultdict(list)
    for study, configs in all_configs.items():
        for name, config in configs.items():
            by_identity[config.identity()].append(f"{study}/{name}")
    return {entry: [e for e in entries if e != entry]
            for entries in by_identity.values() for entry in entries}


def _known_configs(ctx: StudyContext) -> dict[str, dict[str, Configuration]]:
    return {name: study.build_configs(ctx) for name, study in STUDIES.items()}


class _Writer:
    """Writes finished models into their studies, and clears checkpoints no longer needed."""

    def __init__(self, results: dict[str, dict], paths: dict[str, Path], wants: dict,
                 studies: dict[str, Study], siblings: dict[str, list[str]], meta_for_params,
                 seeds: list[int], all_pairs: bool, started: float):
        self.results, self.paths, self.wants = results, paths, wants
        self.studies, self.siblings = studies, siblings
        self.meta_for_params, self.seeds, self.all_pairs = meta_for_params, seeds, all_pairs
        self.started = started
        self.finished: dict[str, dict[int, MemberResult]] = defaultdict(dict)
        self.pending_chunks: list[tuple[object, set[str]]] = []
        self.members_trained = 0

    def chunk_started(self, checkpointer, members: list[Member]) -> None:
        self.pending_chunks.append((checkpointer, {m.key for m in members}))

    def on_done(self, results: list[MemberResult]) -> None:
        self.members_trained += len(results)
        for r in results:
            self.finished[r.member.config][r.member.seed] = r
            if len(self.finished[r.member.config]) == len(self.seeds):
                self._write_model(r.member.config)

    def _write_model(self, canonical: str) -> None:
        from jaxcnn import checkpoint

        members = [self.finished[canonical][s] for s in self.seeds]
        seeds = [m.record for m in members]
        params = jax.tree.map(lambda *xs: np.stack(xs), *[m.params for m in members])
        wall = round(time.perf_counter() - self.started, 2)
        for want in self.wants[canonical]:
            entry = f"{want.study}/{want.name}"
            results = self.results[want.study]
            results["configs"][want.name] = config_record(
                want.config, results["metadata"]["reference"], want.name, seeds,
                members[0].schedule, self.siblings.get(entry, []), canonical)
            results["metadata"]["wall_seconds"][want.name] = wall
            resumed = max(m.resumed_from_epoch for m in members)
            if resumed:
                results["metadata"].setdefault("resumed_from_epoch", {})[want.name] = resumed
            checkpoint.save_params(self.paths[want.study].parent / "params" / want.name, params,
                                   self.seeds, self.meta_for_params(want.config))
            results["statistics"] = self.studies[want.study].statistics(results, self.all_pairs)
            write_json_atomic(self.paths[want.study], results)
        done = {m.member.key for m in members}
        still = []
        for ckpt, keys in self.pending_chunks:
            keys -= done
            if keys:
                still.append((ckpt, keys))
            elif ckpt is not None:
                ckpt.clear()
        self.pending_chunks = still


def _reuse_from_out(out: Path, settings: dict, identity_of: dict[str, Configuration],
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
        except Exception:  # an unreadable file elsewhere is not ours to judge
            continue
        if existing is None or existing.get("metadata", {}).get("settings") != settings:
            continue
        for name, record in existing.get("configs", {}).items():
            canonical = fingerprints.get(record.get("identity"))
            if canonical is not None and canonical not in found:
                found[canonical] = (existing["experiment"], name)
    return found


def run_studies(studies: list[Study], experiment: Experiment, runtime: Runtime,
                configs: list[str] | None = None, device_data: DeviceData | None = None
                ) -> dict[str, dict]:
    """Runs (or resumes) ``studies`` together; returns each study's results dict.

    A model that appears in several of them (or is already finished in another
    study under ``runtime.out`` with the same settings) is trained once.
    ``configs`` restricts a single study to some of its configurations.
    """
    started = time.perf_counter()
    dataset = load_dataset(experiment.data, cache_dir=runtime.cache_dir,
                           show_progress=runtime.progress)
    if len(dataset.class_names) < 2:
        raise DataError(f"{dataset.source}: {len(dataset.class_names)} class; a classifier "
                        "needs at least 2 class folders")
    prepared = prepare_data(dataset, val_size=experiment.val_size,
                            train_examples=experiment.train_examples,
                            normalization=experiment.normalization)
    num_train = len(prepared.train)
    notice = batch_size_notice(experiment.batch_size, num_train)
    if notice:
        log(notice)
    ctx = StudyContext(experiment, experiment.steps_per_epoch(num_train),
                       len(dataset.class_names))
    settings = experiment.settings(dataset.fingerprint)

    all_configs = {s.name: s.build_configs(ctx) for s in studies}
    if configs is not None:
        (only,) = studies
        unknown = [n for n in configs if n not in all_configs[only.name]]
        if unknown:
            raise ConfigError(f"argument --configs: unknown configuration {unknown[0]!r} "
                              f"(choose from {', '.join(all_configs[only.name])})")
        all_configs[only.name] = {n: c for n, c in all_configs[only.name].items() if n in configs}
    siblings = same_models({**_known_configs(ctx), **all_configs})
    references = {s.name: s.reference_for(experiment.torch_parity) for s in studies}

    platform = jax.devices()[0].platform
    total_members = sum(len(c) for c in all_configs.values()) * experiment.seeds
    run = resolve_runtime(runtime, platform, total_members)
    run = dataclasses.replace(run, epochs=experiment.epochs, batch_size=experiment.batch_size)

    results, paths = {}, {}
    for study in studies:
        out_dir = Path(runtime.out) / study.name
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {runtime.out}: {out_dir} is a file, not a folder; "
                              "give another --out")
        path = out_dir / "results.json"
        if runtime.fresh and out_dir.exists():
            shutil.rmtree(out_dir)
        existing = read_results(path)
        if existing is not None:
            check_compatible(existing["metadata"].get("settings", {}), settings, path)
            current = existing
        else:
            current = {"experiment": study.name, "metadata": {}, "configs": {}}
        current["metadata"].update(_study_metadata(experiment, runtime, dataset, prepared,
                                                   settings, references[study.name], run, study))
        current["metadata"].setdefault("wall_seconds", {})
        try:
            write_json_atomic(path, current)
        except NotADirectoryError:
            raise ConfigError(f"--out {runtime.out}: a part of that path is a file; "
                              "give another --out") from None
        results[study.name], paths[study.name] = current, path

    # The models still missing, each once, under the first name it has.
    wants: dict[str, list[Want]] = {}
    identity_of: dict[str, Configuration] = {}
    canonical_of: dict[Configuration, str] = {}
    for study in studies:
        for name, config in all_configs[study.name].items():
            if name in results[study.name]["configs"]:
                log(f"[{study.name}/{name}] already finished in {paths[study.name]}; skipping")
                continue
            canonical = canonical_of.setdefault(config.identity(), f"{study.name}/{name}")
            identity_of[canonical] = config
            wants.setdefault(canonical, []).append(Want(study.name, name, config))

    def meta_for_params(config: Configuration) -> dict:
        return {"model": config.model_record(),
                "normalization": {"mean": prepared.normalization.mean.tolist(),
                                  "std": prepared.normalization.std.tolist()},
                "class_names": list(dataset.class_names)}

    seeds = experiment.seed_list()
    writer = _Writer(results, paths, wants, {s.name: s for s in studies}, siblings,
                     meta_for_params, seeds, runtime.all_pairs, started)
    for canonical, (study_name, name) in _reuse_from_out(
            Path(runtime.out), settings, identity_of, {s.name for s in studies}).items():
        _copy_finished(canonical, study_name, name, Path(runtime.out), writer)

    members = [Member(canonical, seed, hyperparams(identity_of[canonical], ctx.steps_per_epoch))
               for canonical in wants if canonical not in writer.finished or
               len(writer.finished[canonical]) < len(seeds)
               for seed in seeds]
    groups: dict = defaultdict(list)
    for m in members:
        groups[identity_of[m.config].network].append(m)

    data = device_data or DeviceData(prepared)
    val_name = "test" if prepared.val_is_test else "val"
    log(f"{', '.join(s.name for s in studies)}: {plural(len(wants), 'model')} to train "
        f"({plural(len(members), 'member')}: configuration x seed) x "
        f"{plural(experiment.epochs, 'epoch')} on {num_train} images ({dataset.source}); "
        + (f"the {len(prepared.test)} test images as per-epoch validation"
           if prepared.val_is_test else
           f"val split {len(prepared.val)}, test {len(prepared.test)}")
        + f"; {jax.devices()[0].device_kind}, batching {run.batching}"
        + (f" x {run.workers} workers" if run.workers > 1 else "") + f", conv {run.conv}")
    for canonical, entries in wants.items():
        names = ", ".join(f"{w.study}/{w.name}" for w in entries)
        if len(entries) > 1:
            log(f"[{canonical}] {identity_of[canonical].description} (also {names}: the same "
                "model, trained once)")
    board = StepBoard(runtime.progress)
    lines = EpochLines({c: len(seeds) for c in wants}, experiment.epochs, val_name)
    from jaxcnn import checkpoint

    def checkpointer_for(chunk: list[Member]):
        key = checkpoint.chunk_key(chunk, settings)
        ckpt = checkpoint.ChunkCheckpointer(Path(runtime.out) / "checkpoints" / key)
        if runtime.fresh:
            ckpt.clear()
        writer.chunk_started(ckpt, chunk)
        return ckpt

    compile_seconds = {}
    for network, group in groups.items():
        total = len(group) * experiment.epochs * ctx.steps_per_epoch
        board.start(total, "training")
        n_configs = len({m.config for m in group})
        log(f"training {plural(len(group), 'member')} ({plural(n_configs, 'configuration')} x "
            f"{plural(len(seeds), 'seed')}) of one network ({network.describe()}) with one "
            "compiled program")
        program = train_members(network, group, data, run, on_done=writer.on_done,
                                checkpointer_for=checkpointer_for, lines=lines, board=board)
        board.close()
        compile_seconds[network.describe()] = round(program.compile_seconds, 2)
        log(f"compiled in {program.compile_seconds:.1f} s")

    total = round(time.perf_counter() - started, 2)
    for study in studies:
        current = results[study.name]
        order = list(all_configs[study.name])
        current["configs"] = {n: current["configs"][n] for n in
                              order + [n for n in current["configs"] if n not in order]
                              if n in current["configs"]}
        current["statistics"] = study.statistics(current, runtime.all_pairs)
        current["metadata"]["total_wall_seconds_this_invocation"] = total
        current["metadata"]["compile_seconds"] = compile_seconds
        current["metadata"]["members_trained_this_invocation"] = writer.members_trained
        write_json_atomic(paths[study.name], current)
        figures = write_figures(study, current, paths[study.name].parent)
        print(console_table(current))
        log(f"wrote {paths[study.name]}" + "".join(f", {p}" for p in figures))
    return results


def _copy_finished(canonical: str, study_name: str, name: str, out: Path, writer: _Writer) -> None:
    """Takes a model finished in another study of the same --out instead of training it."""
    from jaxcnn import checkpoint

    source = read_results(out / study_name / "results.json")["configs"][name]
    params, _ = checkpoint.load_params_tree(out / study_name / "params" / name)
    params = jax.tree.map(np.asarray, params)
    log(f"[{canonical}] the same model is finished in {study_name}/{name}; copying it")
    results = []
    for i, record in enumerate(source["seeds"]):
        member = Member(canonical, record["seed"], None)
        results.append(MemberResult(member, record, source.get("schedule") or {},
                                    jax.tree.map(lambda x, i=i: x[i], params)))
    writer.on_done(results)
    writer.members_trained -= len(results)  # copied, not trained


def write_figures(study: Study, results: dict, out_dir: Path) -> list[Path]:
    from jaxcnn import plots

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
    return paths
