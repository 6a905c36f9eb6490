"""numpy batches -> what keras.Model.fit consumes: a PyDataset over the framework-free iterator's batches."""

from __future__ import annotations

import keras
import numpy as np


def to_tensors(batch: dict[str, np.ndarray]) -> dict:
    return {k: keras.ops.convert_to_tensor(np.ascontiguousarray(v)) for k, v in batch.items()}


class EpochBatches(keras.utils.PyDataset):
    """One epoch of batches, in the iterator's order; each item is the batch dict (x; the loss reads labels)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
        self._batches = batches

    def __len__(self) -> int:
        return len(self._batches)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self._batches[index]
