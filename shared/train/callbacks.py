"""Callbacks: one framework-neutral interface, fired identically for both trainers by shared/train/run.py.

    class Callback:
        on_train_begin(logs)              before the first step (after a resume: before the next one)
        on_epoch_begin(epoch, logs)       epoch counts from 0, as in Keras
        on_step_end(step, logs)           after every optimizer step: logs {"loss", "lr"}
        on_epoch_end(epoch, logs)         after validation: logs {"epoch", "step", "train_loss", "loss",
                                          "val_<metric>" for every metric the task logs, "lr", "seconds"}
        on_train_end(logs)                after the last epoch (or the one that stopped the run)
        stop_training                     set it to True to stop after the current epoch

`run.train(spec, config, fw, out=..., callbacks=[...])` takes any mix of
- Callback subclasses (the built-ins below, or yours);
- plain Python objects with some of the same methods (duck-typed: a missing hook is skipped; an object
  with `stop_training` set to True stops the run after the epoch);
- keras.callbacks.Callback objects, in the Keras trainer only: their batch hooks run inside each epoch's
  model.fit, their epoch and train hooks run here with the logs above, and `self.model.stop_training` (as
  keras.callbacks.EarlyStopping sets it) stops the run. `self.model` is the trainer's keras.Model.

A callback may keep state across an exact resume: `get_state() -> (json, arrays)` and
`set_state(json, arrays)` are stored in, and restored from, every snapshot (shared/train/snapshot.py).
`set_run(run)` hands each callback the prepared run (shared/train/run.Run: its spec, config, settings and
`run.weights()` / `run.load_weights(weights)` in canonical names) before on_train_begin.

Built-ins: EarlyStopping, BestCheckpoint, LearningRateMonitor, CSVLogger (metrics.csv, steps.csv) and
TensorBoard (tensorboard/ event files); run.py adds the last three to every run (rank 0 writes).
Framework-free: numpy and the standard library (Keras is only touched through the objects a user passes).
"""

from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path

import numpy as np

from shared.errors import UserError
from shared.train.logger import EventWriter, StepLog

HOOKS = ("on_train_begin", "on_epoch_begin", "on_step_end", "on_epoch_end", "on_train_end")
LOWER_IS_BETTER = re.compile(r"(^|_)(loss|rmse|mae|error|perplexity)$")


