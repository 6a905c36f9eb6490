"""Splits as stored, converted per batch: row readers over the dataset's Arrow files and declared decodes.

A task's prepare() returns each split as a `Split`: its columns in their stored dtype (uint8 images and
masks, int token ids) and, per column that the twins consume in another dtype, a `decode`: a short list
of elementwise operations, e.g. for a standardised image

    [("cast", "float32"), ("mul", [1/255]), ("sub", mean), ("div", std)]

applied to each batch (numpy here, torch in shared/data/torch_data.py, Keras ops in keras_data.py). The
operations are IEEE single-precision elementwise steps, so every implementation gives the same bits as
the whole-split numpy conversion the tasks used to do.

Large fixed-shape columns of a dataset backed by Arrow files (the `datasets` cache, or shared/data/store.py
for generated sets) are read row by row with os.pread (`FileRows`): nothing of the split is held in memory
and, unlike a memory map, the pages read are not counted in the process's resident memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping

import numpy as np

OPS = ("cast", "mul", "div", "sub", "add")


def check_ops(ops) -> list[tuple[str, object]]:
    """A decode as a list of (op, argument); ValueError names the first unknown operation."""
    ops = [(str(op), arg) for op, arg in ops]
    for op, _ in ops:
        if op not in OPS:
            raise ValueError(f"unknown decode operation {op!r}: expected one of {', '.join(OPS)}")
    return ops


def operand(arg) -> np.ndarray:
    """The float32 operand of an arithmetic step (a scalar or a per-channel vector, broadcast on the last
    axis)."""
    return np.asarray(arg, np.float32).reshape(-1)


def decode_array(array: np.ndarray, ops) -> np.ndarray:
    """One column's rows through its decode, in numpy (float32 arithmetic, a fresh array)."""
    out = np.asarray(array)
    for op, arg in ops:
        if op == "cast":
            out = out.astype(arg)
        elif op == "mul":
            out = out * operand(arg)
        elif op == "div":
            out = out / operand(arg)
        elif op == "sub":
            out = out - operand(arg)
        elif op == "add":
            out = out + operand(arg)
    return out


def decode_batch(batch: dict, decode: Mapping) -> dict:
    """A batch of stored rows -> what the twins consume (columns without a decode pass unchanged)."""
    return {k: decode_array(v, decode[k]) if k in decode else v for k, v in batch.items()}


def output_dtype(stored: np.dtype, ops) -> np.dtype:
    return decode_array(np.zeros(1, stored), ops).dtype


class FileRows:
    """Rows of a fixed-shape column stored contiguously in files (one run of rows per Arrow record batch),
    read with os.pread: `rows[index]` gathers the rows of an integer index array (any order, repeats
    allowed), `rows[a:b]` a range, `rows[i]` one row."""

    def __init__(self, runs: list[tuple[str, int, int]], row_shape: tuple[int, ...], dtype):
        """runs: (file, byte offset, rows) in row order."""
        self.runs, self.row_shape, self.dtype = runs, tuple(row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        counts = np.array([n for _, _, n in runs], np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])
        self._offsets = np.array([o for _, o, _ in runs], np.int64)
        self._files = sorted({f for f, _, _ in runs})
        self._file_of_run = np.array([self._files.index(f) for f, _, _ in runs], np.int64)
        self._fds: dict[int, list[int]] = {}  # pid -> descriptors (a forked child opens its own)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def _descriptors(self) -> list[int]:
        pid = os.getpid()
        with self._lock:
            if pid not in self._fds:
                self._fds = {pid: [os.open(f, os.O_RDONLY) for f in self._files]}
            return self._fds[pid]

    def __getstate__(self):  # a pickled copy (a worker process) opens its own files
        return {k: v for k, v in self.__dict__.items() if k not in ("_fds", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state, _fds={}, _lock=threading.Lock())

    def __del__(self):
        for fd in getattr(self, "_fds", {}).get(os.getpid(), []):
            try:
                os.close(fd)
            except OSError:
                pass

    def read(self, index: np.ndarray) -> np.ndarray:
        """The rows at `index` (1-D integer array), in that order; consecutive rows in one read."""
        index = np.asarray(index, np.int64).reshape(-1)
        n = len(self)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        index = np.where(index < 0, index + n, index)
        out = np.empty((index.size, *self.row_shape), self.dtype)
        if not index.size:
            return out
        run = np.searchsorted(self._starts, index, side="right") - 1
        where = self._offsets[run] + (index - self._starts[run]) * self.row_bytes
        # Break into reads of consecutive rows of one file: same run, next row.
        breaks = np.nonzero((run[1:] != run[:-1]) | (where[1:] != where[:-1] + self.row_bytes))[0] + 1
        bounds = np.concatenate([[0], breaks, [index.size]])
        fds, view = self._descriptors(), memoryview(out.reshape(-1).view(np.uint8))
        for a, b in zip(bounds[:-1], bounds[1:]):
            fd, size, position = fds[self._file_of_run[run[a]]], int(b - a) * self.row_bytes, int(where[a])
            target, done = view[int(a) * self.row_bytes : int(b) * self.row_bytes], 0
            while done < size:
                got = os.preadv(fd, [target[done:]], position + done)
                if got <= 0:
                    raise OSError(f"short read from {self._files[self._file_of_run[run[a]]]}")
                done += got
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.read(np.arange(len(self))[key])
        if isinstance(key, (int, np.integer)):
            return self.read(np.array([key]))[0]
        key = np.asarray(key)
        if key.dtype == bool:
            return self.read(np.nonzero(key)[0])
        if key.dtype.kind in "iu" and key.ndim == 1:
            return self.read(key)
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        whole = self.read(np.arange(len(self)))
        return whole if dtype is None else whole.astype(dtype)

    def chunks(self, size: int = 256) -> Iterator[np.ndarray]:
        for start in range(0, len(self), size):
            yield self[start : start + size]


class LazyColumn:
    """A stored column seen through its decode: `column[index]` reads those rows and decodes them."""

    def __init__(self, rows, ops):
        self.rows, self.ops = rows, check_ops(ops)
        self.dtype = output_dtype(rows.dtype, self.ops)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.rows.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key):
        key = np.asarray(key) if isinstance(key, list) else key
        if isinstance(key, (slice, int, np.integer)) or (
            isinstance(key, np.ndarray) and key.dtype.kind in "iub" and key.ndim == 1
        ):
            return decode_array(self.rows[key], self.ops)
        return np.asarray(self)[key]

    def __array__(self, dtype=None, copy=None):
        whole = decode_array(np.asarray(self.rows), self.ops)
        return whole if dtype is None else whole.astype(dtype)


