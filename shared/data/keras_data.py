"""numpy batches -> what keras.Model.fit consumes: a PyDataset over the framework-free iterator's batches.

`to_tensors(batch, decode)` converts stored columns (shared/data/columns.py decodes) with Keras ops on the
backend's device. `StreamBatches` is one epoch fetched on demand: Keras' PyDataset runs __getitem__ in
worker threads ahead of the step, each call reading one batch's rows. By default it decodes them in numpy;
the trainer asks for the columns that a decode widens (uint8 images to float32) as stored instead
(`device_decode`), and its TrainModule decodes them inside the compiled step with `decode_columns` (a
uint8 column through a 256-entry lookup table of numpy's values): a quarter of the bytes cross to the
device, the host does no per-pixel arithmetic, and the values are numpy's, bit for bit.
"""

from __future__ import annotations

import keras
import numpy as np

from shared.data.columns import decode_array, operand, output_dtype


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


def lookup_table(ops) -> np.ndarray:
    """A uint8 column's decode as a (256, channels) table: row v holds the decode of the value v in each
    channel (the operands broadcast on the last axis), computed by numpy. Looking values up gives numpy's
    bits exactly, which arithmetic in a compiled step does not: XLA and TensorFlow's graph optimiser turn a
    division into a multiplication by the reciprocal (1-ulp differences)."""
    channels = max([operand(arg).size for op, arg in ops if op != "cast"] or [1])
    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], channels, axis=1)
    return np.ascontiguousarray(decode_array(values, ops))


def widened(stored: dict, decode: dict) -> dict:
    """{column: (stored dtype, decode, lookup table or None)} for the columns a trainer may hand over as
    stored and decode in its compiled step: those whose decode changes the dtype (a batch's dtype then
    tells stored rows from decoded ones) and is exact there: casts only, or a uint8 column (decoded by
    its lookup_table). Other columns are decoded on the host."""
    out = {}
    for k, ops in decode.items():
        dtype = np.dtype(stored[k].dtype)
        if output_dtype(dtype, ops) == dtype:
            continue
        if all(op == "cast" for op, _ in ops):
            out[k] = (dtype, list(ops), None)
        elif dtype == np.uint8:
            table = lookup_table(ops)
            if table.shape[1] == 1 or table.shape[1] == stored[k].shape[-1]:
                out[k] = (dtype, list(ops), table)
    return out


def decode_columns(batch: dict, device_decode: dict) -> dict:
    """A batch dict of tensors with the `widened` columns that still have their stored dtype decoded (Keras
    ops, traceable inside a compiled step); decoded columns and others pass unchanged."""
    out = dict(batch)
    for k, (dtype, ops, table) in device_decode.items():
        if k not in out or keras.backend.standardize_dtype(out[k].dtype) != dtype.name:
            continue
        if table is None:
            out[k] = decode_tensor(out[k], ops)
            continue
        channels = table.shape[1]
        index = keras.ops.cast(out[k], "int32")
        if channels > 1:
            index = index * channels + keras.ops.arange(channels, dtype="int32")
        out[k] = keras.ops.take(keras.ops.convert_to_tensor(table.reshape(-1)), index)
    return out


def to_tensors(batch: dict[str, np.ndarray], decode: dict | None = None) -> dict:
    decode = decode or {}
    out = {}
    for k, v in batch.items():
        tensor = keras.ops.convert_to_tensor(np.ascontiguousarray(v))
        out[k] = decode_tensor(tensor, decode[k]) if k in decode else tensor
    return out


# Keras' PyDataset prefetches in background threads only with workers > 1 (its OrderedEnqueuer, batches
# kept in order). With one worker there is no enqueuer: on JAX each batch is then read on the training
# thread, between steps, and on TensorFlow the dataset is prefetched with tf.data autotuning, whose tuning
# thread the end of every fit waits for (measured on 2 cores: about 2.5 s of idle CPU after some fits,
# half of them at random, so a 10-step fit ran at 62 instead of 105-120 examples/s).
WORKERS = 2


class EpochBatches(keras.utils.PyDataset):
    """One epoch of batches, in the iterator's order; each item is the batch dict (x; the loss reads labels)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        super().__init__(workers=WORKERS, use_multiprocessing=False, max_queue_size=4)
        self._batches = batches

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self._batches[index]


class StreamBatches(keras.utils.PyDataset):
    """The batches of `epoch` from `start`, in the iterator's order, read when Keras asks for them (its
    worker threads keep up to `max_queue_size` ahead): nothing of the epoch is held beyond those."""

    def __init__(self, iterator, epoch: int, start: int = 0, max_queue_size: int = 4, device_decode=()):
        """device_decode: columns handed over as stored (a BatchIterator's; the consumer decodes them).
        Iterators with random access are read by WORKERS threads ahead of the step; others by one."""
        workers = WORKERS if hasattr(iterator, "batch") else 1
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        self.iterator, self.epoch, self.start = iterator, epoch, start
        self.device_decode = set(device_decode)
        self._sequential, self._next = None, 0  # for iterators without random access (batch(epoch, b))

    def __len__(self) -> int:
        return len(self.iterator) - self.start

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self.device_decode and hasattr(self.iterator, "raw_batch"):
            raw, decode = self.iterator.raw_batch(self.epoch, self.start + index), self.iterator.decode
            return {
                k: decode_array(v, decode[k]) if k in decode and k not in self.device_decode else v
                for k, v in raw.items()
            }
        if hasattr(self.iterator, "batch"):
            return self.iterator.batch(self.epoch, self.start + index)
        if self._sequential is None or index != self._next:  # one worker asks in order
            self._sequential = iter(self.iterator.batches(self.epoch, self.start + index))
        self._next = index + 1
        return next(self._sequential)
