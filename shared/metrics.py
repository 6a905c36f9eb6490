"""Framework-free metrics on numpy outputs of either twin."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(log_softmax(logits, axis))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-logits, axis=-1)[..., :k]
    return float(np.mean(np.any(top == labels[..., None], axis=-1)))


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logp = log_softmax(logits)
    return float(-np.mean(np.take_along_axis(logp, labels[..., None], axis=-1)))


def evaluate_arrays(spec, model, arrays: dict[str, np.ndarray], config, batch_size: int = 256) -> dict:
    """Forward a whole split in eval mode, concatenate the outputs, and score them with the task."""
    from shared.data.iterator import BatchIterator

    task = spec.task_module
    if hasattr(task, "evaluate"):
        return task.evaluate(spec, model, arrays, config, batch_size)
    outputs: dict[str, list] = {}
    for batch in BatchIterator(arrays, batch_size, shuffle=False, drop_last=False):
        for key, value in spec.forward(model, batch, training=False).items():
            outputs.setdefault(key, []).append(value)
    joined = {k: np.concatenate(v) for k, v in outputs.items()}
    return task.metrics(joined, arrays)
