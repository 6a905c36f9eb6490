"""Read ahead: a background thread pulls the next batches (numpy row reads, which release the GIL) from
an iterator while the caller's step runs. Framework-free; the trainers' device-side input paths consume
it (an iterator of numpy batch dicts in, the same batches in the same order out).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(batches: Iterable, depth: int = 2) -> Iterator:
    """The items of `batches`, in order, produced up to `depth` ahead by a daemon thread. An exception in
    the producer is raised in the consumer; closing the generator (or leaving a loop over it) stops the
    producer after at most one more item."""
    if depth < 1:
        yield from batches
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_END)
        except BaseException as err:  # handed to the consumer
            items.put(_Failure(err))

    thread = threading.Thread(target=produce, name="zoo-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def stream(iterator, epoch: int, start: int = 0, depth: int = 2) -> tuple[Iterator[dict], dict]:
    """(batches, decode) for a trainer's epoch from batch `start`: the stored rows read ahead by a thread
    and the per-column decode that turns them into what the twins consume (shared/data/columns.py), for
    a BatchIterator; for any other object with the iterator interface (len() and batches(epoch, start)),
    its batches as they are and no decode."""
    if hasattr(iterator, "raw_batches"):
        return prefetch(iterator.raw_batches(epoch, start), depth), dict(iterator.decode)
    return iter(iterator.batches(epoch, start)), {}
