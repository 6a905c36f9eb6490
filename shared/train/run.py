"""One training run, either framework: data -> twin -> epochs -> test metrics -> checkpoint + logs + plots.

Framework-free: the twin's trainer module (shared/train/{torch,keras}_trainer.py) is imported by name.
Run folder:
    checkpoint/        the checkpoint (shared/checkpoint.py), written atomically at the end
    metrics.csv        one row per epoch;  steps.csv  one row per optimizer step
    tensorboard/       event files (epoch/* and step/* scalars)
    curves.png         loss and validation metrics
    result.json        test metrics, timings, paths
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import shutil
import time
from pathlib import Path

from shared import checkpoint, plots
from shared.data import load as load_data
from shared.data.iterator import BatchIterator
from shared.errors import UserError
from shared.metrics import evaluate_arrays
from shared.recipe import config_to_dict
from shared.train.logger import RunLogger


def model_card(spec, config, fw: str, data: str, test: dict, epochs: int) -> str:
    """A Hugging Face style model card for a trained checkpoint."""
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in test.items())
    metric_names = "\n".join(f"  - {k}" for k in test)
    return f"""---
library_name: zoo
tags:
  - {spec.name.replace("/", "-")}
  - {spec.task}
  - trained-in-{fw}
datasets:
  - {data}
metrics:
{metric_names}
license: apache-2.0
---

# {spec.name} ({getattr(config, "variant", spec.name.split("/")[-1])})

Trained in **{fw}** on `{data}` for {epochs} epoch(s). The weights are framework-neutral (canonical torch
names in safetensors): load them in either twin with `tools/evaluate.py CKPT --fw keras|torch`.

| metric (test) | value |
| --- | --- |
{metrics}
"""


def train(spec, config, fw: str, *, data: str | None = None, data_kwargs: dict | None = None, out: str | Path,
          gpus: int = 0,
          threads: int | None = None, progress: bool = True, log_steps: bool = True, overwrite: bool = False) -> dict:
    """Train `spec` in framework `fw` with `config`; returns result.json's content."""
    data = data or spec.dataset
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"run folder {out} exists and is not empty: pass another --out or --overwrite")
    dataset = load_data(data, **(data_kwargs or {}))
    splits, state = spec.task_module.prepare(dataset, config)
    for required in ("train", "validation", "test"):
        if required not in splits:
            raise UserError(f"dataset {data} has no {required!r} split")

    trainer = importlib.import_module(f"shared.train.{fw}_trainer")
    device = trainer.setup(gpus, threads, config.seed)
    model = spec.build(fw, config)
    iterator = BatchIterator(splits["train"], config.batch_size, seed=config.seed, drop_last=True)
    if len(iterator) == 0:
        raise UserError(f"the training split has {iterator.num_examples} examples, fewer than one batch of "
                        f"{config.batch_size}: pass a smaller --batch-size")
    session = trainer.Session(spec, config, model, total_steps=config.epochs * len(iterator), device=device)

    if out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(out)
    steps: list[dict] = []

    def on_step(step: int, loss: float, lr: float) -> None:
        steps.append({"step": step, "loss": loss, "lr": lr})
        if log_steps:
            logger.scalar("step/loss", loss, step)
            logger.scalar("step/lr", lr, step)

    start = time.perf_counter()
    epoch_seconds = []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        train_loss = session.train_epoch(list(iterator.batches(epoch)), epoch, on_step, progress)
        epoch_seconds.append(time.perf_counter() - t0)
        val = evaluate_arrays(spec, session.model, splits["validation"], config, config.eval_batch_size)
        row = {"epoch": epoch + 1, "step": session.step, "train_loss": train_loss,
               **{f"val_{k}": v for k, v in val.items()}, "seconds": epoch_seconds[-1]}
        logger.epoch(row)
        if progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
            print(f"[{fw}] epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, {shown}, "
                  f"{epoch_seconds[-1]:.1f}s", flush=True)
    train_seconds = time.perf_counter() - start
    test = evaluate_arrays(spec, session.model, splits["test"], config, config.eval_batch_size)

    with open(out / "steps.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "lr"])
        writer.writeheader()
        writer.writerows(steps)
    plots.training_curves(steps, logger.rows, out / "curves.png", f"{spec.name} in {fw} on {data}")
    logger.close()

    meta = {"framework": fw, "data": data, "data_kwargs": data_kwargs or {}, "epochs": config.epochs, "seed": config.seed,
            "recipe": {f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
            "metrics": {"test": test, "validation": logger.rows[-1] if logger.rows else {}},
            "train_seconds": train_seconds, "epoch_seconds": epoch_seconds, "device": str(device)}
    extra = {"preprocessing.json": state}
    extra.update(getattr(spec.task_module, "checkpoint_files", lambda s: {})(state))
    ckpt = checkpoint.save(out / "checkpoint", model_name=spec.name, config=config_to_dict(config),
                           weights=spec.get_weights(session.model), meta=meta, extra_files=extra,
                           card=model_card(spec, config, fw, data, test, config.epochs))
    result = {"model": spec.name, "framework": fw, "data": data, "test": test, "steps": session.step,
              "train_seconds": train_seconds, "epoch_seconds": epoch_seconds, "checkpoint": str(ckpt), "curves": str(out / "curves.png"),
              "tensorboard": str(out / "tensorboard"), "run": str(out)}
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
