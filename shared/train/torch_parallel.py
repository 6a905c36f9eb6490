"""Data parallel in PyTorch: DistributedDataParallel, synchronized BatchNorm, metrics averaged over ranks.

The process group is the one torch.distributed.run set up (NCCL on GPUs, gloo on the CPU). Gradients are
averaged over ranks by DDP, so N replicas of a batch B / N each take the step one replica takes on B.
BatchNorm statistics are per replica unless sync_bn is on: on GPUs that is torch.nn.SyncBatchNorm; torch
has no CPU SyncBatchNorm, so on the CPU GlobalBatchNorm below all-reduces the moments itself.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


def init_process_group(backend: str, world) -> None:
    """The process group over torchrun's store, with a key prefix of its own for each restart.

    With plain env:// init (torch 2.14), a restarted gloo group could read the dead group's addresses
    from the store: when the new rank 1 arrived before the new rank 0, it connected to the old rank 0's
    port and failed ("Connection refused"), so --max-restarts never recovered.
    """
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent hosts it
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world.world_size,
        is_master=world.rank == 0 and not agent_store,
        timeout=timedelta(minutes=30),
    )
    dist.init_process_group(
        backend,
        store=dist.PrefixStore(f"zoo/attempt_{world.restart}", store),
        rank=world.rank,
        world_size=world.world_size,
    )


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks. Every rank uses the sum, so its gradient is the sum of every rank's gradient."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all ranks, for gloo on the CPU: the moments of the whole batch
    (two all-reduces, mean then centred squares, as torch's own two-pass variance), running statistics
    updated with the unbiased variance as nn.BatchNorm does. Names and buffers are nn.BatchNorm's."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...); found {x.dim()}D")

    def forward(self, x):
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]  # every axis but channels: (N, C, ...) -> (C,)
        shape = [1, -1] + [1] * (x.dim() - 2)  # (1, C, 1, ...)
        count = _AllReduceSum.apply(torch.tensor([x.numel() / x.size(1)], dtype=x.dtype, device=x.device))
        mean = _AllReduceSum.apply(x.sum(dims)) / count  # (C,)
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / count  # biased, (C,)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * count / (count - 1), alpha=m)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer made to normalise over the global batch; parameters and buffers are kept
    (the same tensors, the same state_dict names)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        if module.momentum is None:
            raise ValueError(
                "sync_bn on the CPU needs BatchNorm with a momentum (momentum=None is cumulative)"
            )
        converted = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        converted.running_mean, converted.running_var = module.running_mean, module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, convert_batch_norm(child, device))
    return module


def has_sparse_gradients(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Embedding | nn.EmbeddingBag) and m.sparse for m in model.modules())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel over the process group; rank 0's weights are broadcast at construction."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over ranks (gloo has no AVG reduction: a sum divided by the world size)."""
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()
