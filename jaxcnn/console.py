"""The ``jaxcnn`` command: every entry point under one name, plus evaluate and predict.

    jaxcnn --help
    jaxcnn all --data synthetic --seeds 2              # = python -m experiments.all
    jaxcnn regularization --seeds 5                    # = python -m experiments.regularization
    jaxcnn sweep --param lr=3e-4,1e-3,3e-3             # = python -m experiments.sweep
    jaxcnn report --out results                        # = python -m experiments.report
    jaxcnn run mystudy.py:study --seeds auto           # a jaxcnn.studies.Study of your own
    jaxcnn evaluate results/regularization baseline --seed 0
    jaxcnn predict results/regularization baseline --seed 0 cat.png ship.png

The training and report commands hand their arguments unchanged to the mains of
``jaxcnn/commands/`` and ``jaxcnn/cli.py`` (one parser each, so the flags cannot
drift apart; ``python -m experiments.<name>`` runs the same mains); ``evaluate`` and
``predict`` load a finished configuration's saved parameters
(:func:`jaxcnn.inference.load_model`). A user's mistake (a missing folder, an unknown
configuration, a seed that was not trained, an unreadable image) ends with one line and
exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxcnn.errors import JaxcnnError

PROG = "jaxcnn"


def _study(name: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from jaxcnn.cli import study_main
        from jaxcnn.studies import STUDIES

        return study_main(STUDIES[name], argv)

    return run


def _module_main(module: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        import importlib

        return importlib.import_module(module).main(argv)

    return run


# name -> (one-line help, the existing main it calls with the remaining arguments)
DELEGATED: dict[str, tuple[str, Callable[[list[str]], int]]] = {
    "regularization": ("train and compare baseline, l2 and dropout over seeds "
                       "(python -m experiments.regularization)", _study("regularization")),
    "initialization": ("train and compare lecun, glorot, he and torch's default "
                       "(python -m experiments.initialization)", _study("initialization")),
    "schedules": ("train and compare constant, step, exponential and cyclic rates "
                  "(python -m experiments.schedules)", _study("schedules")),
    "all": ("the three studies together, then the report (python -m experiments.all)",
            _module_main("jaxcnn.commands.all_studies")),
    "sweep": ("one hyperparameter (or a grid of two) over values "
              "(python -m experiments.sweep)", _module_main("jaxcnn.commands.sweep")),
    "report": ("OUT/REPORT.md from the three studies (python -m experiments.report)",
               _module_main("jaxcnn.commands.report")),
    "run": ("a study of your own: jaxcnn run FILE.py:NAME (or module:NAME) with a study's "
            "flags", _module_main("jaxcnn.commands.run")),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: the delegated commands (listed only) and evaluate/predict."""
    from jaxcnn.cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=HelpFormatter,
        description="Multi-seed CIFAR-10 studies in JAX: train, report, and use the trained "
                    "models. `jaxcnn COMMAND --help` shows a command's flags.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (text, _) in DELEGATED.items():
        # Listed for --help; their arguments go to their own parsers (see main).
        commands.add_parser(name, help=text, add_help=False)
    evaluate = commands.add_parser(
        "evaluate", formatter_class=HelpFormatter,
        help="test loss and accuracy of a trained configuration, per seed",
        description="Test loss and accuracy of a finished configuration's saved parameters on a "
                    "data set's test split, per seed.")
    _model_arguments(evaluate)
    evaluate.add_argument("--data", default=None, metavar="SPEC",
                          help="the data set whose test split to evaluate (cifar10, synthetic "
                               "or a path; default: the --data the study was trained with, "
                               "read from OUT/STUDY/results.json)")
    predict = commands.add_parser(
        "predict", formatter_class=HelpFormatter,
        help="class probabilities of image files from a trained configuration",
        description="Class probabilities of each image (any size or mode Pillow reads; "
                    "converted to the model's channels and resized to its input size) from a "
                    "finished configuration.")
    _model_arguments(predict)
    predict.add_argument("images", nargs="+", metavar="IMAGE", type=Path,
                         help="image files (png, jpg, ...)")
    predict.add_argument("--top", type=int, default=None, metavar="K",
                         help="print only the K most probable classes (default: all)")
    return parser


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_dir", type=Path, metavar="OUT/STUDY",
                        help="a study's folder under --out, e.g. results/regularization")
    parser.add_argument("config", metavar="CONFIG", help="a configuration of that study, "
                                                         "e.g. baseline")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="one trained seed (default: evaluate: every seed; predict: the "
                             "average of every seed's probabilities)")


