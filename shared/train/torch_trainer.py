"""The PyTorch trainer: an explicit loop running the recipe in the model's Config."""

from __future__ import annotations

import os

import numpy as np
import torch
from tqdm import tqdm

from shared.data.torch_data import to_tensors
from shared.errors import UserError
from shared.train.schedule import lr_at


def setup(gpus: int, threads: int | None, seed: int) -> torch.device:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    if gpus == 0:
        return torch.device("cpu")
    found = torch.cuda.device_count()
    if found < gpus:
        raise UserError(f"--gpus {gpus} asked for {gpus} GPU(s) but torch sees {found}; use --gpus 0 for the CPU")
    if gpus > 1 and "LOCAL_RANK" not in os.environ:
        raise UserError(f"--gpus {gpus}: multi-GPU data parallel is not available in this trainer yet; use --gpus 1")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def make_optimizer(model: torch.nn.Module, config) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.sgd_momentum)
    betas = (config.adam_beta1, config.adam_beta2)
    # AdamW with weight_decay=0 is Adam; decoupled decay is the one semantics both frameworks share.
    return torch.optim.AdamW(params, lr=config.lr, betas=betas, eps=config.adam_epsilon,
                             weight_decay=config.weight_decay)


def loss_and_grads(impl, model: torch.nn.Module, batch: dict, config) -> tuple[float, dict[str, np.ndarray]]:
    """Train-mode loss and gradients per canonical name on one numpy batch (parameters only)."""
    model.train()
    model.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    tensors = to_tensors(batch, device)
    loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
    loss.backward()
    grads = {n: p.grad.detach().cpu().numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def train_step(impl, model, optimizer, batch_tensors: dict, config) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = impl.compute_loss(impl.call(model, batch_tensors, training=True), batch_tensors, config)
    loss.backward()
    if config.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
    optimizer.step()
    return loss.detach()


class Session:
    """A model, its optimizer and schedule, trained epoch by epoch on numpy batches."""

    def __init__(self, spec, config, model, total_steps: int, device: torch.device):
        self.spec, self.config, self.model, self.device = spec, config, model.to(device), device
        self.impl = spec.impl("torch")
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_at(config, step, total_steps) / config.lr
        )
        self.step = 0

    def train_epoch(self, batches: list[dict], epoch: int, on_step=None, progress: bool = True) -> float:
        self.model.train()
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"torch epoch {epoch + 1}", unit="batch", disable=not progress, leave=False)
        for batch in bar:
            lr = self.optimizer.param_groups[0]["lr"]
            loss = float(train_step(self.impl, self.model, self.optimizer, to_tensors(batch, self.device), self.config))
            self.scheduler.step()
            total, count = total + loss, count + 1
            if on_step:
                on_step(self.step, loss, lr)
            self.step += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        return total / max(count, 1)
