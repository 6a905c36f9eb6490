"""numpy batches -> what keras.Model.fit consumes: a PyDataset over the framework-free iterator's batches.

`to_tensors(batch, decode)` converts stored columns (shared/data/columns.py decodes) with Keras ops on the
backend's device. `StreamBatches` is one epoch fetched on demand: Keras' PyDataset runs __getitem__ in a
worker thread ahead of the step, each call reading one batch's rows and decoding them in numpy (fit's
input adapter hands the backend host arrays; the values equal the device decode's).
"""

from __future__ import annotations

import keras
import numpy as np

from shared.data.columns import operand


def decode_tensor(tensor, ops):
    for op, arg in ops:
        if op == "cast":
            tensor = keras.ops.cast(tensor, str(np.dtype(arg)))
            continue
        other = keras.ops.convert_to_tensor(operand(arg))
        if op == "mul":
            tensor = keras.ops.multiply(tensor, other)
        elif op == "div":
            tensor = keras.ops.divide(tensor, other)
        elif op == "sub":
            tensor = keras.ops.subtract(tensor, other)
        elif op == "add":
            tensor = keras.ops.add(tensor, other)
        else:
            raise ValueError(f"unknown decode operation {op!r}")
    return tensor


def to_tensors(batch: dict[str, np.ndarray], decode: dict | None = None) -> dict:
    decode = decode or {}
    out = {}
    for k, v in batch.items():
        tensor = keras.ops.convert_to_tensor(np.ascontiguousarray(v))
        out[k] = decode_tensor(tensor, decode[k]) if k in decode else tensor
    return out


class EpochBatches(keras.utils.PyDataset):
    """One epoch of batches, in the iterator's order; each item is the batch dict (x; the loss reads labels)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
        self._batches = batches

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self._batches[index]


class StreamBatches(keras.utils.PyDataset):
    """The batches of `epoch` from `start`, in the iterator's order, read when Keras asks for them (its
    worker thread keeps up to `max_queue_size` ahead): nothing of the epoch is held beyond those."""

    def __init__(self, iterator, epoch: int, start: int = 0, max_queue_size: int = 4):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=max_queue_size)
        self.iterator, self.epoch, self.start = iterator, epoch, start
        self._sequential, self._next = None, 0  # for iterators without random access (batch(epoch, b))

    def __len__(self) -> int:
        return len(self.iterator) - self.start

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if hasattr(self.iterator, "batch"):
            return self.iterator.batch(self.epoch, self.start + index)
        if self._sequential is None or index != self._next:  # one worker asks in order
            self._sequential = iter(self.iterator.batches(self.epoch, self.start + index))
        self._next = index + 1
        return next(self._sequential)
