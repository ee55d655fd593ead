"""A study: named configurations trained over seeds, with results, figures and statistics.

``experiments/<name>.py`` defines a :class:`Study` (its configurations) and
calls :func:`main`; everything else (flags, data, training, checkpoints,
results, figures, the console table) is shared and lives here.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata as importlib_metadata
from pathlib import Path

import jax

from jaxcnn import cli, stats
from jaxcnn.data import load_dataset, prepare_data
from jaxcnn.errors import ConfigError, JaxcnnError, ResumeError
from jaxcnn.optim import describe_chain
from jaxcnn.progress import log
from jaxcnn.results import read_results, write_json_atomic
from jaxcnn.runner import DeviceData, RunConfig, TrainSettings, train_config

ConfigBuilder = Callable[["StudyOptions"], dict[str, RunConfig]]

# Flags whose values change the numbers; a rerun into the same --out must match.
RESULT_FLAGS = ("data_fingerprint", "seeds", "epochs", "batch_size", "lr", "val_size",
                "train_examples", "normalization", "torch_parity")


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """What a study's configurations may depend on."""

    lr: float
    torch_parity: bool
    conv_impl: str


@dataclasses.dataclass(frozen=True)
class Study:
    """A named set of configurations compared against a reference.

    Attributes:
      name: folder name under --out and the "experiment" in results.json.
      title: for figures and reports.
      build_configs: options -> {config name: RunConfig}, in display order.
      reference: the configuration others are compared with.
      parity_reference: the reference under --torch-parity.
      extra_figures: optional hook (results, out_dir, options) -> list of paths.
    """

    name: str
    title: str
    build_configs: ConfigBuilder
    reference: str
    parity_reference: str
    extra_figures: Callable[[dict, Path, StudyOptions], list[Path]] | None = None

    def reference_for(self, torch_parity: bool) -> str:
        return self.parity_reference if torch_parity else self.reference


def _versions() -> dict:
    names = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy")
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def _device() -> dict:
    device = jax.devices()[0]
    return {"platform": device.platform, "kind": device.device_kind,
            "count": jax.device_count(), "host_cpus": os.cpu_count(),
            "machine": platform.machine()}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _check_compatible(existing: dict, settings: dict, path: Path) -> None:
    old = existing.get("metadata", {}).get("settings", {})
    for key in RESULT_FLAGS:
        if old.get(key) != settings.get(key):
            flag = "--data" if key == "data_fingerprint" else "--" + key.replace("_", "-")
            raise ResumeError(
                f"{path} was made with {flag} {old.get(key)!r}, not {settings.get(key)!r}; "
                "use the same flags to resume, another --out, or --fresh to start over"
            )


def _config_record(config: RunConfig, result, reference: str, name: str) -> dict:
    return {
        "description": config.description,
        "is_reference": name == reference,
        "init": config.model.init,
        "model": dataclasses.asdict(config.model),
        "optimizer": describe_chain(config.optimizer),
        "optimizer_config": dataclasses.asdict(config.optimizer),
        "seeds": result.seeds,
    }


