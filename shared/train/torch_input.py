"""Batches on the device ahead of the step: the torch trainer's input path.

    batches = device_batches(iterator.batches(epoch, start), convert, device)
    for tensors in batches:          # dicts of device tensors, in the iterator's order
        ...

`batches` yields the framework-free iterator's numpy batch dicts (shared/data/iterator.py) unchanged;
`convert(batch) -> {key: device tensor}` moves one of them to the device as stored and converts it there
(shared/data/torch_data.to_tensors). On the CPU that is all: each batch is converted when the step asks for
it, as before (a helper thread would only compete with the step's own threads for the cores).

On a CUDA device background threads prepare up to `depth` batches ahead of the step: one gathers the
numpy batches (the iterator's fancy indexing), another copies each into pinned (page-locked) host memory and calls
`convert` on a side CUDA stream, so the host-to-device copy is asynchronous and overlaps the step running
on the main stream. The thread waits for its own copy to finish before it lets the pinned buffers go (a
wait of the helper thread, never of the training thread); the training thread's stream waits for the copy
on the device (an event), and every tensor is recorded as used by that stream so the caching allocator
does not hand its memory to another batch while the step still reads it. The order of the batches is the
iterator's: the determinism contract (same batches in both twins, exact resume, slices per rank) is the
iterator's and is kept.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

DEPTH = 2  # batches prepared ahead of the step on a GPU


def pinned(batch: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[torch.Tensor]]:
    """numpy views of page-locked copies of `batch` (same dtypes: images stay uint8), and the torch
    tensors that own that memory (keep them alive until the copy from them has finished)."""
    views, owners = {}, []
    for key, value in batch.items():
        value = np.asarray(value)
        if value.dtype.kind not in "biuf" or value.dtype.byteorder == ">":  # strings, objects: as they are
            views[key] = value
            continue
        owner = torch.empty(value.shape, dtype=torch.from_numpy(value[:0].copy()).dtype, pin_memory=True)
        view = owner.numpy()
        np.copyto(view, value)
        views[key], owners = view, owners + [owner]
    return views, owners


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


class CudaPrefetcher:
    """Iterates device batches that a helper thread prepared `depth` ahead (see the module docstring)."""

    def __init__(
        self,
        batches: Iterable[dict[str, np.ndarray]],
        convert: Callable[[dict[str, np.ndarray]], dict[str, torch.Tensor]],
        device: torch.device,
        depth: int = DEPTH,
    ):
        self.device, self.convert = torch.device(device), convert
        self.side = torch.cuda.Stream(self.device)
        self.ready: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop, self.finished = threading.Event(), False
        self.thread = threading.Thread(target=self._work, args=(iter(batches),), daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _gather(self, batches: Iterator[dict[str, np.ndarray]], gathered: queue.Queue) -> None:
        """The iterator's own work (numpy gathers, which release the GIL) in a thread of its own, one batch
        ahead of the pinning and copying."""
        try:
            for batch in batches:
                while not self.stop.is_set():
                    try:
                        gathered.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self.stop.is_set():
                    return
            gathered.put(_END)
        except BaseException as error:  # noqa: BLE001  (handed on to the training thread)
            gathered.put(_Failed(error))

    def _gathered(self, batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
        gathered: queue.Queue = queue.Queue(maxsize=1)
        threading.Thread(target=self._gather, args=(batches, gathered), daemon=True).start()
        while not self.stop.is_set():
            try:
                item = gathered.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def _work(self, batches: Iterator[dict[str, np.ndarray]]) -> None:
        try:
            torch.cuda.set_device(self.device)
            for batch in self._gathered(batches):
                if self.stop.is_set():
                    return
                views, owners = pinned(batch)
                with torch.cuda.stream(self.side):
                    tensors = self.convert(views)
                    done = torch.cuda.Event()
                    done.record(self.side)
                done.synchronize()  # the copies out of `owners` are finished: the pinned memory may go
                del owners, views
                if not self._put((tensors, done)):
                    return
        except BaseException as error:  # noqa: BLE001  (handed to the training thread, raised there)
            self._put(_Failed(error))
            return
        self._put(_END)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.finished:
            raise StopIteration
        item = self.ready.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failed):
            self.close()
            raise item.error
        tensors, done = item
        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(done)
        for value in tensors.values():
            if isinstance(value, torch.Tensor) and value.device.type == "cuda":
                value.record_stream(stream)
        return tensors

    def close(self) -> None:
        """Stop the helper thread (an epoch left early: an exception, a step limit)."""
        self.finished = True
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.ready.get(timeout=0.1)
            except queue.Empty:
                pass
        self.thread.join()

    def __del__(self):
        self.stop.set()


def device_batches(
    batches: Iterable[dict[str, np.ndarray]],
    convert: Callable[[dict[str, np.ndarray]], dict[str, torch.Tensor]],
    device: torch.device | str,
    depth: int = DEPTH,
) -> Iterator[dict[str, torch.Tensor]]:
    """The batches as device tensors, in order: prepared ahead by a helper thread on a CUDA device,
    converted one by one when asked on any other device."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda": the current device, by its index
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda" and depth > 0:
        return CudaPrefetcher(batches, convert, device, depth)
    return (convert(batch) for batch in batches)


def is_convolutional(model: torch.nn.Module) -> bool:
    """Whether the model has a 2-D convolution: such models run in channels_last on CUDA (cuDNN's fast
    NHWC kernels, Tensor Cores in bf16); the twins' NHWC -> NCHW permute already yields that layout."""
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
