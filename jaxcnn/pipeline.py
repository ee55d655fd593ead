"""Run studies: from a command's request to results.json, in one direction.

:func:`run_studies` takes one or more :class:`~jaxcnn.studies.Study` and one
:class:`~jaxcnn.experiment.Experiment`, holds the lock on ``--out``, and:

1. loads and splits the data and builds every study's configurations
   (:func:`prepare`);
2. opens the results store (``store.py``): what ``--out`` already holds is checked
   and kept, or started over under ``--fresh``;
3. round by round (one round for a fixed ``--seeds N``; with ``--seeds auto`` until
   every comparison is decided or the budget is spent, ``rounds.py``): plans the
   seeds still missing (``plan.py``: pure), copies models another study of ``--out``
   already finished, and hands the rest to the engine (``engine.py``), whose finished
   chunks go to the store as they come (a model is written into every study that has
   it once its last seed is in, so a run that dies loses at most the epochs since the
   last checkpoint); then decides the round's comparisons;
4. writes the final statistics, figures and exports, and prints each study's table.

Control flows one way: this module calls the planner, the engine and the store;
none of them calls back up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from pathlib import Path

import jax

from jaxcnn.configs import hyperparams
from jaxcnn.data import load_dataset, prepare_data
from jaxcnn.data.cache import default_cache_dir
from jaxcnn.errors import ConfigError, DataError
from jaxcnn.experiment import DecisionOptions, Experiment, Runtime, parity_default
from jaxcnn.models.modelfns import check_model
from jaxcnn.platform import compile_cache, distributed, outlock
from jaxcnn.platform.compile_cache import phrase as cache_phrase
from jaxcnn.platform.progress import log, plural
from jaxcnn.reporting.report import console_table, estimation_comparisons, schedules_differ
from jaxcnn.stats import rounds
from jaxcnn.stats.paired import NO_REFERENCE, metric_of
from jaxcnn.studies import STUDIES, Study, StudyContext
from jaxcnn.training import history, predictions
from jaxcnn.training.checkpoint import CheckpointFolder
from jaxcnn.training.engine import Engine, gather, resolve_settings
from jaxcnn.training.members import Member
from jaxcnn.training.plan import (
    RoundPlan,
    batch_size_notice,
    plan_round,
    round_line,
    same_model_counts,
    same_models,
)
from jaxcnn.training.prepared import Prepared
from jaxcnn.training.store import ResultsStore, same_protocol_in_out


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
    experiment = fitted_val_size(experiment, len(dataset.train_labels))
    prepared = prepare_data(dataset, val_size=experiment.val_size,
                            train_examples=experiment.train_examples,
                            normalization=experiment.normalization,
                            split_seed=experiment.split_seed)
    notice = batch_size_notice(experiment.batch_size, len(prepared.train))
    if notice and distributed.is_main():
        log(notice)
    ctx = StudyContext(experiment, experiment.steps_per_epoch(len(prepared.train)),
                       dataset.num_classes, tuple(dataset.image_shape))
    try:
        all_configs = {s.name: s.configs(ctx) for s in studies}
    except ValueError as err:  # e.g. images too small for the network's three poolings
        raise DataError(f"{dataset.source}: {err}") from None
    for network in {c.network for built in all_configs.values() for c in built.values()}:
        try:  # a user's model that cannot train on this data: one line, before any training
            check_model(network)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if configs is not None:
        (only,) = studies
        unknown = [n for n in configs if n not in all_configs[only.name]]
        if unknown:
            raise ConfigError(f"argument --configs: unknown configuration {unknown[0]!r} "
                              f"(choose from {', '.join(all_configs[only.name])})")
        reference = only.reference_in(ctx)
        if experiment.seeds == "auto" and reference not in configs:
            # Every verdict compares with the reference: rounds of seeds need it in the run.
            configs = [*configs, reference]
            if distributed.is_main():
                log(f"--seeds auto: the reference '{reference}' is trained too (every "
                    "verdict compares with it)")
        all_configs[only.name] = {n: c for n, c in all_configs[only.name].items() if n in configs}
    settings = experiment.settings(dataset.fingerprint)
    # Models are linked ("same_model_as") only under one protocol: the studies of this run,
    # and those already in --out under the same settings (issue 18: a 1-epoch sweep on
    # 10,000 images is not the same model as a 2-epoch study on all of them).
    known = {name: study.build_configs(ctx) for name, study in STUDIES.items()
             if name not in all_configs and same_protocol_in_out(runtime.out, name, settings)}
    return Prepared(dataset, prepared, ctx, settings, all_configs,
                    same_models({**known, **all_configs}), experiment)


def fitted_val_size(experiment: Experiment, num_train: int) -> Experiment:
    """``experiment`` with the default --val-size (5000: a tenth of CIFAR-10's training
    split) scaled to a smaller training split: a tenth of it. The run then records and
    reproduces that number (its command line carries --val-size)."""
    default = parity_default("val_size", experiment.torch_parity)
    if experiment.val_size != default or num_train >= 10 * default:
        return experiment
    fitted = num_train // 10
    if distributed.is_main():
        log(f"--val-size {fitted}: a tenth of the {num_train} training images held out for "
            f"the per-epoch curves (the default {default} is for {10 * default:,} or more)")
    return dataclasses.replace(experiment, val_size=fitted)


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
    (:mod:`jaxcnn.stats.rounds`); a rerun continues from what --out holds.

    A model that appears in several of them (or is already finished in another
    study under ``runtime.out`` with the same settings) is trained once.
    ``configs`` restricts a single study to some of its configurations.
    The run holds the lock on ``runtime.out`` (:mod:`jaxcnn.platform.outlock`) throughout;
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
    cache = compile_cache.enable(runtime.cache_dir or default_cache_dir(), runtime.compile_cache)
    looked_up = compile_cache.counts()
    prep = prepare(studies, experiment, runtime, configs)
    experiment = prep.experiment  # with the data's own --val-size, where defaulted
    run = resolve_settings(runtime, experiment.epochs, experiment.batch_size)
    store = ResultsStore.open(studies, experiment, runtime, run, prep, started)
    comps = rounds.comparisons(studies, {s.name: store.results[s.name]["metadata"]["reference"]
                                         for s in studies},
                               {s.name: compared_names(prep.configs[s.name], store.results[s.name])
                                for s in studies},
                               runtime.all_pairs)
    try:
        design, looks = rounds.resume(store.results, options.design(experiment))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    checkpoints = CheckpointFolder(Path(runtime.out) / "checkpoints", prep.settings,
                                   runtime.fresh)
    engine = Engine(run, prep.prepared, checkpoints, runtime.memory_budget, runtime.progress)
    keys = [f"{s.name}/{n}" for s in studies for n in prep.configs[s.name]]
    for number in itertools.count(1):
        counts = same_model_counts(
            rounds.seed_counts(design, looks, comps, rounds.seeds_of(store.results), keys,
                               single=1), prep.siblings)
        plan = plan_round(prep.configs, store.results, counts)
        if number == 1 and distributed.is_main():
            for entry in plan.finished:
                log(f"[{entry}] already finished; skipping")
        if plan.wants:
            if design is not None and design.kind == "sequential" and distributed.is_main():
                log(f"round {number}: {round_line(plan, counts)}")
            _train_round(plan, store, engine, prep, runtime)
            store.reload()
        before = {name: len(history) for name, history in looks.items()}
        looks = rounds.decide_round(store.results, comps, design, looks, predictions.test_reader(
            lambda study: store.paths[study].parent))
        store.save()
        distributed.barrier(f"jaxcnn: round {number} decided")
        if not plan.wants and before == {name: len(history) for name, history in looks.items()}:
            break  # nothing trained and no new look: every comparison is where it stays
    if distributed.is_main():
        counted = compile_cache.counts()
        _finish(studies, store, engine, round(time.perf_counter() - started, 2),
                {"folder": str(cache) if cache else None,
                 **{k: counted[k] - looked_up[k] for k in counted}})
    distributed.barrier("jaxcnn: finished")
    return store.results


def _finish(studies: list[Study], store: ResultsStore, engine: Engine, total: float,
            cached: dict) -> None:
    """Writes the studies' results and figures (process 0) and the run's last line: wall
    time, members trained, compiling and what the compile cache gave."""
    store.finish(total, engine.compile_seconds, cached)
    for study in studies:
        _show(study, store.results[study.name], store.paths[study.name])
    compiling = sum(engine.compile_seconds.values())
    log(f"total wall time {total:.1f} s ({plural(store.members_trained, 'member')} trained; "
        f"{compiling:.1f} s compiling, {cache_phrase(cached)})")


def compared_names(run_configs: dict, results: dict) -> list[str]:
    """The configurations a study's decisions compare in this run: those it trains, and
    its reference where only --out holds it (a ``--configs`` subset after a run of the
    whole study); a reference found nowhere leaves those comparisons out, and the study's
    statistics say "no reference in this run"."""
    reference = results["metadata"]["reference"]
    names = list(run_configs)
    if reference not in names and reference in results["configs"]:
        names.append(reference)
    return names


def _train_round(plan: RoundPlan, store: ResultsStore, engine: Engine, prep: Prepared,
                 runtime: Runtime) -> None:
    """Copies or trains the seeds one round still misses; the store writes each model as
    its last seed comes in."""
    store.begin_round(plan)
    if not runtime.fresh:  # --fresh trains, never copies
        for canonical, (study_name, name) in store.finished_elsewhere(plan.configs).items():
            store.copy_finished(canonical, study_name, name)
    missing = store.members_to_train()
    if distributed.is_main():
        _describe_round(plan, len(missing), prep, engine)
    members = [Member(c, seed, hyperparams(plan.configs[c], prep.ctx.steps_per_epoch))
               for c, seed in missing]
    programs = {c: config.program() for c, config in plan.configs.items()}
    several = jax.process_count() > 1
    local = []
    with contextlib.closing(engine.train(members, programs, prep.ctx.steps_per_epoch)) as chunks:
        for chunk in chunks:
            store.track(chunk.checkpointer, [r.member for r in chunk.results])
            if several:
                local += chunk.results  # written once every process is done
            else:
                store.add(chunk.results)
    if several:
        store.add(gather(local))
        distributed.barrier("jaxcnn: written")
        store.clear_checkpoints({r.member.key for r in local})
    distributed.barrier("jaxcnn: round trained")


def _describe_round(plan: RoundPlan, members: int, prep: Prepared, engine: Engine) -> None:
    """The log lines before a round trains: what, on what data and device."""
    split, run = prep.prepared, engine.run
    log(f"{', '.join(prep.configs)}: {plural(len(plan.wants), 'model')} to train "
        f"({plural(members, 'member')}: configuration x seed) x "
        f"{plural(prep.ctx.experiment.epochs, 'epoch')} on {len(split.train)} images "
        f"({prep.dataset.source}); "
        + (f"the {len(split.test)} test images as per-epoch validation" if split.val_is_test
           else f"val split {len(split.val)} "
           + ("(each seed its own)" if split.per_seed else f"(split seed {split.split_seed})")
           + f", test {len(split.test)}")
        + f"; {jax.devices()[0].device_kind}, batching {run.batching}"
        + (f" x {run.workers} workers" if run.workers > 1 else "") + f", conv {run.conv}")
    for canonical, entries in plan.wants.items():
        if len(entries) > 1:
            others = ", ".join(w.entry for w in entries[1:])
            log(f"[{canonical}] is also {others}: the same model, trained once")


def _show(study: Study, results: dict, path: Path) -> None:
    """A finished study's figures and exports beside its results.json, and its table."""
    figures = write_figures(study, results, path.parent)
    print(console_table(results))
    log(f"wrote {path}" + "".join(f", {p}" for p in figures))