def run_study(study: Study, args) -> dict:
    """Runs (or resumes) ``study`` with parsed ``args``; returns the results dict."""
    clock = time.perf_counter()
    options = StudyOptions(lr=args.lr, torch_parity=args.torch_parity, conv_impl=args.conv)
    all_configs = study.build_configs(options)
    names = args.configs or list(all_configs)
    unknown = [n for n in names if n not in all_configs]
    if unknown:
        raise ConfigError(f"argument --configs: unknown configuration {unknown[0]!r} "
                          f"(choose from {', '.join(all_configs)})")
    configs = {n: all_configs[n] for n in all_configs if n in names}
    reference = study.reference_for(args.torch_parity)

    dataset = load_dataset(args.data, cache_dir=args.cache_dir, show_progress=args.progress)
    prepared = prepare_data(dataset, val_size=args.val_size, train_examples=args.train_examples,
                            normalization=args.normalization)
    settings = {"data_fingerprint": dataset.fingerprint, "seeds": args.seeds,
                "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                "val_size": args.val_size, "train_examples": args.train_examples,
                "normalization": args.normalization, "torch_parity": args.torch_parity}

    out_dir = Path(args.out) / study.name
    results_path = out_dir / "results.json"
    if args.fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    existing = read_results(results_path)
    if existing is not None:
        _check_compatible(existing, settings, results_path)
        results = existing
    else:
        results = {"experiment": study.name, "metadata": {}, "configs": {}}
    results["metadata"].update({
        "versions": _versions(), "device": _device(), "git_commit": _git_commit(),
        "data": {"source": dataset.source, "fingerprint": dataset.fingerprint,
                 "class_names": list(dataset.class_names),
                 "train_examples": len(prepared.train), "val_examples": len(prepared.val),
                 "test_examples": len(prepared.test), "val_is_test": prepared.val_is_test,
                 "normalization_mean": prepared.normalization.mean.tolist(),
                 "normalization_std": prepared.normalization.std.tolist()},
        "flags": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                  if k != "argv"},
        "settings": settings, "reference": reference, "seed_batching": args.seed_batching,
        "command": shlex.join(["python", "-m", f"experiments.{study.name}",
                               *getattr(args, "argv", sys.argv[1:])]),
    })
    results["metadata"].setdefault("wall_seconds", {})
    write_json_atomic(results_path, results)

    from jaxcnn import checkpoint  # orbax is slow to import; only runs need it

    train_settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size,
                                   seed_batching=args.seed_batching, show_progress=args.progress)
    seeds = list(range(args.seeds))
    data = DeviceData(prepared)
    log(f"{study.name}: {len(configs)} configurations x {len(seeds)} seeds x {args.epochs} "
        f"epochs on {len(prepared.train)} images ({dataset.source}); "
        + (f"the {len(prepared.test)} test images as per-epoch validation"
           if prepared.val_is_test else
           f"val split {len(prepared.val)}, test {len(prepared.test)}")
        + f"; device {_device()['kind']}")
    for name, config in configs.items():
        ckpt = checkpoint.ConfigCheckpointer(out_dir / "checkpoints" / name)
        if name in results["configs"]:
            log(f"[{name}] already finished in {results_path}; skipping")
            ckpt.clear()  # left over if a run died between saving results and clearing
            continue
        log(f"[{name}] {config.description}")
        result = train_config(name, config, data, seeds, train_settings, checkpointer=ckpt)
        checkpoint.save_params(out_dir / "params" / name, result.params, seeds, {
            "model": dataclasses.asdict(config.model),
            "normalization": {"mean": prepared.normalization.mean.tolist(),
                              "std": prepared.normalization.std.tolist()},
            "class_names": list(dataset.class_names)})
        results["configs"][name] = _config_record(config, result, reference, name)
        results["metadata"]["wall_seconds"][name] = round(result.wall_seconds, 2)
        if result.resumed_from_epoch:
            resumed = results["metadata"].setdefault("resumed_from_epoch", {})
            resumed[name] = result.resumed_from_epoch
        results["statistics"] = stats.study_statistics(results, reference,
                                                       all_pairs=args.all_pairs)
        write_json_atomic(results_path, results)
        ckpt.clear()
        _write_figures(study, results, out_dir, options, prepared.val_is_test)

    ordered = {n: results["configs"][n] for n in all_configs if n in results["configs"]}
    results["configs"] = ordered
    results["statistics"] = stats.study_statistics(results, reference, all_pairs=args.all_pairs)
    total = round(time.perf_counter() - clock, 2)
    results["metadata"]["total_wall_seconds_this_invocation"] = total
    write_json_atomic(results_path, results)
    figures = _write_figures(study, results, out_dir, options, prepared.val_is_test)
    print_summary(results)
    log(f"wrote {results_path}" + "".join(f", {p}" for p in figures))
    return results


def _write_figures(study: Study, results: dict, out_dir: Path, options: StudyOptions,
                   val_is_test: bool) -> list[Path]:
    from jaxcnn import plots

    paths = [plots.plot_curves(results["configs"], out_dir / "curves.png", study.title,
                               val_name="test" if val_is_test else "val")]
    if "statistics" in results:
        paths.append(plots.plot_final_accuracy(
            results["configs"], results["statistics"], results["metadata"]["reference"],
            out_dir / "test_accuracy.png", study.title))
    if study.extra_figures is not None:
        paths += study.extra_figures(results, out_dir, options)
    return paths


def print_summary(results: dict) -> None:
    """Per configuration: mean ± std, 95% CI, and the paired comparison, on stdout."""
    statistics = results["statistics"]
    by_config = {c["config"]: c for c in statistics["comparisons"]
                 if c["reference"] == results["metadata"]["reference"]}
    print(f"\n{results['experiment']}: final test accuracy (%), paired by seed against "
          f"'{results['metadata']['reference']}'")
    print(f"{'config':<13} {'n':>2} {'mean ± std':>14} {'95% CI':>16} {'diff':>7} "
          f"{'diff 95% CI':>17} {'Holm p':>8}  notes")
    for name, entry in statistics["summary"].items():
        mean = (f"{entry['mean']:.2f} ± {entry['std']:.2f}" if entry["std"] is not None
                else f"{entry['mean']:.2f}" if entry["mean"] is not None else "n/a")
        ci = _interval(entry["ci95_t"])
        comp = by_config.get(name)
        notes = []
        if comp is None:
            diff, diff_ci, p = "", "", ""
            notes.append("reference")
        else:
            diff = f"{comp['mean_difference']:+.2f}" if comp["mean_difference"] is not None else ""
            diff_ci = _interval(comp["ci95"])
            p = f"{comp['p_holm']:.3f}" if comp["p_holm"] is not None else "n/a"
            if comp["note"]:
                notes.append(comp["note"])
        if entry["note"]:
            notes.append(entry["note"])
        print(f"{name:<13} {entry['n']:>2} {mean:>14} {ci:>16} {diff:>7} {diff_ci:>17} "
              f"{p:>8}  {'; '.join(notes)}")


def _interval(pair: list[float] | None) -> str:
    return f"[{pair[0]:.2f}, {pair[1]:.2f}]" if pair else "n/a"


def main(study: Study, argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of a study; returns the exit status."""
    parser = cli.build_parser(study)
    args = cli.parse(parser, argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the results' "command"
    try:
        run_study(study, args)
    except ConfigError as err:
        parser.error(str(err))  # argparse style: usage line, message, exit 2
    except JaxcnnError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{parser.prog}: interrupted; rerun the same command to resume from the "
              "last finished epoch", file=sys.stderr)
        return 130
    return 0