class Split(Mapping):
    """A split as the tasks prepare it: stored columns (`raw`) and the per-column `decode`.

    As a mapping it shows the decoded view (split["image"][index] is float32), so code written for the
    old whole-split float arrays keeps working; the training input path reads `raw` rows and decodes
    each batch where it runs (shared/data/torch_data.py decodes on the device)."""

    def __init__(self, raw: dict, decode: dict | None = None):
        self.raw = dict(raw)
        self.decode = {k: check_ops(v) for k, v in (decode or {}).items()}
        missing = set(self.decode) - set(self.raw)
        if missing:
            raise ValueError(f"decode for columns the split lacks: {sorted(missing)}")

    def __getitem__(self, key):
        return LazyColumn(self.raw[key], self.decode[key]) if key in self.decode else self.raw[key]

    def __iter__(self):
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def rows(self, index) -> dict[str, np.ndarray]:
        """The stored rows at `index`, every column."""
        return {k: np.asarray(v[index]) for k, v in self.raw.items()}

    def head(self, count: int) -> dict[str, np.ndarray]:
        """The first `count` rows, decoded."""
        return decode_batch(self.rows(np.arange(min(count, self.num_rows))), self.decode)

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.raw.values())))

    @property
    def stored_bytes(self) -> int:
        return sum(int(getattr(v, "nbytes", 0)) for v in self.raw.values())


# ------------------------------------------------------------------------ the columns of a datasets split
def _leaf(array, base: int):
    """(byte offset of the first value in the mapped file, inner shape, dtype) of a fixed-shape column's
    non-empty record batch, or None when its values are not one contiguous run without nulls."""
    import pyarrow as pa

    if isinstance(array, pa.ExtensionArray):  # the datasets ArrayND types: a declared fixed shape
        array = array.storage
    elif pa.types.is_list(array.type):  # a plain list column may be ragged
        return None
    count, inner = len(array), []
    while pa.types.is_list(array.type) or pa.types.is_fixed_size_list(array.type):
        if array.null_count:
            return None
        values = array.flatten()
        if len(values) % count:
            return None
        inner.append(len(values) // count)
        array, count = values, len(values)
    if array.null_count or not pa.types.is_primitive(array.type) or pa.types.is_boolean(array.type):
        return None
    dtype = np.dtype(array.type.to_pandas_dtype())
    return array.buffers()[1].address - base + array.offset * dtype.itemsize, tuple(inner), dtype


def file_rows(dataset, column: str) -> FileRows | None:
    """Row reads of `column` straight from the Arrow files behind a `datasets.Dataset`, or None when the
    dataset is in memory, re-indexed (select / shuffle) or the column is not fixed-shape."""
    import pyarrow as pa

    files = [f["filename"] for f in dataset.cache_files]
    if not files or getattr(dataset, "_indices", None) is not None:
        return None
    runs, shape, dtype = [], None, None
    for path in files:
        with pa.memory_map(path) as source:
            buffer = source.read_buffer()
            reader = pa.ipc.open_stream(buffer)
            if column not in reader.schema.names:
                return None
            for batch in reader:
                if not batch.num_rows:
                    continue
                found = _leaf(batch.column(column), buffer.address)
                if found is None:
                    return None
                offset, inner, kind = found
                if shape is not None and (inner, kind) != (shape, dtype):
                    return None
                shape, dtype = inner, kind
                runs.append((path, int(offset), batch.num_rows))
    if shape is None or sum(n for _, _, n in runs) != len(dataset):
        return None
    return FileRows(runs, shape, dtype)


def split_columns(dataset, streamed: tuple[str, ...] = ()) -> dict:
    """A `datasets.Dataset`'s columns in their stored dtype: those named in `streamed` as row readers over
    its files when it has them, the rest (and everything of an in-memory dataset) as numpy arrays."""
    out, rest = {}, []
    for name in dataset.column_names:
        rows = file_rows(dataset, name) if name in streamed else None
        if rows is not None:
            out[name] = rows
        else:
            rest.append(name)
    if rest:
        arrays = dataset.select_columns(rest).with_format("numpy", dtype=None)[:]
        out.update({k: arrays[k] for k in rest})
    return {k: out[k] for k in dataset.column_names}


def column_max(column, chunk: int = 1024):
    """The largest value of a column, read by chunks of rows."""
    top = None
    for start in range(0, len(column), chunk):
        part = np.asarray(column[start : start + chunk])
        if part.size:
            top = part.max() if top is None else max(top, part.max())
    return top
