"""A deterministic, framework-free batch iterator: the same (seed, epoch, rank, world size) gives the same
batches in both twins, on one process or sharded over many.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class BatchIterator:
    """Batches of a dict of equal-length numpy arrays.

    Each epoch is a permutation drawn from (seed, epoch). With world_size > 1 the epoch's batches are
    dealt out round-robin: rank r takes global batches r, r + W, ... so the W ranks together see exactly
    what one process with the same global batch sees, split in W slices.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
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

    def batches(self, epoch: int | None = None, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Global batches of `epoch` from batch index `start`, sliced to this rank's share."""
        order = self.order(self.epoch if epoch is None else epoch)
        per_rank = self.batch_size // self.world_size
        for b in range(start, len(self)):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            if self.world_size > 1:
                index = index[self.rank * per_rank : (self.rank + 1) * per_rank]
            yield {k: v[index] for k, v in self.arrays.items()}

    def __iter__(self):
        return self.batches()