def main(argv: Sequence[str] | None = None) -> int:
    """``jaxcnn COMMAND ...``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]][1](argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "evaluate":
            return evaluate(args.study_dir, args.config, args.seed, args.data)
        if args.top is not None and args.top < 1:
            raise JaxcnnError(f"--top {args.top}: give a positive number of classes")
        return predict(args.study_dir, args.config, args.images, args.seed, args.top)
    except JaxcnnError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


def _load(study_dir: Path, config: str):
    from jaxcnn.inference import load_model

    study_dir = Path(study_dir)
    if str(study_dir) in ("", "."):
        raise JaxcnnError("OUT/STUDY must name a study folder, e.g. results/regularization")
    return load_model(study_dir.parent, study_dir.name, config)


def _recorded(study_dir: Path) -> dict:
    """The study's results.json, or {} when it is missing or unreadable."""
    try:
        return json.loads((Path(study_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return {}


def evaluate(study_dir: Path, config: str, seed: int | None, data: str | None) -> int:
    """Prints test loss and accuracy per seed (and the value results.json recorded)."""
    from jaxcnn.data import load_dataset

    model = _load(study_dir, config)
    seeds = list(model.seeds) if seed is None else [seed]
    for s in seeds:
        model.check_seed(s)  # a seed that was not trained fails before data loads
    results = _recorded(study_dir)
    if data is None:
        data = results.get("metadata", {}).get("settings", {}).get("data")
        if not isinstance(data, str):
            raise JaxcnnError(f"{study_dir}/results.json does not say which data trained it; "
                              "pass --data (cifar10, synthetic or a path)")
    ds = load_dataset(data, show_progress=False)
    _check_classes(model, ds.class_names, data)
    recorded = {r.get("seed"): r.get("test_accuracy") for r in
                results.get("configs", {}).get(config, {}).get("seeds", [])
                if isinstance(r, dict)}
    print(f"{model.study}/{config} on {data} ({len(ds.test_labels):,} test images)")
    accuracies = []
    for s in seeds:
        loss, accuracy = model.evaluate(ds.test_images, ds.test_labels, seed=s)
        accuracies.append(accuracy)
        note = (f" (results.json: {recorded[s]:.2f}%)"
                if isinstance(recorded.get(s), int | float) else "")
        print(f"seed {s}: test accuracy {accuracy:.2f}%, test loss {loss:.4f}{note}")
    if len(accuracies) > 1:
        print(f"mean over {len(accuracies)} seeds: test accuracy {np.mean(accuracies):.2f}% "
              f"(std {np.std(accuracies, ddof=1):.2f})")
    return 0


def _check_classes(model, class_names: Sequence[str], data: str) -> None:
    if model.class_names and tuple(class_names) != tuple(model.class_names):
        raise JaxcnnError(f"{data}: classes {list(class_names)} differ from the model's "
                          f"{list(model.class_names)}; evaluate on the data it was trained on")
    if len(class_names) != model.network.num_classes:
        raise JaxcnnError(f"{data}: {len(class_names)} classes, the model has "
                          f"{model.network.num_classes}")


MODES = {1: "L", 3: "RGB", 4: "RGBA"}  # the model's channels -> the Pillow mode it reads


def read_image(path: Path, shape: Sequence[int] = (32, 32, 3)) -> tuple[np.ndarray, str]:
    """One image file -> (``shape`` (H, W, C) uint8, a note if it was converted or resized):
    the trained model's input, whatever the file's size and mode."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = shape
    if channels not in MODES:
        raise JaxcnnError(f"the model takes {channels}-channel images; predict reads image "
                          f"files as 1, 3 or 4 channels only (use load_model from Python)")
    mode = MODES[channels]
    try:
        with Image.open(path) as image:
            image.load()
            note = [] if image.mode == mode else [f"converted from {image.mode} to {mode}"]
            converted = image.convert(mode)
    except FileNotFoundError:
        raise JaxcnnError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise JaxcnnError(f"{path}: not a readable image ({err})") from None
    if converted.size != (width, height):
        note.append(f"resized from {converted.size[0]}x{converted.size[1]}")
        converted = converted.resize((width, height), Image.Resampling.BICUBIC)
    pixels = np.asarray(converted, np.uint8)
    return pixels.reshape(height, width, channels), ", ".join(note)


def predict(study_dir: Path, config: str, images: Sequence[Path], seed: int | None,
            top: int | None) -> int:
    """Prints one line per image: the classes by decreasing probability."""
    model = _load(study_dir, config)
    if seed is not None:
        model.check_seed(seed)  # a seed that was not trained: one line, before reading
    read = [read_image(Path(p), model.network.image_shape) for p in images]
    probs = model.predict_proba(np.stack([pixels for pixels, _ in read]), seed=seed)  # (N, C)
    names = model.class_names or tuple(str(c) for c in range(probs.shape[1]))
    who = f"seed {seed}" if seed is not None else f"mean of seeds {list(model.seeds)}"
    print(f"{model.study}/{config}, {who}: class probabilities")
    for path, (_, note), row in zip(images, read, probs):
        order = np.argsort(-row, kind="stable")[:top]
        classes = ", ".join(f"{names[c]} {row[c]:.4f}" for c in order)
        print(f"{path}: {classes}" + (f"  ({note})" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
