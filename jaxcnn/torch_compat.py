"""Move weights between the Flax CNN (NHWC) and the PyTorch seed models (NCHW).

Convolution kernels: Flax (kh, kw, in, out) <-> torch (out, in, kh, kw).
Dense kernels: Flax (in, out) <-> torch (out, in). fc1 also needs its input
rows permuted: Flax flattens conv3's (4, 4, 32) output in H, W, C order,
torch flattens (32, 4, 4) in C, H, W order.

Only numpy here; callers convert to and from torch tensors, so this module
imports without PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FC1_INPUT = (4, 4, 32)  # H, W, C of conv3's pooled output


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
