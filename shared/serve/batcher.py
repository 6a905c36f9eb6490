"""Dynamic batching: inputs of concurrent requests are gathered and run as one forward pass.

Requests put their inputs on a queue from the event loop; one worker thread runs the model. The worker
takes the oldest input and waits until `max_batch` inputs with the same key are queued or `max_delay`
seconds have passed since that input arrived, whichever comes first, then runs them all in one call.
Inputs queued while a forward pass runs are gathered for the next one, so under load batches fill
without waiting; at max_delay = 0 the worker never waits. Inputs whose keys differ (options that
change the computation, such as a beam width) never share a pass. One worker means one forward pass
at a time: the model is never called from two threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Item:
    key: Hashable
    payload: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)


def _resolve(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _deliver(item: _Item, result: Any, error: BaseException | None = None) -> None:
    try:
        item.loop.call_soon_threadsafe(_resolve, item.future, result, error)
    except RuntimeError:  # the event loop has closed: nobody waits for this result any more
        pass


class Batcher:
    """process(key, payloads) -> one result per payload, called in the worker thread.
    on_batch(size, seconds) is told about every pass (metrics)."""

    def __init__(
        self,
        process: Callable[[Hashable, Sequence[Any]], Sequence[Any]],
        max_batch: int,
        max_delay: float,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        if max_batch < 1 or max_delay < 0:
            raise ValueError(
                f"max_batch >= 1 and max_delay >= 0 are required; found {max_batch}, {max_delay}"
            )
        self.process, self.max_batch, self.max_delay = process, max_batch, max_delay
        self.on_batch = on_batch or (lambda size, seconds: None)
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="zoo-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Run what is queued, then end the worker (graceful shutdown)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, key: Hashable, payload: Any) -> asyncio.Future:
        """Queue one input; the returned future (of the running loop) gets its result."""
        loop = asyncio.get_running_loop()
        item = _Item(key, payload, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._queue.append(item)
            self._cond.notify_all()
        return item.future

    def _take(self) -> list[_Item] | None:
        """Block until a batch is due; None once stopping with nothing queued."""
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            head = self._queue[0]
            deadline = head.arrived + self.max_delay
            while not self._stopping:
                ready = sum(1 for item in self._queue if item.key == head.key)
                remaining = deadline - time.monotonic()
                if ready >= self.max_batch or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, rest = [], deque()
            for item in self._queue:
                (batch if item.key == head.key and len(batch) < self.max_batch else rest).append(item)
            self._queue = rest
            return batch

    def _work(self) -> None:
        while (batch := self._take()) is not None:
            start = time.perf_counter()
            try:
                results = self.process(batch[0].key, [item.payload for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"process returned {len(results)} results for {len(batch)} inputs")
            except BaseException as err:  # every waiting request learns of it; the worker goes on
                for item in batch:
                    _deliver(item, None, err)
                continue
            finally:
                self.on_batch(len(batch), time.perf_counter() - start)
            for item, result in zip(batch, results):
                _deliver(item, result)
