"""One training run, either framework: data -> twin -> epochs -> test metrics -> checkpoint + logs + plots.

Framework-free: the twin's trainer module (shared/train/{torch,keras}_trainer.py) is imported by name.
Run folder (written by rank 0 alone when data parallel):
    checkpoint/        the checkpoint (shared/checkpoint.py), written atomically at the end
    metrics.csv        one row per epoch;  steps.csv  one row per optimizer step, appended as it trains
    tensorboard/       event files (epoch/* and step/* scalars)
    curves.png         loss and validation metrics
    result.json        test metrics, timings, paths
    snapshots/         exact-resume state every `snapshot_every` steps and at each epoch end
                       (shared/train/snapshot.py)

`batch_size` is the global batch: with N replicas each takes batch_size / N of every batch, and the
gradients are averaged, so the step is the one a single replica takes on the whole batch.
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
from shared.train import snapshot
from shared.train.distributed import restart_count
from shared.train.logger import RunLogger

PRECISIONS = ("fp32", "bf16", "fp16")
SNAPSHOT_EVERY = 200  # optimizer steps between snapshots (and one at every epoch end)


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


def _plain(value):
    """JSON's view of a value (tuples become lists), for comparing a config with a snapshot's."""
    return json.loads(json.dumps(value, default=str))


def check_request(
    spec,
    config,
    fw: str,
    *,
    out,
    replicas: int = 1,
    precision: str = "fp32",
    resume: bool = False,
    overwrite: bool = False,
    data: str | None = None,
    data_kwargs: dict | None = None,
    check_out: bool = True,
) -> dict | None:
    """Every check of a training request that needs no framework, made before any process starts or any
    file is written. Returns the snapshot state to resume from (None for a fresh run)."""
    out = Path(out)
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}; found {precision!r}")
    if data is not None:
        from shared.data import available

        known = available()
        if data not in known and data.partition("@")[0] not in known and data.partition(":")[0] not in known:
            raise UserError(f"unknown dataset {data!r}: expected one of {', '.join(known)}")
    if config.batch_size % replicas:
        raise UserError(
            f"the global batch size {config.batch_size} is not a multiple of the {replicas} replicas; "
            f"pass --batch-size {max(replicas, config.batch_size // replicas * replicas)}"
        )
    if not resume:
        if check_out and out.exists() and any(out.iterdir()) and not overwrite:
            raise UserError(
                f"run folder {out} exists and is not empty: pass another --out, --overwrite, "
                f"or --resume {out} to continue it"
            )
        return None
    if not out.is_dir():
        raise UserError(f"--resume {out}: no such run folder")
    if (out / "result.json").exists():
        raise UserError(f"--resume {out}: that run finished (it has result.json); train a new run instead")
    _, state = snapshot.read(out, tensors=False)
    snapshot.check_compatible(state, out, model=spec.name, fw=fw, world_size=replicas, precision=precision)
    differ = sorted(
        k for k, v in _plain(config_to_dict(config)).items() if state.get("config", {}).get(k) != v
    )
    if differ:
        shown = ", ".join(f"{k}={state['config'].get(k)!r} (asked {getattr(config, k)!r})" for k in differ)
        raise UserError(f"--resume {out}: the run was trained with {shown}; resume it with the same settings")
    wanted = (data or spec.dataset, _plain(data_kwargs or {}))
    if (state.get("data"), state.get("data_kwargs")) != wanted:
        raise UserError(
            f"--resume {out}: the run was trained on {state.get('data')} {state.get('data_kwargs')}; "
            f"this command asks for {wanted[0]} {wanted[1]}"
        )
    return state


def resume_request(spec, fw: str, run_dir, overrides: dict, data: str | None, out: str | None):
    """(config, data, data_kwargs) of the run to resume: its snapshot's, with any flag given checked against
    them by check_request. A run of another model or framework, or a damaged snapshot -> UserError."""
    from shared.recipe import config_from_dict

    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise UserError(
            f"--resume {run_dir} continues that run folder; drop --out {out} (or pass the same folder)"
        )
    if not Path(run_dir).is_dir():
        raise UserError(f"--resume {run_dir}: no such run folder")
    _, state = snapshot.read(run_dir, tensors=False)
    snapshot.check_compatible(
        state,
        run_dir,
        model=spec.name,
        fw=fw,
        world_size=state.get("world_size"),
        precision=state.get("precision"),
    )
    config = config_from_dict(spec.config_cls, {**state["config"], **overrides})
    return config, data or state["data"], state["data_kwargs"]


def check_devices(fw: str, gpus: int, precision: str) -> None:
    """The device checks a launcher makes before it starts worker processes (imports the framework)."""
    importlib.import_module(f"shared.train.{fw}_trainer").check_request(gpus, precision)


class StepLog:
    """steps.csv, appended row by row (flushed: a killed run keeps its steps); on resume it is cut back
    to the snapshot's step."""

    FIELDS = ("step", "loss", "lr")

    def __init__(self, path: Path, enabled: bool, keep_before: int | None = None):
        self.rows: list[dict] = []
        self._file = None
        if not enabled:
            return
        if keep_before is not None and path.is_file():
            with open(path, newline="") as f:
                self.rows = [
                    {"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"])}
                    for r in csv.DictReader(f)
                    if int(r["step"]) < keep_before
                ]
        self._file = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.FIELDS)
        self._writer.writeheader()
        self._writer.writerows(self.rows)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self._file:
            self._writer.writerow(row)
            self._file.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()


