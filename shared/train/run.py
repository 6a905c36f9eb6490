"""One training run, either framework: data -> twin -> epochs -> test metrics -> checkpoint + logs + plots.

    train(spec, config, fw, out=..., **settings)     the entry point: RunSettings from its keywords, then
    prepare(spec, config, settings) -> Run           resume or start afresh; the framework, its devices and
                                                     the trainer's session; the data; the run folder's logs
    fit(run)                                         the session's epochs: steps, validation, snapshots
    finish(run) -> result                            test metrics, curves, the task's pictures, the
                                                     checkpoint with its card, result.json

Framework-free: the twin's trainer module (shared/train/{torch,keras}_trainer.py) is imported by name.
Run folder (written by rank 0 alone when data parallel):
    checkpoint/        the checkpoint (shared/checkpoint.py), written atomically at the end: the best epoch's
                       weights by the monitored metric (--keep best, the default), or the last epoch's
    last/              the last epoch's checkpoint, beside a best one (--keep best)
    metrics.csv        one row per epoch;  steps.csv  one row per optimizer step, appended as it trains
    tensorboard/       event files (epoch/* and step/* scalars)
    curves.png         loss and validation metrics
    result.json        test metrics, timings, paths, the epoch each checkpoint holds
    snapshots/         exact-resume state every `snapshot_every` steps and at each epoch end
                       (shared/train/snapshot.py)

Callbacks (shared/train/callbacks.py) are fired here, identically for both frameworks: the run's own
logging (CSVLogger, TensorBoard, LearningRateMonitor), EarlyStopping, BestCheckpoint, and the user's.
Fine-tuning (--init, --freeze) is shared/train/finetune.py, applied to the twin as the session builds it.

`batch_size` is the global batch: with N replicas each takes batch_size / N of every batch, and the
gradients are averaged, so the step is the one a single replica takes on the whole batch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared import checkpoint, plots
from shared.data import load as load_data
from shared.data.iterator import BatchIterator
from shared.errors import UserError
from shared.metrics import evaluate_arrays
from shared.recipe import config_to_dict
from shared.train import finetune, snapshot
from shared.train.callbacks import (
    BestCheckpoint,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    LearningRateMonitor,
    TensorBoard,
    parse_early_stop,
)
from shared.train.distributed import restart_count
from shared.train.request import MARKER, RunSettings, check_request, plain

LOGGERS = (CSVLogger, TensorBoard, LearningRateMonitor, BestCheckpoint)  # cannot stop a run


def model_card(
    spec, config, fw: str, data: str, test: dict, epochs: int, kept: str = "", init: dict | None = None
) -> str:
    """A Hugging Face style model card for a trained checkpoint. kept: which epoch it holds and why;
    init: the fine-tuning source (finetune.FineTune.record())."""
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

Trained in **{fw}** on `{data}` for {epochs} epoch(s){kept}. The weights are framework-neutral (canonical torch
names in safetensors): load them in either twin with `tools/evaluate.py CKPT --fw keras|torch`.
{finetune.card_section(init)}
| metric (test) | value |
| --- | --- |
{metrics}
"""


@dataclass
class Run:
    """A prepared run: what fit() advances and finish() concludes."""

    spec: Any
    config: Any
    settings: RunSettings  # as prepare() resolved them (resume and overwrite after a launcher's restart)
    runtime: Any  # the trainer's Runtime: device, world, replicas, shard
    session: Any  # the trainer's Session: model, optimizer, step count
    resumer: Any  # shared.train.{fw}_resume: capture / restore the session's state
    splits: dict
    preprocessing: dict
    iterator: BatchIterator
    callbacks: CallbackList  # the run's logging, early stopping, best checkpoint and the user's callbacks
    csv: CSVLogger  # metrics.csv and steps.csv (its rows draw curves.png)
    now: dict  # where the run stands (epoch, batch, running loss, timings), as a snapshot keeps it
    tuned: finetune.FineTune | None = None  # --init / --freeze, as applied to the twin
    train_seconds: float = 0.0  # fit() sets it
    last_weights: dict | None = None  # the last epoch's weights (fit() sets them)

    def weights(self) -> dict:
        """The twin's weights now, in canonical names (copies)."""
        return self.spec.get_weights(self.session.model)

    def load_weights(self, weights: dict) -> None:
        self.spec.set_weights(self.session.model, weights)


