"""Run logging without a framework: metrics.csv, TensorBoard event files, and a curves PNG."""

from __future__ import annotations

import csv
import time
from pathlib import Path


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.rows: list[dict] = []
        self._writer = None
        if enabled:
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            (self.run_dir / "tensorboard").mkdir(parents=True, exist_ok=True)
            self._writer = EventFileWriter(str(self.run_dir / "tensorboard"))

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