class Callback:
    """The interface; every hook does nothing unless overridden."""

    stop_training = False
    run = None

    def set_run(self, run) -> None:
        self.run = run

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_step_end(self, step, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def get_state(self) -> tuple[dict, dict]:
        """(JSON-able state, numpy arrays) an exact resume needs; nothing by default."""
        return {}, {}

    def set_state(self, state: dict, arrays: dict) -> None:
        pass


def monitor_mode(monitor: str, mode: str, higher_is_better: dict | None = None) -> str:
    """ "min" or "max": `mode` unless "auto", then the task's direction for its primary metric, and "min"
    for losses and errors, "max" for everything else (accuracy, BLEU, AUROC, HR@K, mIoU)."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise UserError(f"mode must be min, max or auto; found {mode!r}")
    name = monitor.removeprefix("val_")
    if higher_is_better and name in higher_is_better:
        return "max" if higher_is_better[name] else "min"
    return "min" if LOWER_IS_BETTER.search(name) else "max"


class _Monitor(Callback):
    """What EarlyStopping and BestCheckpoint share: a monitored value, its best, and the best epoch."""

    def __init__(self, monitor: str, mode: str = "auto", min_delta: float = 0.0):
        self.monitor, self.requested_mode, self.min_delta = monitor, mode, abs(float(min_delta))
        self.mode = monitor_mode(monitor, mode) if mode != "auto" else None
        self.best: float | None = None
        self.best_epoch: int | None = None  # 1-based, as metrics.csv and result.json count epochs

    def set_run(self, run) -> None:
        super().set_run(run)
        task = run.spec.task_module
        self.mode = monitor_mode(
            self.monitor, self.requested_mode, {task.PRIMARY_METRIC: task.HIGHER_IS_BETTER}
        )

    def value(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise UserError(
                f"{type(self).__name__} monitors {self.monitor!r}, which this run does not log; "
                f"it logs {', '.join(k for k in logs if k not in ('epoch', 'step', 'seconds'))}"
            )
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def get_state(self) -> tuple[dict, dict]:
        return {"best": self.best, "best_epoch": self.best_epoch}, {}

    def set_state(self, state: dict, arrays: dict) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EarlyStopping(_Monitor):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs in a row (as
    Keras and Lightning count: 0 and 1 both stop at the first epoch without improvement). restore_best: the run ends with the weights of
    the best epoch (kept in memory, and in snapshots for a resume)."""

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 0,
        min_delta: float = 0.0,
        restore_best: bool = False,
    ):
        if not isinstance(patience, int) or patience < 0:
            raise UserError(f"early stopping patience must be an integer >= 0; found {patience!r}")
        super().__init__(monitor, mode, min_delta)
        self.patience, self.restore_best = patience, restore_best
        self.wait = 0  # epochs since the last improvement
        self.stopped_epoch: int | None = None
        self.best_weights: dict | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = self.value(logs)
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best:
                self.best_weights = self.run.weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stop_training, self.stopped_epoch = True, epoch + 1

    def on_train_end(self, logs=None):
        if self.restore_best and self.best_weights is not None and self.best_epoch != self.run.now["epoch"]:
            self.run.load_weights(self.best_weights)

    def get_state(self) -> tuple[dict, dict]:
        state, _ = super().get_state()
        state.update(wait=self.wait, stopped_epoch=self.stopped_epoch, stop_training=self.stop_training)
        arrays = {f"best.{k}": v for k, v in (self.best_weights or {}).items()}
        return state, arrays

    def set_state(self, state: dict, arrays: dict) -> None:
        super().set_state(state, arrays)
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.stop_training = state["stop_training"]
        best = {k.removeprefix("best."): v for k, v in arrays.items() if k.startswith("best.")}
        self.best_weights = best or None


class BestCheckpoint(_Monitor):
    """Keep the weights of the epoch with the best `monitor` (in memory, and in snapshots): run.py writes
    them to checkpoint/ and the last epoch's to last/, and result.json names each one's epoch."""

    def __init__(self, monitor: str = "val_loss", mode: str = "auto"):
        super().__init__(monitor, mode)
        self.best_weights: dict | None = None

    def on_epoch_end(self, epoch, logs=None):
        if not self.run.runtime.world.is_main:  # rank 0 alone validates (for it) and writes checkpoints
            return
        value = self.value(logs)
        if self.improved(value):
            self.best, self.best_epoch = value, epoch + 1
            self.best_weights = self.run.weights()

    def get_state(self) -> tuple[dict, dict]:
        state, _ = super().get_state()
        return state, {f"best.{k}": v for k, v in (self.best_weights or {}).items()}

    def set_state(self, state: dict, arrays: dict) -> None:
        super().set_state(state, arrays)
        best = {k.removeprefix("best."): v for k, v in arrays.items() if k.startswith("best.")}
        self.best_weights = best or None


class LearningRateMonitor(Callback):
    """The learning rate of every step as the TensorBoard scalar step/lr, and the epoch's last one in the
    epoch logs (an "lr" column in metrics.csv)."""

    def __init__(self, tensorboard: TensorBoard | None = None):
        self.tensorboard, self.lr = tensorboard, None

    def on_step_end(self, step, logs=None):
        self.lr = logs["lr"]
        if self.tensorboard is not None:
            self.tensorboard.scalar("step/lr", logs["lr"], step)

    def on_epoch_end(self, epoch, logs=None):
        if self.lr is not None:
            logs["lr"] = self.lr

    def get_state(self) -> tuple[dict, dict]:
        return {"lr": self.lr}, {}

    def set_state(self, state: dict, arrays: dict) -> None:
        self.lr = state["lr"]