def train(
    spec, config, fw: str, *, out, data: str | None = None, data_kwargs: dict | None = None, **options
) -> dict:
    """Train `spec` in framework `fw` with `config`; returns result.json's content (on rank 0; other ranks
    return {"rank": r, ...} without metrics). data: the model's dataset unless named. options: the other
    fields of RunSettings (gpus, threads, progress, log_steps, overwrite, cpu_replicas, precision, compile,
    sync_bn, deterministic, resume, snapshot_every, early_stop, keep, init, freeze) and callbacks: a list of
    shared.train.callbacks.Callback objects, plain objects with the same hooks, or (Keras) keras callbacks."""
    options["callbacks"] = tuple(options.get("callbacks") or ())
    options["freeze"] = tuple(options.get("freeze") or ())
    settings = RunSettings(fw, Path(out), data or spec.dataset, dict(data_kwargs or {}), **options)
    return execute(spec, config, settings)


def execute(spec, config, settings: RunSettings) -> dict:
    """prepare, fit, finish."""
    run = prepare(spec, config, settings)
    fit(run)
    return finish(run)


def follow_snapshots(session, snapshot_every: int) -> None:
    """Set when a trainer's session hands its losses (and state) to on_step: where snapshots are taken,
    and otherwise as rarely as each trainer reads them (the host waits for the device only then).
    tools/bench.py sets its sessions up through this too, so that it times what a run trains with."""
    if snapshot_every and hasattr(session, "read_every"):  # torch: losses read where snapshots are taken
        session.read_every = math.gcd(session.read_every, snapshot_every)
    session.sync_every = snapshot_every  # Keras: steps at which on_step sees the state after the step


