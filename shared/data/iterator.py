"""A deterministic, framework-free batch iterator: the same (seed, epoch, rank, world size) gives the same
batches in both twins, on one process or sharded over many.

It reads only each batch's rows: from numpy arrays, or from a shared.data.columns.Split whose columns
are read from the dataset's files in their stored dtype. batches() yields what the twins consume (each
column through its decode, in numpy); raw_batches() yields the stored rows and `decode` says how to
convert them, so that the conversion can run on the device (shared/data/torch_data.py to_tensors).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from shared.data.columns import Split, decode_batch


class BatchIterator:
    """Batches of a dict of equal-length arrays (numpy arrays or row readers), or of a Split.

    Each epoch is a permutation drawn from (seed, epoch). With world_size > 1 the epoch's batches are
    dealt out round-robin: rank r takes global batches r, r + W, ... so the W ranks together see exactly
    what one process with the same global batch sees, split in W slices.
    """

    def __init__(
        self,
        arrays: Mapping,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        lengths = {k: len(v) for k, v in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays of unequal length: {lengths}")
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(
                f"global batch size {batch_size} must be a positive multiple of world size {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.arrays, self.batch_size, self.shuffle, self.seed = arrays, batch_size, shuffle, seed
        # Stored columns and their decode (a Split), or arrays already in the dtype the twins consume.
        split = isinstance(arrays, Split)
        self.stored = dict(arrays.raw if split else arrays)
        self.decode = dict(arrays.decode) if split else {}
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.num_examples = next(iter(lengths.values()))
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(self.num_examples, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def index(self, epoch: int, b: int) -> np.ndarray:
        """The rows of global batch `b` of `epoch` that this rank takes."""
        order = self._order(epoch)
        index = order[b * self.batch_size : (b + 1) * self.batch_size]
        if self.world_size > 1:
            per_rank = self.batch_size // self.world_size
            index = index[self.rank * per_rank : (self.rank + 1) * per_rank]
        return index

    def _order(self, epoch: int) -> np.ndarray:
        if getattr(self, "_cached", (None,))[0] != epoch:
            self._cached = (epoch, self.order(epoch))
        return self._cached[1]

    def raw_batch(self, epoch: int, b: int) -> dict[str, np.ndarray]:
        """Batch `b` of `epoch` as stored (convert it with `decode`)."""
        index = self.index(epoch, b)
        return {k: np.asarray(v[index]) for k, v in self.stored.items()}

    def batch(self, epoch: int, b: int) -> dict[str, np.ndarray]:
        """Batch `b` of `epoch` as the twins consume it (decoded in numpy)."""
        return decode_batch(self.raw_batch(epoch, b), self.decode)

    def raw_batches(self, epoch: int | None = None, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """This rank's batches of `epoch` from batch index `start`, as stored."""
        epoch = self.epoch if epoch is None else epoch
        for b in range(start, len(self)):
            yield self.raw_batch(epoch, b)

    def batches(self, epoch: int | None = None, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Global batches of `epoch` from batch index `start`, sliced to this rank's share, decoded."""
        for raw in self.raw_batches(epoch, start):
            yield decode_batch(raw, self.decode)

    def __iter__(self):
        return self.batches()
