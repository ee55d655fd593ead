"""What a run is: one frozen :class:`Experiment` (every flag that changes the numbers)
and one :class:`Runtime` (how it runs, which changes nothing beyond float rounding).

The fields themselves drive everything that used to be spread over argparse,
option classes and a settings dict: the command-line flags (``cli.py`` builds
them from the field metadata), the ``settings`` recorded in results.json, the
check that refuses to resume a run made with other flags (naming every flag
that differs), the configurations and their members (``studies.py``), and the
exact command that reproduces a run (:meth:`Experiment.flags`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from jaxcnn.errors import ResumeError


def option(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    """A dataclass field that is also a command-line flag (``--name-with-dashes``)."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "argparse": argparse_kwargs})


# Defaults that depend on the protocol: (ours, the notebook's under --torch-parity).
PARITY_DEFAULTS: dict[str, tuple[Any, Any]] = {"val_size": (5000, 0),
                                               "normalization": ("dataset", "half")}


def parity_default(name: str, torch_parity: bool) -> Any:
    """The default of ``name`` (a key of PARITY_DEFAULTS) under either protocol."""
    return PARITY_DEFAULTS[name][bool(torch_parity)]


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Every setting that changes results; equal experiments give equal numbers."""

    data: str = option("cifar10", "cifar10 (downloaded via tensorflow-datasets), synthetic, or "
                       "a path to an official CIFAR-10 archive (python or binary version, "
                       ".tar.gz or extracted) or an image-folder tree "
                       "ROOT/{train,test}/<class>/*.png|jpg (a folder or .tar/.tar.gz/.tar.xz)",
                       group="data")
    seeds: int | str = option(5, "seeds per configuration (0..N-1), or 'auto': rounds of seeds "
                              "until every comparison is decided or --max-seeds is spent "
                              "(see the 'decisions' flags)", group="training")
    epochs: int = option(2, "training epochs (the notebook: 2)", group="training")
    batch_size: int = option(64, "images per optimizer step (the notebook: 64)",
                             group="training")
    lr: float = option(1e-3, "Adam's base learning rate (the notebook: 0.001)", group="training")
    val_size: int | None = option(None, "stratified training images held out as the validation "
                                  "set for the per-epoch curves; 0 = evaluate the test set "
                                  "every epoch, as the notebook did (default: 5000, a tenth "
                                  "of a training split under 50,000 images; 0 with "
                                  "--torch-parity)",
                                  group="data")
    train_examples: int | None = option(None, "train on a stratified subset of this many "
                                        "images (quick runs; default: all)", group="data")
    split_seed: int | None = option(None, "one train/validation split for every seed, drawn "
                                    "with this seed (runs before 2026-12-08 used 0); default: "
                                    "each seed draws its own stratified split (and "
                                    "--train-examples subset), shared by every configuration "
                                    "at that seed, so verdicts cover the split too",
                                    group="data")
    normalization: str | None = option(None, "per-channel mean/std of the training images "
                                       "('dataset') or the notebook's 0.5/0.5 ('half'; default: "
                                       "dataset, or half with --torch-parity)", group="data")
    torch_parity: bool = option(False, "reproduce the seed notebook's protocol as written "
                                "(PyTorch init, schedulers stepped per epoch, 0.5/0.5 "
                                "normalisation, the test set as validation set, its dropout "
                                "model without ReLUs); see docs/studies.md", group="training")

    def __post_init__(self) -> None:
        # None = the protocol's own default (see parity_default): the library and the
        # command line resolve it here, once, so they build equal experiments.
        for name in PARITY_DEFAULTS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, parity_default(name, self.torch_parity))
        if self.seeds != AUTO and (not isinstance(self.seeds, int) or self.seeds < 1):
            raise ValueError(f"seeds must be a positive integer or {AUTO!r}, got {self.seeds!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.normalization not in ("dataset", "half"):
            raise ValueError(f"normalization must be 'dataset' or 'half', "
                             f"got {self.normalization!r}")

    def settings(self, data_fingerprint: str) -> dict:
        """What results.json records under ``metadata.settings`` and a resume must match."""
        return {"data": self.data, "data_fingerprint": data_fingerprint,
                **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name != "data"}}

    def flags(self) -> list[str]:
        """The command-line flags that reproduce this experiment (defaults left out)."""
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = (parity_default(f.name, self.torch_parity) if f.name in PARITY_DEFAULTS
                       else f.default)
            if value == default and not (f.name == "data" and value != "cifar10"):
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                out += [flag] if value else []
            else:
                out += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return out

    @property
    def sequential(self) -> bool:
        """True for ``--seeds auto`` (rounds of seeds until decided)."""
        return self.seeds == AUTO

    def steps_per_epoch(self, num_train: int) -> int:
        return math.ceil(num_train / self.batch_size)


AUTO = "auto"  # --seeds auto


@dataclasses.dataclass(frozen=True)
class DecisionOptions:
    """How comparisons are decided (``decisions.Design``): they change verdicts, never a
    member's numbers, so a rerun may change --max-seeds (a larger budget continues)."""

    margin: float = option(1.0, "equivalence margin m in accuracy points: 'equivalent' means "
                           "the paired difference is shown to lie within +-m", group="decisions")
    max_seeds: int = option(60, "--seeds auto: the most seeds any configuration gets",
                            group="decisions")
    first_round: int = option(14, "--seeds auto: seeds of the first round (at most half of "
                              "--max-seeds)", group="decisions")
    round_size: int = option(4, "--seeds auto: seeds added per later round, only to the "
                             "configurations an undecided comparison needs", group="decisions")
    family: str = option("all", "multiplicity family: 'all' comparisons of the run (or "
                         "report) together, or one per 'study'", group="decisions",
                         choices=("all", "study"))
    test_set: str = option("sample", "how verdicts read the test images: as a 'sample' of "
                           "images (intervals include their part of the error, which more "
                           "seeds do not shrink) or as 'fixed' (conditional on these images)",
                           group="decisions", choices=("sample", "fixed"))

    def design(self, experiment: Experiment):
        """The decisions.Design for ``experiment``: sequential under --seeds auto, one look
        at --seeds N, or None for a single seed (nothing to pair, nothing to decide)."""
        from jaxcnn.stats.decisions import Design

        common = {"margin": self.margin, "family": self.family, "test_set": self.test_set}
        if experiment.sequential:
            # a small budget still looks more than once, so that a rerun can continue it
            first = min(self.first_round, max(2, self.max_seeds // 2))
            return Design(first_round=first, round_size=self.round_size,
                          max_seeds=self.max_seeds, **common)
        return Design.fixed(experiment.seeds, **common) if experiment.seeds >= 2 else None


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How to run. None of these change results beyond float rounding."""

    batching: str = option("auto", "how members (configuration, seed) share the device: "
                           "vmap (one wide program, all members in lockstep), map (lax.map, "
                           "one after another inside the program), threads (one worker per CPU "
                           "core, each training one member at a time); auto = threads on the "
                           "CPU, vmap on a GPU", group="speed",
                           choices=("auto", "vmap", "map", "threads"))
    conv: str = option("auto", "how the 3x3 convolutions are computed: winograd (F(2x2,3x3) as "
                       "matmuls), patches (im2col + matmul) or xla (lax.conv); auto = the fastest "
                       "measured on the device: winograd on the CPU, patches on a GPU",
                       group="speed", choices=("auto", "winograd", "patches", "xla"))
    workers: int | None = option(None, "chunks trained at the same time (default: one per CPU "
                                 "core with threads, else 1)", group="speed")
    members_per_chunk: int | None = option(None, "members trained together in one program "
                                           "call (default: 1 with threads; else all members of "
                                           "a network, or as many as the memory plan says fit)",
                                           group="speed")
    devices: int | None = option(None, "local devices the members are split over (default: "
                                 "all of them; 1 = no splitting)", group="speed")
    memory_budget: float | None = option(None, "plan chunks as if each device had this many "
                                         "MiB free (default: what the device reports)",
                                         group="speed")
    compile_cache: bool = option(True, "keep compiled programs in CACHE_DIR/xla (JAX's "
                                 "persistent compilation cache), so a rerun does not compile "
                                 "them again (--no-compile-cache: compile every time)",
                                 group="speed")
    deterministic: bool = option(False, "GPU only: set XLA_FLAGS=--xla_gpu_deterministic_ops="
                                 "true so reruns give identical numbers (slower); CPU runs are "
                                 "always deterministic", group="speed")
    out: Path = option(Path("results"), "results go to OUT/<study>/", group="output")
    fresh: bool = option(False, "discard earlier results and checkpoints of the studies run "
                         "and start over", group="output")
    all_pairs: bool = option(False, "compare every pair of configurations, not only each with "
                             "the reference", group="output")
    progress: bool = option(True, "a step bar in a terminal (--no-progress: epoch lines only)",
                            group="output")
    cache_dir: Path | None = option(None, "where decoded datasets are cached (default: "
                                    "$JAXCNN_CACHE or ~/.cache/jaxcnn)", group="data")
    coordinator: str | None = option(None, "HOST:PORT of process 0, to train over several "
                                     "processes/hosts with jax.distributed (with "
                                     "--num-processes and --process-id)", group="hosts",
                                     metavar="HOST:PORT")
    num_processes: int | None = option(None, "how many processes take part", group="hosts")
    process_id: int | None = option(None, "this process's index, 0..N-1 (0 writes the "
                                    "results)", group="hosts")
    distributed: bool = option(False, "start jax.distributed from the cluster's environment "
                               "(SLURM, Open MPI, ...) instead of the three flags above",
                               group="hosts")
    init_timeout: int = option(90, "seconds the processes wait for each other at start-up "
                               "before giving up with a message (every process must be started "
                               "within this time)", group="hosts", metavar="SECONDS")
    wait: bool = option(False, "if another run is writing to --out, wait for it to finish "
                        "instead of exiting", group="output")


def seeds_continue(old: int | str | None, new: int | str) -> bool:
    """Whether a rerun asking for ``new`` seeds continues a run made with ``old``: the
    seed count is a budget, not a protocol (seed s trains the same alone or among
    others), so it may grow (N -> M >= N, or N -> auto to settle what N left open);
    it may not shrink, or go from auto back to a fixed count."""
    if old == new:
        return True
    if isinstance(old, int) and new == AUTO:
        return True
    return isinstance(old, int) and isinstance(new, int) and new >= old


def same_content(old_settings: dict, new_settings: dict) -> bool:
    """Whether both settings name data of the same recorded content (a fingerprint)."""
    fingerprint = old_settings.get("data_fingerprint")
    return fingerprint is not None and fingerprint == new_settings.get("data_fingerprint")


# What results recorded before a setting existed were made with (every seed one split,
# split seed 0, before 2026-12-08).
LEGACY_SETTINGS = {"split_seed": 0}


def setting_differences(old_settings: dict, new_settings: dict, seeds_may_grow: bool = False
                        ) -> tuple[str, str] | None:
    """The flags whose values differ, as ("--epochs 1, ...", "--epochs 2, ...") for the
    old and the new settings; None when they agree. ``seeds_may_grow``: a rerun's larger
    budget (:func:`seeds_continue`) is no difference."""
    differing = []
    for key, new in new_settings.items():
        if key == "data_fingerprint":
            continue
        old = old_settings.get(key, LEGACY_SETTINGS.get(key))
        if key == "seeds" and seeds_may_grow and seeds_continue(old_settings.get(key), new):
            continue
        if key == "data" and same_content(old_settings, new_settings):
            continue  # one file, spelled from another folder (e.g. relative to another cwd)
        if old != new:
            differing.append((key, old, new))
    if (old_settings.get("data_fingerprint") != new_settings.get("data_fingerprint")
            and not any(key == "data" for key, _, _ in differing)):
        differing.insert(0, ("data", f"{old_settings.get('data')} (other content)",
                             new_settings.get("data")))
    if not differing:
        return None

    def show(key: str, value: Any) -> str:
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            return flag if value else f"no {flag}"
        return f"{flag} {'(default)' if value is None else value}"

    return (", ".join(show(k, old) for k, old, _ in differing),
            ", ".join(show(k, new) for k, _, new in differing))


def check_compatible(old_settings: dict, new_settings: dict, path: Path) -> None:
    """Raises ResumeError naming every flag whose value differs from the earlier run's
    (a larger seed budget continues the run)."""
    differences = setting_differences(old_settings, new_settings, seeds_may_grow=True)
    if differences is not None:
        was, now = differences
        raise ResumeError(f"{path} was made with {was}, not {now}; use the same flags to "
                          "resume, another --out, or --fresh to start over")
