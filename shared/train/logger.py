"""Run logging without a framework: metrics.csv (per epoch), steps.csv (per step), TensorBoard event files."""

from __future__ import annotations

import csv
import socket
import time
from pathlib import Path


class EventWriter:
    """TensorBoard event files written with tensorboard's record writer and protos only.

    tensorboard's EventFileWriter reaches for TensorFlow's gfile, which would load TensorFlow into a
    torch training process; this writes the same TFRecord framing to a plain file.
    """

    def __init__(self, logdir: Path):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        logdir.mkdir(parents=True, exist_ok=True)
        self._file = open(logdir / f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}", "wb")
        self._records = RecordWriter(self._file)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event) -> None:
        self._records.write(event.SerializeToString())

    def close(self) -> None:
        self._file.flush()
        self._file.close()


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.rows: list[dict] = []
        self._writer = None
        if enabled:
            self._writer = EventWriter(self.run_dir / "tensorboard")

    def scalar(self, tag: str, value: float, step: int) -> None:
        if not self._writer:
            return
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def epoch(self, row: dict) -> None:
        """One row per epoch: epoch, step, train_loss, val_* metrics, seconds."""
        self.rows.append(row)
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, int | float):
                self.scalar(f"epoch/{key}", value, row["step"])
        if self.enabled:
            keys = list(dict.fromkeys(k for r in self.rows for k in r))
            with open(self.run_dir / "metrics.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)

    def close(self) -> None:
        if self._writer:
            self._writer.close()


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
