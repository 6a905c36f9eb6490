"""Framework-free metrics on numpy outputs of either twin."""

from __future__ import annotations

import numpy as np

from shared.data.iterator import BatchIterator
from shared.data.prefetch import prefetch


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
    """Forward a split in eval mode batch by batch (each batch's rows read and decoded while the previous
    one runs; no whole-split input array), concatenate the outputs, and score them with the task."""
    task = spec.task_module
    if hasattr(task, "evaluate"):
        return task.evaluate(spec, model, arrays, config, batch_size)
    outputs: dict[str, list] = {}
    for batch in prefetch(BatchIterator(arrays, batch_size, shuffle=False, drop_last=False).batches()):
        for key, value in spec.forward(model, batch, training=False).items():
            outputs.setdefault(key, []).append(value)
    joined = {k: np.concatenate(v) for k, v in outputs.items()}
    return task.metrics(joined, arrays)


def rmse(predictions: np.ndarray, targets: np.ndarray) -> float:
    diff = np.asarray(predictions, np.float64) - np.asarray(targets, np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def mae(predictions: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predictions, np.float64) - np.asarray(targets, np.float64))))


def positive_rank(scores: np.ndarray) -> np.ndarray:
    """scores (users, candidates) with each row's positive item in column 0 -> its 0-based rank among the
    candidates. A tie counts against the positive, so a constant scorer never hits."""
    scores = np.asarray(scores, np.float64)
    return np.sum(scores[:, 1:] >= scores[:, :1], axis=1)


def hit_rate_at_k(scores: np.ndarray, k: int) -> float:
    """HR@K (He et al. 2017): the fraction of users whose held-out item ranks in the top k."""
    return float(np.mean(positive_rank(scores) < k))


def ndcg_at_k(scores: np.ndarray, k: int) -> float:
    """NDCG@K with one relevant item: 1 / log2(rank + 2) when it ranks in the top k, else 0; mean over users."""
    rank = positive_rank(scores)
    return float(np.mean(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0)))


def random_ranking_at_k(candidates: int, k: int) -> tuple[float, float]:
    """Expected (HR@K, NDCG@K) of a uniformly random ranking of `candidates` items (the positive among them)."""
    top = min(k, candidates)
    return top / candidates, float(np.sum(1.0 / np.log2(np.arange(top) + 2.0)) / candidates)
