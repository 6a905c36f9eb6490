"""Evaluate a checkpoint in either framework (what tools/evaluate.py runs)."""

from __future__ import annotations

import importlib

from shared import hub, tasks
from shared.data import load as load_data
from shared.errors import UserError
from shared.metrics import evaluate_arrays
from shared.models import checkpoint_config, load_model


def evaluate_checkpoint(
    path: str, fw: str, data: str | None = None, split: str = "test", threads: int | None = None
):
    """Metrics of a checkpoint on a split, computed by framework-free code from the twin's numpy outputs."""
    ckpt = hub.load(path)  # verify (and fetch a store URL) before importing any framework
    spec, _ = checkpoint_config(ckpt)  # an unknown model or a bad config.json fails here, framework-free
    # By default the data the checkpoint was trained on, generated with the same loader arguments; loaded
    # before the framework, so a dataset that cannot be had fails in a second, not after the setup.
    kwargs = ckpt["meta"].get("data_kwargs", {}) if data is None else {}
    data = data or ckpt["meta"].get("data") or spec.dataset
    if not isinstance(data, str) or not isinstance(kwargs, dict):
        raise UserError(
            f"{ckpt['folder']}/meta.json names data {data!r} with loader arguments {kwargs!r}; pass --data NAME"
        )
    dataset = load_data(data, **kwargs)
    trainer = importlib.import_module(f"shared.train.{fw}_trainer")
    trainer.setup(0, threads, 0)
    spec, config, model, ckpt = load_model(ckpt["folder"], fw)
    state = tasks.load_state(spec, ckpt)
    splits, _ = spec.task_module.prepare(dataset, config, state)
    if split not in splits:
        raise UserError(f"dataset {data} has no split {split!r}; it has {', '.join(splits)}")
    metrics = evaluate_arrays(spec, model, splits[split], config, config.eval_batch_size)
    return {
        "model": spec.name,
        "framework": fw,
        "trained_in": ckpt["meta"].get("framework"),
        "data": data,
        "split": split,
        "metrics": metrics,
        "checkpoint": str(ckpt["folder"]),
    }
