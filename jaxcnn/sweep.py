"""Sweeps: one hyperparameter (or a grid of two) varied from a base configuration.

    python -m experiments.sweep --param weight_decay=0,1e-4,3e-4,1e-3,3e-3 --seeds 8
    jaxcnn sweep --param learning_rate=0.01,0.1 --base mystudy.py:study/sgd --data my_images/

The base is a built-in study's configuration, or one of a study of one's own
(``FILE.py:NAME/CONFIG`` or ``module:NAME/CONFIG``), whose ``jaxcnn.Optimizer`` float
arguments (``learning_rate``, ``momentum``, ...) can be swept by name.

Every (value, seed) is a member of the same compiled program (the values are
data). The results are a study in the studies' schema: one configuration per
value (``weight_decay=0.001``; ``weight_decay=0.001,lr=0.003`` for a grid),
compared by seed with the base configuration's own value (added when the list
lacks it), Holm-adjusted, and a figure of final test accuracy against the value.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from pathlib import Path

from jaxcnn.configs import Configuration
from jaxcnn.errors import ConfigError
from jaxcnn.optim.optax_optimizer import Optimizer
from jaxcnn.studies import STUDIES, Study, StudyContext


def _optimizer(**changes) -> Callable[[Configuration, float], Configuration]:
    (field,) = changes.values()

    def apply(config: Configuration, value: float) -> Configuration:
        return dataclasses.replace(config, optimizer=dataclasses.replace(
            config.optimizer, **{field: value}))

    return apply


def _schedule(field: str) -> Callable[[Configuration, float], Configuration]:
    def apply(config: Configuration, value: float) -> Configuration:
        schedule = dataclasses.replace(config.optimizer.schedule, **{field: value})
        return dataclasses.replace(config, optimizer=dataclasses.replace(
            config.optimizer, schedule=schedule))

    return apply


def _rates(*fields: str) -> Callable[[Configuration, float], Configuration]:
    def apply(config: Configuration, value: float) -> Configuration:
        return dataclasses.replace(config, **{f: value for f in fields})

    return apply


def _beta1(config: Configuration, value: float) -> Configuration:
    # A cycling beta1 peaks at max_momentum; otherwise beta1 is Adam's b1.
    schedule = config.optimizer.schedule
    if schedule.kind == "cyclic" and schedule.cycle_momentum:
        return _schedule("max_momentum")(config, value)
    return _optimizer(field="b1")(config, value)


# name -> (what it sets, how to read it back from a configuration)
PARAMS: dict[str, tuple[Callable[[Configuration, float], Configuration],
                        Callable[[Configuration], float]]] = {
    "lr": (_optimizer(field="lr"), lambda c: c.optimizer.lr),
    "weight_decay": (_optimizer(field="weight_decay"), lambda c: c.optimizer.weight_decay),
    "dropout": (_rates("spatial_dropout", "dropout"), lambda c: c.dropout),
    "spatial_dropout": (_rates("spatial_dropout"), lambda c: c.spatial_dropout),
    "dense_dropout": (_rates("dropout"), lambda c: c.dropout),
    "beta1": (_beta1, lambda c: (c.optimizer.schedule.max_momentum
                                 if c.optimizer.schedule.kind == "cyclic"
                                 and c.optimizer.schedule.cycle_momentum else c.optimizer.b1)),
    "beta2": (_optimizer(field="b2"), lambda c: c.optimizer.b2),
    "gamma": (_schedule("gamma"), lambda c: c.optimizer.schedule.gamma),
    "period": (_schedule("period"), lambda c: c.optimizer.schedule.period),
    "max_lr_factor": (_schedule("max_lr_factor"), lambda c: c.optimizer.schedule.max_lr_factor),
    "step_size_up": (_schedule("step_size_up"), lambda c: c.optimizer.schedule.step_size_up),
}


def parse_param(text: str) -> tuple[str, list[float]]:
    """'weight_decay=0,1e-4,3e-4' -> ('weight_decay', [0.0, 0.0001, 0.0003]). NAME is one
    of PARAMS, or a float argument of the base's ``jaxcnn.Optimizer`` (checked against
    the base: :func:`param_functions`)."""
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name.isidentifier():
        raise ConfigError(f"--param {text!r}: write NAME=V1,V2,... with NAME one of "
                          f"{', '.join(PARAMS)}, or a float argument of the base's "
                          "jaxcnn.Optimizer (e.g. learning_rate)")
    try:
        numbers = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--param {text!r}: the values must be numbers, e.g. "
                          f"{name}=0,1e-4,1e-3") from None
    if not numbers or any(not math.isfinite(v) for v in numbers):
        raise ConfigError(f"--param {text!r}: give at least one finite value")
    return name, list(dict.fromkeys(numbers))


def value_name(assignment: dict[str, float]) -> str:
    """{'weight_decay': 0.001} -> 'weight_decay=0.001'."""
    return ",".join(f"{name}={value:g}" for name, value in assignment.items())


def param_functions(name: str, config: Configuration, base: str) -> tuple[
        Callable[[Configuration, float], Configuration], Callable[[Configuration], float]]:
    """(set, read) of parameter ``name`` on ``base``'s configuration: PARAMS' for the
    built-in Adam chain, a float argument of the base's own ``jaxcnn.Optimizer``."""
    opt = config.optimizer
    if not isinstance(opt, Optimizer):
        if name not in PARAMS:
            raise ConfigError(f"--param {name}: not one of {', '.join(PARAMS)} ({base} "
                              "trains with the built-in Adam)")
        return PARAMS[name]
    if name not in opt.values:
        own = ", ".join(opt.values) or "none: give it as jaxcnn.Optimizer(factory, ...)"
        raise ConfigError(f"--param {name}: {base} trains with its own optimizer "
                          f"{opt.describe()}; sweep one of its float arguments ({own})")

    def apply(config: Configuration, value: float) -> Configuration:
        own = config.optimizer
        return dataclasses.replace(config, optimizer=Optimizer(
            own.factory, **{**own.arguments, name: value}))

    return apply, lambda config: config.optimizer.values[name]


