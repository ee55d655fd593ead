"""The seed notebook's PyTorch models, restated from ``shared/seed/HW1.md``.

``SeedCNN`` is its ``CNN`` (also ``CNN_Xavier`` / ``CNN_Kaiming`` after
``init_weights``); ``SeedDropoutCNN`` is its ``CNN_Dropout``, which, as
written in the notebook, has a ReLU after the first convolution only.
Layer names follow the notebook so weights can be mapped by name.
"""

from __future__ import annotations

from benchmarks.common import require_torch

torch = require_torch("benchmarks.torch_models")

from torch import nn  # noqa: E402


class SeedCNN(nn.Module):
    """conv(3->64) relu pool, conv(64->64) relu pool, conv(64->32) relu pool, fc 512, fc 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, padding=1)
        self.relu = nn.ReLU()
        self.maxpool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv3 = nn.Conv2d(64, 32, kernel_size=3, padding=1)
        self.maxpool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(32 * 4 * 4, 512)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.relu(self.conv1(x)))
        x = self.maxpool2(self.relu(self.conv2(x)))
        x = self.maxpool3(self.relu(self.conv3(x)))
        x = x.view(-1, 32 * 4 * 4)
        x = self.relu(self.fc1(x))
        return self.fc2(x)

    def layers(self) -> dict[str, nn.Module]:
        return {"conv1": self.conv1, "conv2": self.conv2, "conv3": self.conv3,
                "fc1": self.fc1, "fc2": self.fc2}


class SeedDropoutCNN(nn.Module):
    """The notebook's CNN_Dropout, exactly: only conv1 is followed by a ReLU."""

    def __init__(self, p: float = 0.3) -> None:
        super().__init__()
        self.layers_ = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 64, kernel_size=3, padding=1),
            nn.Dropout2d(p),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(64, 32, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 512),
            nn.Dropout(p),
            nn.Linear(512, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers_(x)

    def layers(self) -> dict[str, nn.Module]:
        seq = self.layers_
        return {"conv1": seq[0], "conv2": seq[3], "conv3": seq[6], "fc1": seq[9], "fc2": seq[11]}


def init_weights(model: nn.Module, scheme: str) -> nn.Module:
    """The notebook's re-initialisation of every weight (biases keep PyTorch's default).

    scheme: "default" (leave as constructed), "xavier" (``xavier_normal_``) or
    "kaiming" (``kaiming_normal_``).
    """
    if scheme == "default":
        return model
    init = {"xavier": nn.init.xavier_normal_, "kaiming": nn.init.kaiming_normal_}[scheme]
    for layer in model.layers().values():
        init(layer.weight)
    return model
