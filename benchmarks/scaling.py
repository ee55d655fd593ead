"""Scaling: training throughput against members trained at once and against devices.

    python -m benchmarks.scaling --device gpu --members 1 8 64 256 --json runs/scaling.json
    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python -m benchmarks.scaling --device cpu --members 1 2 4 8 --devices 1 2 4 --steps 10

Times one epoch of ``--steps`` steps (batch 64, random CIFAR-shaped data, the
baseline configuration, members = seeds) by jaxcnn's chunk program: the members
batched by the device's default (vmap on a GPU, lax.map on the CPU), split over
``D`` devices with ``shard_map`` when D > 1. Three views, medians of
``--repeats`` after a warm-up (compile time reported apart):

- members: images/s and members/s on one device for each member count, up to
  what the memory plan says fits (``jaxcnn.training.memory``);
- strong scaling: the largest member count over 1..D devices;
- weak scaling: the smallest member count per device, over 1..D devices.

On the CPU, forced host devices share the same cores, so this is a rehearsal of
the code path, not a measurement of scaling; on a GPU machine it records the card.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from benchmarks.common import Timer, environment, random_cifar, save_figure, write_json
from jaxcnn.cli import HelpFormatter

PROG = "python -m benchmarks.scaling"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where jax runs")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="member counts to time (those the memory plan says do not fit "
                             "are left out)")
    parser.add_argument("--devices", type=int, nargs="+", default=None,
                        help="device counts for strong and weak scaling (default: 1, 2, 4, "
                             "... up to the local devices)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs; median reported")
    parser.add_argument("--conv", default="auto", choices=("auto", "winograd", "patches", "xla"),
                        help="the convolution (auto: the device's default)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--png", type=Path, default=None, help="plot the results here")
    return parser.parse_args(argv)


def time_epoch(members: int, devices: int, args, images, labels) -> dict:
    import jax

    from benchmarks.throughput import device_data
    from jaxcnn.configs import Configuration, hyperparams, stack
    from jaxcnn.models.model import Network
    from jaxcnn.training.runner import RunSettings, chunk_program, chunk_width, member_mesh
    from jaxcnn.training.train import stack_seed_keys

    settings = RunSettings(1, 64, conv=args.conv, devices=devices,
                           batching="auto" if devices == 1 else "map").resolved()
    if settings.batching == "threads":  # one program for all members, like a GPU chunk
        settings = RunSettings(1, 64, conv=settings.conv, batching="map").resolved()
    width = chunk_width(settings, members)
    with Timer() as build:
        program = chunk_program(Network(), settings.conv, settings.batching, width,
                                len(labels), 64, None, devices)
        data = device_data(images, labels, member_mesh(devices))
        keys = stack_seed_keys(list(range(width)))
        states = program.init(keys, stack([hyperparams(Configuration(), args.steps)] * width))
    with Timer() as first:
        states, _ = program.epoch(states, keys, data, 0, 0)
        jax.block_until_ready(states)
    times = []
    for r in range(args.repeats):
        with Timer() as t:
            states, _ = program.epoch(states, keys, data, r + 1, 0)
            jax.block_until_ready(states)
        times.append(t.seconds)
    median = statistics.median(times)
    row = {"members": members, "devices": devices, "width": width,
           "batching": settings.batching, "conv": settings.conv,
           "seconds": [round(x, 4) for x in times], "median_seconds": round(median, 4),
           "images_per_s": round(members * len(labels) / median, 1),
           "members_per_s": round(members / median, 4),
           "compile_seconds": round(max(0.0, build.seconds + first.seconds - median), 2)}
    print(f"{members} members on {devices} device(s): {row['images_per_s']:.0f} images/s",
          file=sys.stderr, flush=True)
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from jaxcnn.models.model import Network
    from jaxcnn.training.memory import free_bytes, member_bytes

    local = jax.local_device_count()
    devices = args.devices or [d for d in (1, 2, 4, 8, 16) if d <= local]
    if max(devices) > local:
        raise SystemExit(f"{PROG}: error: --devices {max(devices)} but {local} local devices "
                         "(on the CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N)")
    images, labels = random_cifar(64 * args.steps)
    conv = args.conv
    estimate = member_bytes(Network(), 64, "patches" if conv == "auto" else conv).total
    free = free_bytes(devices_sharing=local)
    fits = None if free is None else int(free * 0.8 // estimate)
    members = [m for m in args.members if fits is None or m <= fits]
    skipped = sorted(set(args.members) - set(members))
    if skipped:
        print(f"left out {skipped}: the memory plan fits {fits} members per device",
              file=sys.stderr)
    by_members = [time_epoch(m, 1, args, images, labels) for m in members]
    strong = [time_epoch(max(members), d, args, images, labels) for d in devices]
    weak = [time_epoch(min(members) * d, d, args, images, labels) for d in devices]
    payload = {"benchmark": "scaling", "environment": environment(args.device),
               "command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
               "steps": args.steps, "batch_size": 64, "memory_plan_members_per_device": fits,
               "note": ("forced host devices share the CPU's cores: a rehearsal of the code "
                        "path, not a scaling measurement") if args.device == "cpu" else None,
               "members": by_members, "strong": strong, "weak": weak}
    for name, rows in (("members", by_members), ("strong", strong), ("weak", weak)):
        print(f"\n{name}:", file=sys.stderr)
        for r in rows:
            print(f"  {r['members']:>4} members, {r['devices']} device(s): "
                  f"{r['images_per_s']:>9.0f} images/s, {r['members_per_s']:.3f} members/s",
                  file=sys.stderr)
    if args.json:
        write_json(args.json, payload)
    if args.png:
        plot(payload, args.png)
    return 0


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_d) = plt.subplots(1, 2, figsize=(12, 4.3))
    rows = payload["members"]
    ax_m.plot([r["members"] for r in rows], [r["images_per_s"] for r in rows], marker="o")
    ax_m.set_xscale("log", base=2)
    ax_m.set_xlabel("members trained at once (one device)")
    ax_m.set_ylabel("training images per second, all members")
    for name, marker in (("strong", "o"), ("weak", "s")):
        rows = payload[name]
        ax_d.plot([r["devices"] for r in rows], [r["images_per_s"] for r in rows],
                  marker=marker, label=f"{name} scaling ({rows[0]['members']} members"
                  + (" per device)" if name == "weak" else ")"))
    ax_d.set_xlabel("devices")
    ax_d.set_ylabel("training images per second")
    ax_d.legend(fontsize=8)
    for ax in (ax_m, ax_d):
        ax.grid(alpha=0.3)
    title = f"Scaling, {payload['environment']['jax_device']}"
    if payload.get("note"):
        title += f"\n({payload['note']})"
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