class CSVLogger(Callback):
    """metrics.csv (one row per epoch, rewritten whole) and steps.csv (one row per step, appended and
    flushed, so that a killed run keeps its steps; a resumed run cuts it back to its snapshot's step)."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.rows: list[dict] = []
        self.steps: StepLog | None = None

    def on_train_begin(self, logs=None):
        resumed = self.run is not None and self.run.settings.resume
        self.steps = StepLog(
            self.run_dir / "steps.csv", self.enabled, keep_before=self.run.session.step if resumed else None
        )

    def on_step_end(self, step, logs=None):
        self.steps.add({"step": step, "loss": logs["loss"], "lr": logs["lr"]})

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({k: v for k, v in logs.items() if k != "loss"})  # "loss" repeats train_loss
        if self.enabled:
            keys = list(dict.fromkeys(k for r in self.rows for k in r))
            with open(self.run_dir / "metrics.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()

    def get_state(self) -> tuple[dict, dict]:
        return {"rows": self.rows}, {}

    def set_state(self, state: dict, arrays: dict) -> None:
        self.rows = list(state["rows"])


class TensorBoard(Callback):
    """Event files in <run>/tensorboard: step/loss every step (with log_steps) and epoch/<key> for every
    numeric epoch log (train_loss, val_* metrics, lr, seconds). Written without TensorFlow."""

    def __init__(self, run_dir: Path, enabled: bool = True, log_steps: bool = True):
        self.writer = EventWriter(Path(run_dir) / "tensorboard") if enabled else None
        self.log_steps = log_steps

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is None:
            return
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self.writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def on_step_end(self, step, logs=None):
        if self.log_steps:
            self.scalar("step/loss", logs["loss"], step)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in logs.items():
            if key not in ("epoch", "step", "loss") and isinstance(value, int | float):
                self.scalar(f"epoch/{key}", value, logs["step"])

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def is_keras_callback(obj) -> bool:
    """An instance of keras.callbacks.Callback (told without importing Keras)."""
    return any(c.__name__ == "Callback" and c.__module__.split(".")[0] == "keras" for c in type(obj).__mro__)


class KerasCallback(Callback):
    """A keras.callbacks.Callback seen through this interface: its epoch and train hooks with the run's
    logs; its batch hooks run inside model.fit (the Keras trainer receives it through use_callbacks)."""

    def __init__(self, callback):
        self.callback = callback

    def set_run(self, run) -> None:
        super().set_run(run)
        run.session.use_callbacks([self.callback])  # set_model, and its batch hooks inside fit

    @property
    def stop_training(self) -> bool:
        model = getattr(self.callback, "model", None)
        return bool(getattr(model, "stop_training", False))

    def on_train_begin(self, logs=None):
        self.callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.callback.on_train_end(logs)


class CallbackList:
    """Fires a hook on every callback in order; duck-typed objects get the hooks they define."""

    def __init__(self, callbacks, fw: str):
        self.callbacks = []
        for callback in callbacks:
            if is_keras_callback(callback):
                if fw != "keras":
                    raise UserError(
                        f"{type(callback).__name__} is a keras.callbacks.Callback, which runs in the Keras "
                        "trainer only; pass a shared.train.callbacks.Callback (or any object with its "
                        "hooks) to a torch run"
                    )
                callback = KerasCallback(callback)
            elif not any(callable(getattr(callback, h, None)) for h in HOOKS):
                raise UserError(
                    f"{type(callback).__name__} is not a callback: it has none of {', '.join(HOOKS)}"
                )
            self.callbacks.append(callback)

    def __iter__(self):
        return iter(self.callbacks)

    def set_run(self, run) -> None:
        for callback in self.callbacks:
            if callable(getattr(callback, "set_run", None)):
                callback.set_run(run)

    def fire(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if callable(method):
                method(*args)

    @property
    def stop_training(self) -> bool:
        return any(bool(getattr(c, "stop_training", False)) for c in self.callbacks)

    def find(self, kind: type):
        return next((c for c in self.callbacks if isinstance(c, kind)), None)

    def get_state(self) -> tuple[list, dict]:
        """Every stateful callback's state, by position and class name, for a snapshot."""
        states, arrays = [], {}
        for i, callback in enumerate(self.callbacks):
            getter = getattr(callback, "get_state", None)
            state, tensors = getter() if callable(getter) else ({}, {})
            states.append({"class": type(callback).__name__, "state": state})
            arrays.update({f"callback.{i}.{k}": np.asarray(v) for k, v in tensors.items()})
        return states, arrays

    def set_state(self, states: list, arrays: dict) -> None:
        mine = [type(c).__name__ for c in self.callbacks]
        saved = [s["class"] for s in states]
        if mine != saved:
            raise UserError(
                f"the run was snapshotted with the callbacks {saved or 'none'}; this resume passes "
                f"{mine or 'none'}: resume it with the same callbacks (--early-stop, --keep)"
            )
        for i, (callback, saved_state) in enumerate(zip(self.callbacks, states)):
            prefix = f"callback.{i}."
            tensors = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            setter = getattr(callback, "set_state", None)
            if callable(setter) and (saved_state["state"] or tensors):
                setter(saved_state["state"], tensors)


