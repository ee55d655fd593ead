"""Test-only references: per-configuration Optax chains and weight layouts for PyTorch.

Moved out of the package (they serve only the tests):

- :func:`make_schedules` / :func:`build_optimizer`: each configuration's own chain
  with Python constants and Optax's schedules (``optax.exponential_decay``) or the
  validated CyclicLR factories :func:`cyclic` / :func:`cyclic_momentum` below, written
  independently of the member chain's schedule registry, which the tests hold to them.
- :func:`flax_to_torch_arrays` / :func:`torch_arrays_to_flax`: weights between the
  Flax CNN (NHWC) and the PyTorch seed models (NCHW). Convolution kernels: Flax
  (kh, kw, in, out) <-> torch (out, in, kh, kw); dense kernels: (in, out) <-> (out, in);
  fc1's input rows are permuted: Flax flattens conv3's (4, 4, 32) output in H, W, C
  order, torch flattens (32, 4, 4) in C, H, W order. Numpy only.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.optim import schedules
from jaxcnn.optim.adam import OptimizerConfig

Schedule = schedules.Schedule
FC1_INPUT = (4, 4, 32)  # H, W, C of conv3's pooled output


# --- CyclicLR, written as PyTorch documents it ----------------------------------------------

def _check(step_size_up, step_size_down, mode, gamma, steps_per_unit) -> dict:
    schedules.check_cycle(step_size_up, step_size_down, mode, gamma)
    schedules.positive("steps_per_unit", steps_per_unit)
    return schedules.cycle_shape(step_size_up, step_size_down, mode, gamma)


def cyclic(base_lr: float, max_lr: float, step_size_up: float = 2000,
           step_size_down: float | None = None, mode: str = "triangular",
           gamma: float = 1.0, steps_per_unit: int = 1) -> Schedule:
    """PyTorch CyclicLR's learning rate: ``base + (max - base) * height(t)``."""
    schedules.positive("base_lr", base_lr)
    schedules.positive("max_lr", max_lr)
    if max_lr < base_lr:
        raise ValueError(f"max_lr ({max_lr}) must not be below base_lr ({base_lr})")
    shape = _check(step_size_up, step_size_down, mode, gamma, steps_per_unit)

    def schedule(count: jnp.ndarray) -> jnp.ndarray:
        t = schedules.scheduler_time(count, steps_per_unit)
        return base_lr + (max_lr - base_lr) * schedules.cycle_height(
            t, shape["cycle_up"], shape["cycle_down"], shape["cycle_decay"], shape["cycle_gamma"])

    return schedule


def cyclic_momentum(base_momentum: float = 0.8, max_momentum: float = 0.9,
                    step_size_up: float = 2000, step_size_down: float | None = None,
                    mode: str = "triangular", gamma: float = 1.0,
                    steps_per_unit: int = 1) -> Schedule:
    """CyclicLR's ``cycle_momentum``: ``max - (max - base) * height(t)``."""
    schedules.check_momentum(base_momentum, max_momentum)
    shape = _check(step_size_up, step_size_down, mode, gamma, steps_per_unit)

    def schedule(count: jnp.ndarray) -> jnp.ndarray:
        t = schedules.scheduler_time(count, steps_per_unit)
        return max_momentum - (max_momentum - base_momentum) * schedules.cycle_height(
            t, shape["cycle_up"], shape["cycle_down"], shape["cycle_decay"], shape["cycle_gamma"])

    return schedule


# --- the per-configuration reference chain ---------------------------------------------

def make_schedules(cfg: OptimizerConfig, steps_per_epoch: int
                   ) -> tuple[Schedule, Schedule | None]:
    """The configuration's own learning-rate schedule and, if beta1 cycles, beta1's."""
    sc = cfg.schedule
    unit = steps_per_epoch if sc.per_epoch else 1
    if sc.kind == "constant":
        return optax.constant_schedule(cfg.lr), None
    if sc.kind in ("step", "exponential"):
        decay = optax.exponential_decay(cfg.lr, transition_steps=sc.period * unit,
                                        decay_rate=sc.gamma, staircase=sc.staircase)
        # optax divides the count by transition_steps in the count's dtype: an int32
        # count (optax's own) gives a float32 rate even under jax_enable_x64. A float
        # count keeps the default float's precision.
        return (lambda count: decay(schedules.as_float(count))), None
    shape = dict(step_size_up=sc.step_size_up, step_size_down=sc.step_size_down, mode=sc.mode,
                 gamma=sc.gamma if sc.mode == "exp_range" else 1.0, steps_per_unit=unit)
    lr = cyclic(cfg.lr, cfg.lr * sc.max_lr_factor, **shape)
    b1 = (cyclic_momentum(sc.base_momentum, sc.max_momentum, **shape)
          if sc.cycle_momentum else None)
    return lr, b1


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The configuration's own Optax chain, Python constants and Optax schedules."""
    lr_schedule, b1_schedule = make_schedules(cfg, steps_per_epoch)
    if b1_schedule is None:
        adam = optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    else:
        # inject_hyperparams recomputes b1 from the step count before each
        # update; the bias correction then uses the current beta1, as torch does.
        adam = optax.inject_hyperparams(optax.scale_by_adam)(b1=b1_schedule, b2=cfg.b2,
                                                             eps=cfg.eps)
    links = [adam]
    if cfg.weight_decay:
        decay = optax.add_decayed_weights(cfg.weight_decay)
        links = [decay, adam] if cfg.decay == "coupled" else [adam, decay]
    return optax.chain(*links, optax.scale_by_learning_rate(lr_schedule))


# --- weights between Flax and PyTorch ------------------------------------------------------

def flax_to_torch_arrays(params: Any) -> dict[str, dict[str, np.ndarray]]:
    """Flax params -> {layer: {"weight", "bias"}} in torch layouts."""
    out = {}
    for layer in ("conv1", "conv2", "conv3"):
        kernel = np.asarray(params[layer]["kernel"])
        out[layer] = {"weight": kernel.transpose(3, 2, 0, 1),
                      "bias": np.asarray(params[layer]["bias"])}
    h, w, c = FC1_INPUT
    fc1 = np.asarray(params["fc1"]["kernel"]).reshape(h, w, c, -1)  # rows in H, W, C order
    out["fc1"] = {"weight": fc1.transpose(3, 2, 0, 1).reshape(fc1.shape[-1], -1),
                  "bias": np.asarray(params["fc1"]["bias"])}
    out["fc2"] = {"weight": np.asarray(params["fc2"]["kernel"]).T,
                  "bias": np.asarray(params["fc2"]["bias"])}
    return out


def torch_arrays_to_flax(arrays: dict[str, dict[str, np.ndarray]]) -> dict:
    """The inverse of :func:`flax_to_torch_arrays`."""
    params = {}
    for layer in ("conv1", "conv2", "conv3"):
        params[layer] = {"kernel": arrays[layer]["weight"].transpose(2, 3, 1, 0),
                         "bias": arrays[layer]["bias"]}
    h, w, c = FC1_INPUT
    weight = arrays["fc1"]["weight"]  # (out, C*H*W)
    params["fc1"] = {"kernel": weight.reshape(-1, c, h, w).transpose(2, 3, 1, 0)
                     .reshape(h * w * c, -1), "bias": arrays["fc1"]["bias"]}
    params["fc2"] = {"kernel": arrays["fc2"]["weight"].T, "bias": arrays["fc2"]["bias"]}
    return params