def train(
    spec,
    config,
    fw: str,
    *,
    data: str | None = None,
    data_kwargs: dict | None = None,
    out: str | Path,
    gpus: int | None = 0,
    threads: int | None = None,
    progress: bool = True,
    log_steps: bool = True,
    overwrite: bool = False,
    cpu_replicas: int = 1,
    precision: str = "fp32",
    compile: bool = False,
    sync_bn: bool = False,
    deterministic: bool = False,
    resume: bool = False,
    snapshot_every: int = SNAPSHOT_EVERY,
) -> dict:
    """Train `spec` in framework `fw` with `config`; returns result.json's content (on rank 0; other ranks
    return {"rank": r, ...} without metrics).

    gpus/cpu_replicas: replicas of this node (torch: this process is one of them, started by
    torch.distributed.run; Keras: this process drives them all). resume: continue `out` from its last
    snapshot; a run restarted by its launcher (torchrun's or tools/train.py's --max-restarts) resumes by itself.
    """
    data = data or spec.dataset
    data_kwargs = data_kwargs or {}
    out = Path(out)
    restarted = restart_count() > 0
    resume = resume or (restarted and snapshot.latest(out) is not None)
    trainer = importlib.import_module(f"shared.train.{fw}_trainer")
    runtime = trainer.setup(
        gpus,
        threads,
        config.seed,
        cpu_replicas=cpu_replicas,
        precision=precision,
        deterministic=deterministic,
    )
    world, replicas = runtime.world, runtime.replicas
    check_request(
        spec,
        config,
        fw,
        out=out,
        replicas=replicas,
        precision=precision,
        resume=resume,
        overwrite=overwrite or restarted,
        data=data,
        data_kwargs=data_kwargs,
        check_out=world.is_main,
    )
    arrays, state = snapshot.read(out) if resume else (None, None)

    dataset = load_data(data, **data_kwargs)
    splits, preprocessing = spec.task_module.prepare(dataset, config)
    for required in ("train", "validation", "test"):
        if required not in splits:
            raise UserError(f"dataset {data} has no {required!r} split")
    rank, world_size = runtime.shard
    iterator = BatchIterator(
        splits["train"], config.batch_size, seed=config.seed, drop_last=True, rank=rank, world_size=world_size
    )
    if len(iterator) == 0:
        raise UserError(
            f"the training split has {iterator.num_examples} examples, fewer than one batch of "
            f"{config.batch_size}: pass a smaller --batch-size"
        )
    session = trainer.Session(
        spec,
        config,
        runtime,
        total_steps=config.epochs * len(iterator),
        precision=precision,
        compile=compile,
        sync_bn=sync_bn,
    )
    resumer = importlib.import_module(f"shared.train.{fw}_resume")

    # Where the run stands: a fresh run starts at epoch 0, batch 0; a resumed one where its snapshot was taken.
    now = {
        "epoch": 0,
        "batch": 0,
        "losses": [0.0, 0],
        "epoch_seconds": [],
        "train_seconds": 0.0,
        "epoch_elapsed": 0.0,
        "rows": [],
    }
    if resume:
        resumer.restore(session, arrays, state["trainer"])
        session.step = state["step"]
        now.update({k: state[k] for k in now})
    if world.is_main:
        if not resume and out.exists() and (overwrite or restarted):
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(out, enabled=world.is_main)
    logger.rows = list(now["rows"])
    steps = StepLog(out / "steps.csv", world.is_main, keep_before=session.step if resume else None)
    clock = {"run": time.perf_counter(), "epoch": time.perf_counter()}
    train_seconds_before = now["train_seconds"]

    def save_snapshot() -> None:
        """Every rank takes part (torch gathers the ranks' RNG states); rank 0 writes."""
        tensors, trainer_state = resumer.capture(session)
        if not world.is_main:
            return
        elapsed = time.perf_counter() - clock["epoch"] + now["epoch_elapsed"]
        snapshot.write(
            out,
            tensors,
            {
                "model": spec.name,
                "framework": fw,
                "world_size": replicas,
                "precision": precision,
                "config": _plain(config_to_dict(config)),
                "data": data,
                "data_kwargs": _plain(data_kwargs),
                "step": session.step,
                "epoch": now["epoch"],
                "batch": now["batch"],
                "losses": now["losses"],
                "epoch_seconds": now["epoch_seconds"],
                "epoch_elapsed": elapsed,
                "rows": logger.rows,
                "train_seconds": train_seconds_before + time.perf_counter() - clock["run"],
                "trainer": trainer_state,
            },
        )

    def on_step(step: int, loss: float, lr: float) -> None:
        steps.add({"step": step, "loss": loss, "lr": lr})
        if log_steps:
            logger.scalar("step/loss", loss, step)
            logger.scalar("step/lr", lr, step)
        now["batch"] += 1
        now["losses"] = [now["losses"][0] + loss, now["losses"][1] + 1]
        if snapshot_every and session.step % snapshot_every == 0 and now["batch"] < len(iterator):
            save_snapshot()  # mid-epoch; the epoch's end has its own snapshot after validation

    for epoch in range(now["epoch"], config.epochs):
        clock["epoch"] = time.perf_counter()
        session.train_epoch(iterator, epoch, now["batch"], on_step, progress)
        train_loss = now["losses"][0] / max(now["losses"][1], 1)
        now["epoch_seconds"] = now["epoch_seconds"] + [
            time.perf_counter() - clock["epoch"] + now["epoch_elapsed"]
        ]
        row = {"epoch": epoch + 1, "step": session.step, "train_loss": train_loss}
        if world.is_main:  # whole-split metrics (BLEU, ranking) are computed once, on rank 0
            val = evaluate_arrays(spec, session.model, splits["validation"], config, config.eval_batch_size)
            row.update({f"val_{k}": v for k, v in val.items()})
        row["seconds"] = now["epoch_seconds"][-1]
        logger.epoch(row)
        session.barrier()
        if progress and world.is_main:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
            print(
                f"[{fw}] epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, {shown}, "
                f"{now['epoch_seconds'][-1]:.1f}s",
                flush=True,
            )
        now.update({"epoch": epoch + 1, "batch": 0, "losses": [0.0, 0], "epoch_elapsed": 0.0})
        clock["epoch"] = time.perf_counter()
        if snapshot_every:
            save_snapshot()
    train_seconds = train_seconds_before + time.perf_counter() - clock["run"]
    steps.close()
    if not world.is_main:
        session.barrier()
        session.close()
        return {
            "model": spec.name,
            "framework": fw,
            "rank": world.rank,
            "steps": session.step,
            "run": str(out),
        }

    test = evaluate_arrays(spec, session.model, splits["test"], config, config.eval_batch_size)
    plots.training_curves(steps.rows, logger.rows, out / "curves.png", f"{spec.name} in {fw} on {data}")
    # The task's pictures of the trained model (attention maps, segmentation overlays), next to the run.
    after = getattr(spec.task_module, "after_training", None)
    pictures = after(spec, session.model, splits, config, out, preprocessing) if after else []
    logger.close()
    epoch_seconds = now["epoch_seconds"]
    meta = {
        "framework": fw,
        "data": data,
        "data_kwargs": data_kwargs,
        "epochs": config.epochs,
        "seed": config.seed,
        "recipe": {f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
        "metrics": {"test": test, "validation": logger.rows[-1] if logger.rows else {}},
        "train_seconds": train_seconds,
        "epoch_seconds": epoch_seconds,
        "device": str(runtime.device),
        "replicas": replicas,
        "precision": precision,
        "compile": compile,
        "sync_bn": sync_bn,
    }
    extra = {"preprocessing.json": preprocessing}
    extra.update(getattr(spec.task_module, "checkpoint_files", lambda s: {})(preprocessing))
    ckpt = checkpoint.save(
        out / "checkpoint",
        model_name=spec.name,
        config=config_to_dict(config),
        weights=spec.get_weights(session.model),
        meta=meta,
        extra_files=extra,
        card=model_card(spec, config, fw, data, test, config.epochs),
    )
    result = {
        "model": spec.name,
        "framework": fw,
        "data": data,
        "test": test,
        "steps": session.step,
        "train_seconds": train_seconds,
        "epoch_seconds": epoch_seconds,
        "checkpoint": str(ckpt),
        "curves": str(out / "curves.png"),
        "pictures": [str(p) for p in pictures],
        "tensorboard": str(out / "tensorboard"),
        "run": str(out),
        "rank": 0,
        "replicas": replicas,
        "precision": precision,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    session.barrier()
    session.close()
    return result
