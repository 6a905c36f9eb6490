"""The PyTorch trainer: an explicit loop running the recipe in the model's Config.

One process trains on the CPU or one GPU. Under torch.distributed.run (tools/train.py --gpus N or
--cpu-replicas N starts it, or `torchrun` by hand) every process drives one replica: the model is wrapped
in DistributedDataParallel over NCCL (GPUs) or gloo (CPU), and the batch iterator gives each rank its
slice of every global batch (shared/train/torch_parallel.py). Mixed precision is torch.autocast, with a
GradScaler for fp16; --compile is torch.compile.

On a GPU the batches are prepared ahead of the step (shared/train/torch_input.py: pinned memory, copies on a
side stream), convolutional twins run in channels_last, and the host never waits for the device within a
step: the losses stay on the device and are read every `read_every` steps and at the epoch's end, when
on_step (steps.csv, TensorBoard, snapshots) and the progress bar receive them, one call per step in order.
On the CPU the losses are read at every step (reading costs nothing there).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from shared.data.prefetch import stream
from shared.data.torch_data import to_tensors
from shared.errors import UserError
from shared.train import torch_input, torch_parallel
from shared.train.distributed import World, torchrun_world
from shared.train.schedule import lr_at
from shared.train.threads import default_threads

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
READ_EVERY = 25  # steps between reads of the losses on a GPU (the host waits for the device only then)


@dataclass
class Runtime:
    """What setup() found: this process's device and its place among the replicas."""

    device: torch.device
    world: World

    @property
    def replicas(self) -> int:
        return self.world.world_size

    @property
    def shard(self) -> tuple[int, int]:
        """(rank, world size) for the batch iterator: each process takes its slice of every global batch."""
        return self.world.rank, self.world.world_size


def check_request(gpus: int | None, precision: str = "fp32", local_rank: int = 0) -> torch.device:
    """The device this process trains on; UserError when the machine cannot do what was asked.
    gpus=None (no --gpus flag): the GPUs under torchrun when there are any, else the CPU."""
    found = torch.cuda.device_count()
    if gpus is None:
        gpus = 1 if found and torchrun_world() is not None else 0
    if gpus > found:
        raise UserError(
            f"--gpus {gpus} asked for {gpus} GPU(s) but torch finds {found} on this machine; "
            f"use --gpus {found} or, for data parallel on the CPU, --cpu-replicas N"
        )
    device = torch.device("cuda", local_rank) if gpus else torch.device("cpu")
    if precision not in AUTOCAST_DTYPES:
        raise UserError(f"--precision must be fp32, bf16 or fp16; found {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise UserError(
            "--precision fp16 is for GPUs (CPUs have no fast float16 arithmetic, and fp16 needs "
            "loss scaling); on the CPU use --precision bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(
            f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16 or fp32"
        )
    return device


def setup(
    gpus: int | None,
    threads: int | None,
    seed: int,
    *,
    cpu_replicas: int = 1,
    precision: str = "fp32",
    deterministic: bool = False,
) -> Runtime:
    """Threads (default: the cores this process may use), determinism, the device and (under torchrun) the
    process group; seeds every generator. Each torch process is one replica: gpus > 1 or cpu_replicas > 1
    need the processes torchrun starts."""
    world = torchrun_world() or World()
    torch.set_num_threads(threads or default_threads())
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS reductions in a fixed order
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    if ((gpus or 0) > 1 or cpu_replicas > 1) and torchrun_world() is None:
        raise UserError(
            f"{max(gpus or 0, cpu_replicas)} torch replicas are {max(gpus or 0, cpu_replicas)} processes: "
            "start them with tools/train.py (it runs torch.distributed.run) or with torchrun"
        )
    device = check_request(gpus, precision, world.local_rank)
    if device.type == "cuda" and not deterministic:
        torch.backends.cudnn.benchmark = True  # the fastest kernels for each shape (chosen at first use)
    if world.distributed and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch_parallel.init_process_group("nccl" if device.type == "cuda" else "gloo", world)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return Runtime(device, world)


def make_optimizer(model: torch.nn.Module, config) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.sgd_momentum)
    betas = (config.adam_beta1, config.adam_beta2)
    # AdamW with weight_decay=0 is Adam; decoupled decay is the one semantics both frameworks share.
    return torch.optim.AdamW(
        params, lr=config.lr, betas=betas, eps=config.adam_epsilon, weight_decay=config.weight_decay
    )


def loss_and_grads(impl, model: torch.nn.Module, batch: dict, config) -> tuple[float, dict[str, np.ndarray]]:
    """Train-mode loss and gradients per canonical name on one numpy batch (parameters only)."""
    model.train()
    model.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    tensors = to_tensors(batch, device)
    loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
    loss.backward()
    grads = {
        n: p.grad.detach().cpu().numpy().copy() for n, p in model.named_parameters() if p.grad is not None
    }
    return float(loss.detach()), grads