def prepare(spec, config, settings: RunSettings) -> Run:
    """Everything before the first step: a run its launcher restarted resumes by itself (torchrun's or
    tools/train.py's --max-restarts); the framework and its devices; the request's checks; the data, the
    batches and the trainer's session (restored from the snapshot when resuming); the run folder's logs."""
    restarted = restart_count() > 0
    out = Path(settings.out)
    settings = dataclasses.replace(
        settings,
        out=out,
        resume=settings.resume or (restarted and snapshot.latest(out) is not None),
        overwrite=settings.overwrite or restarted,
    )
    trainer = importlib.import_module(f"shared.train.{settings.fw}_trainer")
    runtime = trainer.setup(
        settings.gpus,
        settings.threads,
        config.seed,
        cpu_replicas=settings.cpu_replicas,
        precision=settings.precision,
        deterministic=settings.deterministic,
    )
    world = runtime.world
    check_request(spec, config, settings, replicas=runtime.replicas, check_out=world.is_main)
    arrays, state = snapshot.read(out) if settings.resume else (None, None)

    dataset = load_data(settings.data, **settings.data_kwargs)
    splits, preprocessing = spec.task_module.prepare(dataset, config)
    for required in ("train", "validation", "test"):
        if required not in splits:
            raise UserError(f"dataset {settings.data} has no {required!r} split")
    rank, world_size = runtime.shard
    iterator = BatchIterator(
        splits["train"], config.batch_size, seed=config.seed, drop_last=True, rank=rank, world_size=world_size
    )
    if len(iterator) == 0:
        raise UserError(
            f"the training split has {iterator.num_examples} examples, fewer than one batch of "
            f"{config.batch_size}: pass a smaller --batch-size"
        )
    tuned = finetune.FineTune.of(spec, config, settings)  # reads and checks --init before any file is written
    session = trainer.Session(
        spec,
        config,
        runtime,
        total_steps=config.epochs * len(iterator),
        precision=settings.precision,
        compile=settings.compile,
        sync_bn=settings.sync_bn,
        adapt=tuned.apply if tuned else None,
    )
    follow_snapshots(session, settings.snapshot_every)
    resumer = importlib.import_module(f"shared.train.{settings.fw}_resume")

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
    if settings.resume:
        resumer.restore(
            session, {k: v for k, v in arrays.items() if not k.startswith("callback.")}, state["trainer"]
        )
        session.step = state["step"]
        now.update({k: state[k] for k in now})
    if world.is_main:
        if not settings.resume and out.exists() and settings.overwrite:
            shutil.rmtree(out)  # check_request made sure it is a run folder
        out.mkdir(parents=True, exist_ok=True)
        if not (out / MARKER).exists():  # first, so that even a run killed now is recognisably a run
            started = {"model": spec.name, "framework": settings.fw, "data": settings.data}
            started["started"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            (out / MARKER).write_text(json.dumps(started, indent=2) + "\n")
    if tuned is not None and settings.resume:
        tuned.restored = state.get("init")
    callbacks, csv = run_callbacks(spec, settings, world.is_main)
    csv.rows = list(now["rows"])  # a resumed run's epochs so far (also in its callbacks' state)
    if settings.resume and "callbacks" in state:  # snapshots from before callbacks carry no state
        callbacks.set_state(
            state["callbacks"], {k: v for k, v in arrays.items() if k.startswith("callback.")}
        )
    run = Run(
        spec,
        config,
        settings,
        runtime,
        session,
        resumer,
        splits,
        preprocessing,
        iterator,
        callbacks,
        csv,
        now,
        tuned,
    )
    callbacks.set_run(run)
    return run


def run_callbacks(spec, settings: RunSettings, is_main: bool) -> tuple[CallbackList, CSVLogger]:
    """The run's callbacks in firing order: the learning rate into the logs, --early-stop, the best
    checkpoint (--keep best; monitoring --early-stop's metric, else the task's primary one), the user's,
    then the logs (metrics.csv, steps.csv, TensorBoard), which so record what the others added."""
    out, task = Path(settings.out), spec.task_module
    tensorboard = TensorBoard(out, enabled=is_main, log_steps=settings.log_steps)
    csv = CSVLogger(out, enabled=is_main)
    chosen: list = [LearningRateMonitor(tensorboard if settings.log_steps else None)]
    monitor, mode = f"val_{task.PRIMARY_METRIC}", "auto"
    if settings.early_stop:
        options = parse_early_stop(settings.early_stop)
        monitor, mode = options["monitor"], options.get("mode", "auto")
        chosen.append(EarlyStopping(**options))
    user = list(settings.callbacks)
    if settings.keep == "best" and not any(isinstance(c, BestCheckpoint) for c in user):
        chosen.append(BestCheckpoint(monitor, mode))
    return CallbackList([*chosen, *user, csv, tensorboard], settings.fw), csv


class TrainingDiverged(UserError):
    """The run was valid but its loss or weights became inf or NaN: it stops; exit status 1, not 2."""

    exit_code = 1


def non_finite(tensors: dict) -> str | None:
    """The name of the first floating-point array holding inf or NaN, or None (RNG states, which pack a
    missing value as NaN, are not weights and are skipped)."""
    for name, value in tensors.items():
        if name.startswith("rng."):
            continue
        array = np.asarray(value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return name
    return None


def diverged(run: Run, what: str) -> TrainingDiverged:
    """The error that stops a diverging run, naming the step and the snapshot that keeps the last finite
    state (snapshots are checked before they are written, so the latest one on disk is finite)."""
    for callback in run.callbacks:
        if callable(getattr(callback, "close", None)):
            callback.close()
    kept = snapshot.latest(run.settings.out) if run.runtime.world.is_main else None
    where = f"its last finite state is the snapshot {kept}" if kept else "no snapshot was taken before it"
    return TrainingDiverged(
        f"{what}: training stopped and wrote no checkpoint; {where}. Lower --lr, set --set "
        "grad_clip_norm=1.0, or check the data for extreme values"
    )


def fit(run: Run) -> None:
    """The session's epochs from where the run stands: the callbacks' hooks (steps.csv, TensorBoard, early
    stopping ...), every epoch validated and logged, a snapshot every `snapshot_every` steps and at each
    epoch end (with the callbacks' state), until the last epoch or a callback's stop_training."""
    spec, config, settings, session, now = run.spec, run.config, run.settings, run.session, run.now
    world, fw, iterator, callbacks = run.runtime.world, settings.fw, run.iterator, run.callbacks
    # Validation runs on rank 0 (whole-split metrics: BLEU, ranking), and on every rank when a callback
    # that may stop the run reads it, so that all ranks stop together.
    everywhere = any(not isinstance(c, LOGGERS) for c in callbacks)
    clock = {"run": time.perf_counter(), "epoch": time.perf_counter()}
    train_seconds_before = now["train_seconds"]

    def save_snapshot() -> None:
        """Every rank takes part (torch gathers the ranks' RNG states); rank 0 writes."""
        tensors, trainer_state = run.resumer.capture(session)
        bad = non_finite(tensors)  # on every rank: the ranks hold the same weights and stop together
        if bad:
            raise diverged(run, f"{bad} became non-finite at step {session.step - 1}")
        if not world.is_main:
            return
        states, arrays = callbacks.get_state()
        tensors = {**tensors, **arrays}
        elapsed = time.perf_counter() - clock["epoch"] + now["epoch_elapsed"]
        snapshot.write(
            settings.out,
            tensors,
            {
                "model": spec.name,
                "framework": fw,
                "world_size": run.runtime.replicas,
                "precision": settings.precision,
                "config": plain(config_to_dict(config)),
                "data": settings.data,
                "data_kwargs": plain(settings.data_kwargs),
                "step": session.step,
                "epoch": now["epoch"],
                "batch": now["batch"],
                "losses": now["losses"],
                "epoch_seconds": now["epoch_seconds"],
                "epoch_elapsed": elapsed,
                "rows": run.csv.rows,
                "train_seconds": train_seconds_before + time.perf_counter() - clock["run"],
                "trainer": trainer_state,
                "callbacks": states,
                "early_stop": settings.early_stop,
                "keep": settings.keep,
                "freeze": list(settings.freeze),
                "init": run.tuned.record() if run.tuned else None,
            },
        )

    def on_step(step: int, loss: float, lr: float) -> None:
        if not math.isfinite(loss):  # every rank sees the same loss (torch averages it over the ranks)
            raise diverged(run, f"the training loss became {loss} at step {step} (epoch {now['epoch'] + 1})")
        callbacks.fire("on_step_end", step, {"loss": loss, "lr": lr})
        now["batch"] += 1
        now["losses"] = [now["losses"][0] + loss, now["losses"][1] + 1]
        every = settings.snapshot_every
        if every and session.step % every == 0 and now["batch"] < len(iterator):
            save_snapshot()  # mid-epoch; the epoch's end has its own snapshot after validation

    callbacks.fire("on_train_begin", {})
    for epoch in range(now["epoch"], config.epochs):
        if callbacks.stop_training:  # resumed from the snapshot of the epoch that stopped the run
            break
        clock["epoch"] = time.perf_counter()
        if now["batch"] == 0:
            callbacks.fire("on_epoch_begin", epoch, {})
        session.train_epoch(iterator, epoch, now["batch"], on_step, settings.progress)
        train_loss = now["losses"][0] / max(now["losses"][1], 1)
        now["epoch_seconds"] = now["epoch_seconds"] + [
            time.perf_counter() - clock["epoch"] + now["epoch_elapsed"]
        ]
        row = {"epoch": epoch + 1, "step": session.step, "train_loss": train_loss, "loss": train_loss}
        if world.is_main or everywhere:
            val = evaluate_arrays(
                spec, session.model, run.splits["validation"], config, config.eval_batch_size
            )
            row.update({f"val_{k}": v for k, v in val.items()})
        row["seconds"] = now["epoch_seconds"][-1]
        callbacks.fire("on_epoch_end", epoch, row)
        session.barrier()
        if settings.progress and world.is_main:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
            print(
                f"[{fw}] epoch {epoch + 1}/{config.epochs}: train loss {train_loss:.4f}, {shown}, "
                f"{now['epoch_seconds'][-1]:.1f}s",
                flush=True,
            )
        now.update({"epoch": epoch + 1, "batch": 0, "losses": [0.0, 0], "epoch_elapsed": 0.0})
        clock["epoch"] = time.perf_counter()
        if settings.snapshot_every:
            save_snapshot()
        if callbacks.stop_training:
            if settings.progress and world.is_main:
                print(f"[{fw}] stopped after epoch {epoch + 1} by a callback", flush=True)
            break
    run.train_seconds = train_seconds_before + time.perf_counter() - clock["run"]
    run.last_weights = spec.get_weights(session.model)
    bad = non_finite(run.last_weights)
    if bad:  # the last update broke the weights: no checkpoint, no result.json
        raise diverged(run, f"the weight {bad} became non-finite in the last step ({session.step - 1})")
    callbacks.fire("on_train_end", {"epoch": now["epoch"], "step": session.step})


def kept_checkpoints(run: Run) -> list[dict]:
    """What finish() writes: [{"folder", "epoch", "weights", "kept"}], checkpoint/ first. --keep best with a
    best epoch before the last: checkpoint/ holds the best epoch's weights and last/ the last epoch's;
    --keep best with the last epoch the best: both hold it; --keep last: checkpoint/ alone, holding the
    weights the run ended with (an EarlyStopping with restore_best may have put its best epoch's back)."""
    last_epoch = run.now["epoch"]
    best = run.callbacks.find(BestCheckpoint) if run.settings.keep == "best" else None
    if best is None:
        stopper = run.callbacks.find(EarlyStopping)
        restored = stopper is not None and stopper.restore_best and stopper.best_weights is not None
        epoch = stopper.best_epoch if restored else last_epoch
        return [{"folder": "checkpoint", "epoch": epoch, "weights": run.weights(), "kept": "last"}]
    chosen = f"best {best.monitor} ({best.mode})"
    weights = best.best_weights if best.best_weights is not None else run.last_weights
    epoch = best.best_epoch if best.best_weights is not None else last_epoch
    return [
        {"folder": "checkpoint", "epoch": epoch, "weights": weights, "kept": chosen, "value": best.best},
        {"folder": "last", "epoch": last_epoch, "weights": run.last_weights, "kept": "last"},
    ]


def finish(run: Run) -> dict:
    """After the last epoch: on rank 0 the test metrics, curves.png, the task's pictures, the checkpoints
    (checkpoint/ and last/, each with its model card and test metrics) and result.json, which it returns;
    the other ranks return where they stand."""
    spec, config, settings, session = run.spec, run.config, run.settings, run.session
    world, fw, out, data = run.runtime.world, settings.fw, settings.out, settings.data
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

    plots.training_curves(
        run.csv.steps.rows, run.csv.rows, out / "curves.png", f"{spec.name} in {fw} on {data}"
    )
    epoch_seconds = run.now["epoch_seconds"]
    stopper = run.callbacks.find(EarlyStopping)
    stopped = stopper.stopped_epoch if stopper is not None else None
    kept = kept_checkpoints(run)
    tests: dict = {}
    for entry in reversed(kept):  # last/ first: the model ends holding checkpoint/'s weights
        if entry["epoch"] not in tests:
            run.load_weights(entry["weights"])
            tests[entry["epoch"]] = evaluate_arrays(
                spec, session.model, run.splits["test"], config, config.eval_batch_size
            )
    main = kept[0]
    run.load_weights(main["weights"])
    # The task's pictures of the kept model (attention maps, segmentation overlays), next to the run.
    after = getattr(spec.task_module, "after_training", None)
    pictures = after(spec, session.model, run.splits, config, out, run.preprocessing) if after else []
    rows = {r["epoch"]: r for r in run.csv.rows}
    extra = {"preprocessing.json": run.preprocessing}
    extra.update(getattr(spec.task_module, "checkpoint_files", lambda s: {})(run.preprocessing))
    init = run.tuned.record() if run.tuned else None
    folders = {}
    for entry in kept:
        test, epoch = tests[entry["epoch"]], entry["epoch"]
        meta = {
            "framework": fw,
            "data": data,
            "data_kwargs": settings.data_kwargs,
            "epochs": config.epochs,
            "epoch": epoch,  # whose weights these are (1-based)
            "kept": entry["kept"],
            "epochs_trained": run.now["epoch"],
            "stopped_early_at": stopped,
            "seed": config.seed,
            "recipe": {f.name: getattr(config, f.name) for f in dataclasses.fields(config)},
            "recipe_name": settings.recipe,
            "metrics": {"test": test, "validation": rows.get(epoch, {})},
            "train_seconds": run.train_seconds,
            "epoch_seconds": epoch_seconds,
            "device": str(run.runtime.device),
            "replicas": run.runtime.replicas,
            "backend": getattr(run.runtime, "backend", fw),  # Keras' backend (torch: torch)
            "precision": settings.precision,
            "compile": settings.compile,
            "sync_bn": settings.sync_bn,
            "init": init,
        }
        why = f", epoch {epoch} kept ({entry['kept']})"
        folders[entry["folder"]] = checkpoint.save(
            out / entry["folder"],
            model_name=spec.name,
            config=config_to_dict(config),
            weights=entry["weights"],
            meta=meta,
            extra_files=extra,
            card=model_card(spec, config, fw, data, test, run.now["epoch"], why, init),
        )
    result = {
        "model": spec.name,
        "framework": fw,
        "data": data,
        "test": tests[main["epoch"]],
        "steps": session.step,
        "train_seconds": run.train_seconds,
        "epoch_seconds": epoch_seconds,
        "checkpoint": str(folders["checkpoint"]),
        "checkpoint_epoch": main["epoch"],
        "kept": main["kept"],
        "last": str(folders["last"]) if "last" in folders else None,
        "last_epoch": run.now["epoch"],
        "last_test": tests[run.now["epoch"]] if run.now["epoch"] in tests else None,
        "epochs_trained": run.now["epoch"],
        "stopped_early_at": stopped,
        "init": init,
        "curves": str(out / "curves.png"),
        "pictures": [str(p) for p in pictures],
        "tensorboard": str(out / "tensorboard"),
        "run": str(out),
        "rank": 0,
        "replicas": run.runtime.replicas,
        "backend": getattr(run.runtime, "backend", fw),
        "precision": settings.precision,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    session.barrier()
    session.close()
    return result
