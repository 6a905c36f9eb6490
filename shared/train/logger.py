"""Run logging without a framework: steps.csv (per step) and TensorBoard event files; the callbacks in
shared/train/callbacks.py (CSVLogger, TensorBoard) write them."""

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
