"""The seed notebook's PyTorch training loop, restated (the reference we compare with).

As in ``shared/seed/HW1.md``: its CNN (or CNN_Dropout), a DataLoader over a
Dataset that converts and normalises each sample like ``ToTensor()`` +
``Normalize((0.5,)*3, (0.5,)*3)``, batch 64 with shuffling, Adam, the scheduler
stepped once per epoch, the test set evaluated after every epoch, one model at
a time. torchvision is not used (its PyPI build does not load beside the torch
on these machines); images come from jaxcnn's loaders, which read the same
sources.

    python -m benchmarks.torch_reference --data ../shared/data/cifar10-jpeg.tar.xz \
        --init xavier --seeds 0 1 2 --epochs 2 --json runs/torch_xavier.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import require_torch
from jaxcnn.cli import HelpFormatter

torch = require_torch("python -m benchmarks.torch_reference")

from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from benchmarks.torch_models import SeedCNN, SeedDropoutCNN, init_weights  # noqa: E402


class SeedTransformDataset(Dataset):
    """uint8 HWC images; each sample converted as ToTensor() then Normalize(0.5, 0.5)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[index]).permute(2, 0, 1).float().div(255.0)
        return (x - 0.5) / 0.5, int(self.labels[index])


def make_model(init: str, dropout: bool) -> nn.Module:
    return init_weights(SeedDropoutCNN() if dropout else SeedCNN(), init)


def make_scheduler(opt: torch.optim.Optimizer, name: str):
    lr_sched = torch.optim.lr_scheduler
    if name == "step":
        return lr_sched.StepLR(opt, step_size=5, gamma=0.1)
    if name == "exponential":
        return lr_sched.ExponentialLR(opt, gamma=0.1)
    if name == "cyclic":
        return lr_sched.CyclicLR(opt, base_lr=0.001, max_lr=0.005, gamma=0.1)
    if name == "none":
        return None
    raise ValueError(name)


def evaluate(model: nn.Module, loader: DataLoader, device: str = "cpu") -> tuple[float, float]:
    """The seed's evaluate: mean of batch losses, accuracy in percent."""
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    crit = nn.CrossEntropyLoss()
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            outputs = model(images)
            loss_sum += crit(outputs, labels).item()
            correct += (outputs.argmax(1) == labels).sum().item()
            total += labels.size(0)
    return loss_sum / len(loader), 100.0 * correct / total


def train_one(seed: int, args, train_set: Dataset, test_loader: DataLoader) -> dict:
    torch.manual_seed(seed)
    model = make_model(args.init, args.dropout).to(args.torch_device)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = make_scheduler(opt, args.scheduler)
    crit = nn.CrossEntropyLoss()
    history = {"train_loss": [], "val_loss": [], "val_accuracy": [], "epoch_seconds": []}
    for _ in range(args.epochs):
        start = time.perf_counter()
        model.train()
        total = 0.0
        for images, labels in loader:
            images, labels = images.to(args.torch_device), labels.to(args.torch_device)
            loss = crit(model(images), labels)
            total += loss.item()
            opt.zero_grad()
            loss.backward()
            opt.step()
        history["epoch_seconds"].append(time.perf_counter() - start)
        history["train_loss"].append(total / len(loader))
        if sched is not None:
            sched.step()
        val_loss, val_acc = evaluate(model, test_loader, args.torch_device)
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_acc)
    return {"seed": seed, "test_accuracy": history["val_accuracy"][-1],
            "test_loss": history["val_loss"][-1], "history": history}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_reference",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="any jaxcnn --data source")
    parser.add_argument("--init", choices=("default", "xavier", "kaiming"), default="default",
                        help="the notebook's weight initialization")
    parser.add_argument("--dropout", action="store_true", help="the seed's CNN_Dropout")
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="Adam's (coupled L2) weight_decay; the notebook's L2 run: 0.003")
    parser.add_argument("--scheduler", choices=("step", "exponential", "cyclic", "none"),
                        default="step", help="the notebook's scheduler, stepped per epoch")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="torch.manual_seed values, one model each")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="train on a stratified subset of this many images (as jaxcnn's flag)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where the model trains")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    args.torch_device = "cuda" if args.device == "gpu" else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)

    from jaxcnn.data import load_dataset
    from jaxcnn.data.splits import stratified_indices

    ds = load_dataset(args.data)
    train_images, train_labels = ds.train_images, ds.train_labels
    if args.train_examples:
        keep = stratified_indices(train_labels, args.train_examples, np.random.default_rng(0))
        train_images, train_labels = train_images[keep], train_labels[keep]
    train_set = SeedTransformDataset(train_images, train_labels)
    test_loader = DataLoader(SeedTransformDataset(ds.test_images, ds.test_labels),
                             batch_size=args.batch_size, shuffle=False)
    runs = []
    start = time.perf_counter()
    for seed in args.seeds:
        run = train_one(seed, args, train_set, test_loader)
        print(f"seed {seed}: test accuracy {run['test_accuracy']:.2f}%  "
              f"epoch seconds {[round(s, 1) for s in run['history']['epoch_seconds']]}",
              flush=True)
        runs.append(run)
    wall = time.perf_counter() - start
    print(f"wall {wall:.1f} s for {len(args.seeds) * args.epochs} model-epochs "
          f"(training and per-epoch test evaluation, data loading excluded)")
    accs = np.array([r["test_accuracy"] for r in runs])
    print(f"mean {accs.mean():.2f} +- {accs.std(ddof=1) if len(accs) > 1 else 0:.2f} "
          f"over {len(accs)} seeds")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "torch": torch.__version__, "wall_seconds": wall,
                                         "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
