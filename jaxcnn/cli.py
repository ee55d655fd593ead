"""The flags every study shares, with argparse-style errors for bad values."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jaxcnn.study import Study


def _number(kind, minimum, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


positive_int = _number(int, 1, True, "a positive integer")
nonnegative_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a positive number")


def build_parser(study: Study) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m experiments.{study.name}",
        description=f"{study.title}: train every configuration for several seeds and compare "
                    f"them with '{study.reference}'. Writes OUT/{study.name}/results.json, "
                    "figures and the final parameters; rerunning the same command resumes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    return add_study_arguments(parser)


def add_study_arguments(parser: argparse.ArgumentParser,
                        with_configs: bool = True) -> argparse.ArgumentParser:
    """The flags of every study (also taken by the report, to run missing studies)."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="cifar10",
                      help="cifar10 (download via tensorflow-datasets), synthetic, or a path to "
                           "an official CIFAR-10 archive (python or binary version, .tar.gz or "
                           "extracted) or an image-folder tree ROOT/{train,test}/<class>/*.png|jpg "
                           "(a folder or .tar/.tar.gz/.tar.xz)")
    data.add_argument("--val-size", type=nonnegative_int, default=None,
                      help="stratified validation images held out of training for the per-epoch "
                           "curves; 0 = use the test set every epoch, as the seed did "
                           "(default: 5000; 0 with --torch-parity)")
    data.add_argument("--train-examples", type=positive_int, default=None,
                      help="train on a stratified subset of this many images (quick runs)")
    data.add_argument("--normalization", choices=("dataset", "half"), default=None,
                      help="per-channel mean/std of the training images, or the seed's 0.5/0.5 "
                           "(default: dataset; half with --torch-parity)")
    data.add_argument("--cache-dir", type=Path, default=None,
                      help="where decoded datasets are cached (default: $JAXCNN_CACHE or "
                           "~/.cache/jaxcnn)")
    run = parser.add_argument_group("training")
    run.add_argument("--seeds", type=positive_int, default=5,
                     help="number of seeds (0..N-1) per configuration")
    run.add_argument("--epochs", type=positive_int, default=2)
    run.add_argument("--batch-size", type=positive_int, default=64)
    run.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate")
    if with_configs:
        run.add_argument("--configs", nargs="+", metavar="NAME", default=None,
                         help="run only these configurations (default: all)")
    run.add_argument("--torch-parity", action="store_true",
                     help="reproduce the seed notebook's protocol as written (PyTorch init, "
                          "schedulers stepped per epoch, 0.5/0.5 normalisation, the test set "
                          "as validation set, its dropout model without ReLUs); see README")
    speed = parser.add_argument_group("speed (results do not depend on these beyond rounding)")
    speed.add_argument("--seed-batching", choices=("auto", "vmap", "map", "sequential"),
                       default="auto",
                       help="how seeds share the device: vmap (one wide program), map "
                            "(lax.map inside the program), sequential (one program per seed); "
                            "auto = vmap on GPU, sequential on CPU (measured fastest there)")
    speed.add_argument("--deterministic", action="store_true",
                       help="GPU only: add XLA_FLAGS=--xla_gpu_deterministic_ops=true so reruns "
                            "give identical numbers (slower); CPU runs are always deterministic")
    speed.add_argument("--conv", choices=("auto", "winograd", "patches", "xla"), default="auto",
                       help="how training and evaluation compute the 3x3 convolutions: winograd "
                            "(F(2x2,3x3) as matmuls), patches (im2col + matmul) or xla (lax.conv); "
                            "auto = "
                            "winograd on CPU (lax.conv's weight gradient is ~40x slower inside "
                            "lax.scan there), xla on GPU")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("results"),
                     help="results go to OUT/<study>/")
    out.add_argument("--fresh", action="store_true",
                     help="discard earlier results and checkpoints in OUT/<study>/ and start over")
    out.add_argument("--all-pairs", action="store_true",
                     help="compare every pair of configurations, not only each with the reference")
    out.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bars (epoch lines are still printed)")
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses and fills the defaults that depend on --torch-parity and the backend."""
    return resolve_defaults(parser.parse_args(argv))


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    if getattr(args, "configs", None) is None:
        args.configs = None
    if args.val_size is None:
        args.val_size = 0 if args.torch_parity else 5000
    if args.normalization is None:
        args.normalization = "half" if args.torch_parity else "dataset"
    if getattr(args, "deterministic", False):
        # Must be set before the backend starts (the first device use below).
        flags = os.environ.get("XLA_FLAGS", "")
        if "--xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()
    if "auto" in (args.seed_batching, args.conv):
        import jax

        gpu = jax.default_backend() == "gpu"
        if args.seed_batching == "auto":
            args.seed_batching = "vmap" if gpu else "sequential"
        if args.conv == "auto":
            args.conv = "xla" if gpu else "winograd"
    return args