def train_step(
    impl,
    model,
    optimizer,
    batch_tensors: dict,
    config,
    *,
    precision: str = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> torch.Tensor:
    """Forward (under autocast unless fp32), loss, backward, clipping, update. `model` may be wrapped in
    DistributedDataParallel or torch.compile; the loss is this replica's."""
    optimizer.zero_grad(set_to_none=True)
    device_type = next(iter(batch_tensors.values())).device.type
    with torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision], enabled=precision != "fp32"):
        loss = impl.compute_loss(impl.call(model, batch_tensors, training=True), batch_tensors, config)
    if scaler is not None:  # fp16: scale the loss so that small gradients survive, unscale before clipping
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if config.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skipped when a gradient is inf/nan; the scale then shrinks
        scaler.update()
    else:
        optimizer.step()
    return loss.detach()


def gradient_norm(model: torch.nn.Module) -> float:
    """The global L2 norm of the parameters' current gradients, in float64."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norms = [torch.linalg.vector_norm(g.to_dense() if g.is_sparse else g, dtype=torch.float64) for g in grads]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class Session:
    """A model, its optimizer and schedule, trained on numpy batches from a given position.

    self.model is the bare twin (weights, evaluation, checkpoints); self.trained is what the steps run
    through: the same module wrapped in DistributedDataParallel and/or torch.compile when asked.
    """

    def __init__(
        self,
        spec,
        config,
        runtime: Runtime,
        total_steps: int,
        *,
        precision: str = "fp32",
        compile: bool = False,
        sync_bn: bool = False,
        adapt=None,
        track_grad_norm: bool = False,
    ):
        self.spec, self.config, self.device, self.world = spec, config, runtime.device, runtime.world
        self.precision, self.impl = precision, spec.impl("torch")
        self.model = spec.build("torch", config).to(self.device)
        if adapt is not None:  # fine-tuning (shared/train/finetune.py): --init weights, --freeze
            adapt(self.model)  # before DDP and the optimizer, which takes the requires_grad parameters
        if self.device.type == "cuda" and torch_input.is_convolutional(self.model):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.read_every = 1 if self.device.type == "cpu" else READ_EVERY
        if self.world.rank > 0:  # the same initial weights everywhere; each rank its own dropout stream
            torch.manual_seed(
                int(np.random.SeedSequence([config.seed, self.world.rank]).generate_state(1)[0])
            )
        self.trained = self.model
        if self.world.distributed:
            if torch_parallel.has_sparse_gradients(self.model) and self.device.type == "cuda":
                raise UserError(
                    "sparse embedding gradients cannot be all-reduced over NCCL: "
                    "pass --set sparse_embeddings=false for multi-GPU training"
                )
            if sync_bn:
                self.model = torch_parallel.convert_batch_norm(self.model, self.device)
            self.trained = torch_parallel.wrap(self.model, self.device)
        if compile:
            self.trained = torch.compile(self.trained)
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_at(config, step, total_steps) / config.lr
        )
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None
        self.step = 0
        # Opt-in (shared/parity/trainers.py): on_step may read the global norm of the step's gradient
        # (after clipping, as the update applied it), in float64.
        self.track_grad_norm, self.grad_norm = track_grad_norm, None

    def train_epoch(self, iterator, epoch: int, start: int = 0, on_step=None, progress: bool = True) -> float:
        """Train on the epoch's batches from `start` (the iterator gives this rank its slices); returns their
        mean loss, averaged over ranks. on_step(step, loss, lr) runs once per update, in order: after the
        update on the CPU, at the next read of the losses on a GPU (every `read_every` steps, counted from
        step 0 of the run, and at the epoch's end)."""
        self.model.train()
        losses, pending = [], []  # pending: (step, loss on the device, lr, grad norm) not yet read
        # the sum of `losses`, for the bar (a mean over the list at every read would grow with the epoch)
        total = [0.0]
        bar = tqdm(
            desc=f"torch epoch {epoch + 1}",
            unit="batch",
            total=len(iterator) - start,
            disable=not progress or not self.world.is_main,
            leave=False,
        )

        def read() -> None:
            if not pending:
                return
            values = torch.stack([loss.float() for _, loss, _, _ in pending])
            if self.world.distributed:
                values = torch_parallel.mean_over_ranks(values)
            for (step, _, lr, norm), value in zip(pending, values.tolist()):
                losses.append(value)
                total[0] += value
                self.grad_norm = norm
                if on_step:
                    on_step(step, value, lr)
            if not bar.disable:
                bar.update(len(pending))
                bar.set_postfix(loss=f"{total[0] / len(losses):.4f}")
            pending.clear()

        rows, decode = stream(iterator, epoch, start)  # stored rows read ahead; converted on the device
        batches = torch_input.device_batches(
            rows, lambda batch: to_tensors(batch, self.device, decode), self.device
        )
        try:
            for tensors in batches:
                lr = self.optimizer.param_groups[0]["lr"]
                loss = train_step(
                    self.impl,
                    self.trained,
                    self.optimizer,
                    tensors,
                    self.config,
                    precision=self.precision,
                    scaler=self.scaler,
                )
                self.scheduler.step()
                norm = gradient_norm(self.model) if self.track_grad_norm else None  # opt-in: a host read
                pending.append((self.step, loss, lr, norm))
                self.step += 1
                if self.step % self.read_every == 0:
                    read()
            read()
        finally:
            if hasattr(batches, "close"):
                batches.close()
            bar.close()
        return float(np.mean(losses)) if losses else float("nan")

    def barrier(self) -> None:
        if self.world.distributed:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
