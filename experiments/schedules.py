"""Experiment 3 of the seed notebook: learning-rate schedules.

    python -m experiments.schedules --data synthetic --seeds 2 --epochs 1

Every schedule is an Optax schedule of the optimizer step. By default the
epoch-based ones are converted with the steps per epoch (StepLR every 5
epochs; ExponentialLR decaying smoothly by 0.1 per epoch) and CyclicLR moves
every step, cycling beta1 against the rate as PyTorch does. ``--torch-parity``
steps all three once per epoch, as the seed notebook did.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from jaxcnn.model import ModelConfig
from jaxcnn.optim import OptimizerConfig, ScheduleConfig
from jaxcnn.runner import RunConfig
from jaxcnn.study import Study, StudyOptions, main


def build_configs(opts: StudyOptions) -> dict[str, RunConfig]:
    per_epoch = opts.torch_parity
    model = ModelConfig(init="torch" if opts.torch_parity else "lecun", conv_impl=opts.conv_impl)
    when = "stepped once per epoch (the seed)" if per_epoch else "per optimizer step"

    def run(schedule: ScheduleConfig, text: str) -> RunConfig:
        return RunConfig(model, OptimizerConfig(lr=opts.lr, schedule=schedule), f"{text}, {when}")

    return {
        "step": run(ScheduleConfig("step", per_epoch=per_epoch, step_size=5, gamma=0.1),
                    "StepLR(step_size=5 epochs, gamma=0.1)"),
        "exponential": run(ScheduleConfig("exponential", per_epoch=per_epoch, gamma=0.1,
                                          staircase=per_epoch),
                           "ExponentialLR(gamma=0.1 per epoch)"
                           + ("" if per_epoch else ", smooth")),
        "cyclic": run(ScheduleConfig("cyclic", per_epoch=per_epoch, max_lr_factor=5.0,
                                     step_size_up=2000, mode="triangular", cycle_momentum=True),
                      f"CyclicLR(base={opts.lr:g}, max={5 * opts.lr:g}, step_size_up=2000, "
                      "beta1 0.9<->0.8)"),
    }


def schedule_figure(results: dict, out_dir: Path, opts: StudyOptions) -> list[Path]:
    from jaxcnn.plots import plot_schedules

    meta = results["metadata"]
    steps = math.ceil(meta["data"]["train_examples"] / meta["settings"]["batch_size"])
    configs = {name: cfg for name, cfg in build_configs(opts).items()
               if name in results["configs"]}
    return [plot_schedules(configs, steps, meta["settings"]["epochs"],
                           out_dir / "schedules.png")]


STUDY = Study(name="schedules", title="Learning-rate schedules", build_configs=build_configs,
              reference="step", parity_reference="step", extra_figures=schedule_figure)

if __name__ == "__main__":
    sys.exit(main(STUDY))