# ---------------------------------------------------------------- the command line's --early-stop


def parse_early_stop(text: str) -> dict:
    """`val_accuracy:patience=2[:min_delta=0.001][:mode=max][:restore_best=true]` -> EarlyStopping's
    keyword arguments; a malformed flag is a one-line UserError."""
    monitor, *options = text.split(":")
    if not monitor:
        raise UserError(f"--early-stop expects METRIC[:patience=N][:min_delta=X]; found {text!r}")
    kwargs: dict = {"monitor": monitor.strip()}
    kinds = {"patience": int, "min_delta": float, "mode": str, "restore_best": str}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip()
        if not sep or key not in kinds:
            raise UserError(
                f"--early-stop {text}: {option!r} is not one of {', '.join(f'{k}=...' for k in kinds)}"
            )
        try:
            kwargs[key] = kinds[key](value.strip())
        except ValueError:
            raise UserError(
                f"--early-stop {text}: {key} must be a {kinds[key].__name__}; found {value!r}"
            ) from None
    if kwargs.get("patience", 0) < 0:
        raise UserError(
            f"--early-stop {text}: patience must be >= 0 (0: stop at the first epoch without improvement)"
        )
    if kwargs.get("min_delta", 0.0) < 0:
        raise UserError(f"--early-stop {text}: min_delta must be >= 0")
    if kwargs.get("mode", "auto") not in ("auto", "min", "max"):
        raise UserError(f"--early-stop {text}: mode must be auto, min or max")
    if "restore_best" in kwargs:
        flag = kwargs["restore_best"].lower()
        if flag not in ("true", "false", "1", "0"):
            raise UserError(f"--early-stop {text}: restore_best must be true or false")
        kwargs["restore_best"] = flag in ("true", "1")
    return kwargs


def logged_metrics(spec) -> list[str]:
    """The names a run of `spec` logs at every epoch end, which --early-stop and --keep may monitor."""
    task = spec.task_module
    return ["train_loss", "loss", *(f"val_{m}" for m in task.METRICS)]


def check_monitor(spec, monitor: str, flag: str) -> None:
    names = logged_metrics(spec)
    if monitor not in names:
        raise UserError(
            f"{flag}: {spec.name} ({spec.task}) logs no metric {monitor!r}; it logs {', '.join(names)}"
        )