def base_configuration(base: str, ctx: StudyContext, study: Study | None = None
                       ) -> Configuration:
    """The configuration ``base`` names: ``STUDY/CONFIG`` of a built-in study, or of
    ``study`` (a study of one's own, ``--base FILE.py:NAME/CONFIG``)."""
    prefix, _, config_name = base.rpartition("/")
    studies = {prefix: study} if study is not None else STUDIES
    owner = studies.get(prefix)
    configs = owner.build_configs(ctx) if owner is not None else {}
    if config_name not in configs:
        choices = ", ".join(f"{s}/{c}" for s, st in studies.items()
                            for c in st.build_configs(ctx))
        raise ConfigError(f"--base {base!r}: not a study configuration; choose from {choices}")
    return configs[config_name]


def sweep_study(params: list[tuple[str, list[float]]], base: str = "regularization/baseline",
                name: str = "sweep", study: Study | None = None) -> Study:
    """A Study of every combination of ``params``' values applied to ``base`` (a
    configuration of ``study`` when given: a study of one's own)."""
    if len({p for p, _ in params}) != len(params):
        raise ConfigError("--param: each parameter at most once")
    if not 1 <= len(params) <= 2:
        raise ConfigError("--param: one parameter, or two for a grid")
    names = [p for p, _ in params]

    def base_values(ctx: StudyContext) -> dict[str, float]:
        config = base_configuration(base, ctx, study)
        return {p: param_functions(p, config, base)[1](config) for p in names}

    def build(ctx: StudyContext) -> dict[str, Configuration]:
        config = base_configuration(base, ctx, study)
        setters = {p: param_functions(p, config, base)[0] for p in names}
        reference = base_values(ctx)
        grids = [sorted(set(values) | {reference[p]}) for p, values in params]
        out = {}
        for combo in itertools.product(*grids):
            assignment = dict(zip(names, combo))
            swept = config
            try:
                for p, value in assignment.items():
                    swept = setters[p](swept, value)
            except ValueError as err:
                raise ConfigError(f"--param {value_name(assignment)}: {err}") from None
            out[value_name(assignment)] = dataclasses.replace(
                swept, description=f"{base} with {value_name(assignment)}"
                + (" (the base)" if assignment == reference else ""))
        return out

    flags = tuple(itertools.chain.from_iterable(
        ("--param", f"{p}={','.join(f'{v:g}' for v in values)}") for p, values in params))
    return Study(name=name, title=f"Sweep of {' x '.join(names)} from {base}",
                 build_configs=build, reference="(the base's value)",
                 parity_reference="(the base's value)",
                 reference_from=lambda ctx: value_name(base_values(ctx)),
                 extra_flags=(*flags, "--base", base, "--name", name),
                 metadata={"sweep": {"params": {p: v for p, v in params}, "base": base}},
                 figures=lambda results, out_dir: [plot_sweep(results, out_dir, names)])


def plot_sweep(results: dict, out_dir: Path, names: list[str]) -> Path:
    # Imported here, one way only (plots does not import sweep): building a sweep's
    # configurations needs no matplotlib.
    from jaxcnn.reporting import plots

    names_here = [*results["configs"], results["metadata"]["reference"]]
    values = {name: values_of(name) for name in names_here}
    return plots.save(plots.draw_sweep(results, names, values), out_dir / "sweep.png")


def values_of(config_name: str) -> dict[str, float]:
    """'weight_decay=0.001,lr=0.003' -> {'weight_decay': 0.001, 'lr': 0.003}."""
    return {k: float(v) for k, v in (part.split("=") for part in config_name.split(","))}