def write_figures(study: Study, results: dict, out_dir: Path) -> list[Path]:
    """Every figure of a study (its own, ``Study.figures``, after the common ones) and the
    CSV and TensorBoard exports, into ``out_dir``; returns the figure paths."""
    from jaxcnn.reporting import exports, plots

    meta = results["metadata"]
    val_name = "test" if meta["data"]["val_is_test"] else "val"
    steps = history.steps_per_epoch_of(meta)
    paths = [plots.save(plots.draw_curves(results["configs"], study.title, val_name, steps),
                        out_dir / "curves.png")]
    if "statistics" in results:
        paths.append(plots.save(plots.draw_final_accuracy(
            results["configs"], results["statistics"], meta["reference"], study.title),
            out_dir / "test_accuracy.png"))
    if results.get("decisions") and "statistics" in results:
        paths.append(plots.save(plots.draw_estimation(
            estimation_comparisons(results),
            metric_of(results).get("margin") or results["decisions"]["design"]["margin"],
            f"{study.title}: paired differences by seed",
            empty=(f"{NO_REFERENCE}: '{meta['reference']}' is in neither this run nor --out"
                   if "no_reference" in results["statistics"] else "no comparison to show"),
            unit=("accuracy points" if metric_of(results)["key"] == "test_accuracy"
                  else metric_of(results)["unit"] or metric_of(results)["name"])),
            out_dir / "estimation.png"))
    if study.figures is not None:
        paths += study.figures(results, out_dir)
    elif schedules_differ(results):  # the schedules study, or one comparing optimizers
        paths.append(plots.save(plots.draw_schedules(results["configs"], steps,
                                                     meta["settings"]["epochs"]),
                                out_dir / "schedules.png"))
    exports.write_exports(results, out_dir)  # CSV files and TensorBoard runs, beside the JSON
    return paths
