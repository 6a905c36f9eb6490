"""Canonical weights of a torch twin: its state_dict as numpy, loaded back strictly."""

from __future__ import annotations

import numpy as np
import torch

from shared.data.torch_data import to_tensors
from weightmap import check_names_and_shapes


def get_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}


def set_weights(model: torch.nn.Module, weights: dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    check_names_and_shapes({k: tuple(v.shape) for k, v in state.items()}, weights)
    with torch.no_grad():
        for name, tensor in state.items():
            tensor.copy_(torch.as_tensor(np.asarray(weights[name])).to(tensor.dtype))


def forward_numpy(impl, model: torch.nn.Module, batch: dict[str, np.ndarray], training: bool) -> dict:
    model.train(training)
    device = next(model.parameters()).device
    with torch.set_grad_enabled(False):
        outputs = impl.call(model, to_tensors(batch, device), training=training)
    return {k: v.detach().cpu().numpy() for k, v in outputs.items()}
