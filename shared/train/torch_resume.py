"""A torch Session's whole training state as numpy arrays + JSON (shared/train/snapshot.py stores them).

Arrays: model.<state_dict name>, optimizer.<param index>.<key>, rng.{torch,cuda,numpy,python}.rank<r>.
JSON: the optimizer's param groups and non-tensor state, the schedule, the GradScaler. Every rank's RNG
states are gathered to rank 0, which alone writes; each rank restores its own. Weights and optimizer
state are the same on every rank (DistributedDataParallel keeps them so), so rank 0's are saved.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist

from shared.torch_weights import set_weights


def _gather(tensor: torch.Tensor, session) -> list[torch.Tensor]:
    """`tensor` from every rank (a byte tensor of the same size everywhere), on rank 0's side."""
    world = session.world
    if not world.distributed:
        return [tensor]
    device = session.device if dist.get_backend() == "nccl" else torch.device("cpu")
    local = tensor.to(device)
    gathered = [torch.empty_like(local) for _ in range(world.world_size)]
    dist.all_gather(gathered, local)
    return [t.cpu() for t in gathered]


def _rng_arrays(session) -> dict[str, np.ndarray]:
    """Every generator's state, per rank. numpy's and Python's are packed into float64 arrays (their
    32-bit words are exact in float64) so that all of them travel through one all_gather each."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss = random.getstate()
    local = {
        "torch": torch.get_rng_state(),
        "numpy": torch.tensor([*keys.tolist(), pos, has_gauss, cached], dtype=torch.float64),
        "python": torch.tensor(
            [version, *words, float("nan") if gauss is None else gauss], dtype=torch.float64
        ),
    }
    if session.device.type == "cuda":
        local["cuda"] = torch.cuda.get_rng_state(session.device)
    arrays = {}
    for kind, tensor in local.items():
        for rank, value in enumerate(_gather(tensor, session)):
            arrays[f"rng.{kind}.rank{rank}"] = value.numpy()
    return arrays


def capture(session) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, json) of the session's model, optimizer, schedule, scaler and RNGs. Call on every rank."""
    arrays = {f"model.{k}": v.detach().cpu().numpy() for k, v in session.model.state_dict().items()}
    optimizer = session.optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, state in optimizer["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                arrays[f"optimizer.{index}.{key}"] = value.detach().cpu().numpy()
            else:
                scalars.setdefault(str(index), {})[key] = value
    arrays.update(_rng_arrays(session))
    schedule = {k: v for k, v in session.scheduler.state_dict().items() if k != "lr_lambdas"}
    return arrays, {
        "optimizer": {"param_groups": optimizer["param_groups"], "scalars": scalars},
        "schedule": schedule,
        "scaler": session.scaler.state_dict() if session.scaler else None,
    }


def restore(session, arrays: dict[str, np.ndarray], state: dict) -> None:
    """Put a snapshot back into a freshly built session (before its first step)."""
    set_weights(session.model, {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")})
    saved = state["optimizer"]
    per_param: dict[int, dict] = {}
    for name, value in arrays.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            per_param.setdefault(int(index), {})[key] = torch.from_numpy(value.copy())
    for index, values in saved["scalars"].items():
        per_param.setdefault(int(index), {}).update(values)
    session.optimizer.load_state_dict({"state": per_param, "param_groups": saved["param_groups"]})
    session.scheduler.load_state_dict({**session.scheduler.state_dict(), **state["schedule"]})
    if session.scaler and state.get("scaler"):
        session.scaler.load_state_dict(state["scaler"])
    rank = session.world.rank
    torch.set_rng_state(torch.from_numpy(arrays[f"rng.torch.rank{rank}"].copy()))
    if session.device.type == "cuda" and f"rng.cuda.rank{rank}" in arrays:
        torch.cuda.set_rng_state(torch.from_numpy(arrays[f"rng.cuda.rank{rank}"].copy()), session.device)
    packed = arrays[f"rng.numpy.rank{rank}"]
    np.random.set_state(
        ("MT19937", packed[:624].astype(np.uint32), int(packed[624]), int(packed[625]), float(packed[626]))
    )
    packed = arrays[f"rng.python.rank{rank}"]
    gauss = None if np.isnan(packed[-1]) else float(packed[-1])
    random.setstate((int(packed[0]), tuple(int(w) for w in packed[1:-1]), gauss))
