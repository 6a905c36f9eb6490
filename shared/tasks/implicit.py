"""Implicit-feedback ranking (recsys/neumf): batches {user, item int64, label float32 0/1}, outputs {logits}.

Training rows are the observed interactions plus `num_negatives` sampled non-interactions per interaction,
drawn once from config.seed, so both twins train on identical samples. Evaluation follows He et al. (2017):
each user's held-out item is ranked against 99 sampled negatives (blocks of 100 rows, positive first);
HR@10 and NDCG@10 are reported beside the same metrics of a popularity ranking and of a random ranking,
and, on planted data, of the planted model's own scores (the best possible).
"""

from __future__ import annotations

import numpy as np

from shared.data.recsys import meta, sample_negatives, to_implicit
from shared.errors import UserError
from shared.metrics import hit_rate_at_k, ndcg_at_k, random_ranking_at_k
from shared.tasks import check_keys
from shared.tasks.rating import check_ids, recommend, recsys_state

K = 10
PRIMARY_METRIC = f"hr@{K}"
HIGHER_IS_BETTER = True
METRICS = (
    f"hr@{K}",
    f"ndcg@{K}",
    "loss",
    f"pop_hr@{K}",
    f"pop_ndcg@{K}",
    f"random_hr@{K}",
    f"random_ndcg@{K}",
    f"oracle_hr@{K}",
    f"oracle_ndcg@{K}",
)  # oracle_ on planted data


def example_batch(config, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "user": rng.integers(0, config.num_users, size=batch_size).astype(np.int64),
        "item": rng.integers(0, config.num_items, size=batch_size).astype(np.int64),
        "label": rng.integers(0, 2, size=batch_size).astype(np.float32),
    }


def check_batch(config, batch: dict) -> None:
    check_ids(config, batch)
    if "label" in batch:
        check_keys(batch, {"label": ("f", 1)})


def prepare(dataset, config, state: dict | None = None):
    """A recommender DatasetDict (implicit, or explicit ratings turned into interactions with the leave-one-out
    protocol) -> numpy splits. Train: positives + sampled negatives; validation/test: the ranking blocks with
    each candidate item's training popularity (and true_score on planted data)."""
    if meta(dataset)["kind"] == "explicit":
        dataset = to_implicit(dataset)
    described = meta(dataset)
    state = recsys_state(described, config, state, "implicit")
    raw = {name: dataset[name].with_format("numpy")[:] for name in dataset}
    user, item = raw["train"]["user"].astype(np.int64), raw["train"]["item"].astype(np.int64)
    positives = np.unique(user * config.num_items + item)
    rng = np.random.default_rng([config.seed, 11])
    negatives = sample_negatives(user, positives, config.num_items, config.num_negatives, rng)  # (P, n)
    splits = {
        "train": {
            "user": np.concatenate([user, np.repeat(user, config.num_negatives)]),
            "item": np.concatenate([item, negatives.reshape(-1)]),
            "label": np.concatenate([np.ones(len(user), np.float32), np.zeros(negatives.size, np.float32)]),
        }
    }
    popularity = np.bincount(item, minlength=config.num_items).astype(np.float32)
    for name in ("validation", "test"):
        columns = raw[name]
        splits[name] = {
            "user": columns["user"].astype(np.int64),
            "item": columns["item"].astype(np.int64),
            "label": columns["label"].astype(np.float32),
            "popularity": popularity[columns["item"]],
        }
        if "true_score" in columns:  # planted data: the planted propensity, the best possible ranking
            splits[name]["true_score"] = columns["true_score"].astype(np.float32)
    return splits, state


def candidate_blocks(labels: np.ndarray) -> int:
    """Rows per user in an evaluation split: 1 positive then its negatives, checked."""
    starts = np.nonzero(labels > 0)[0]
    size = int(starts[1] - starts[0]) if len(starts) > 1 else len(labels)
    blocks = labels.reshape(-1, size) if len(starts) and len(labels) % size == 0 else None
    if blocks is None or starts[0] != 0 or not (blocks[:, 0] == 1).all() or blocks[:, 1:].any():
        raise UserError(
            "evaluation rows must come in equal blocks of one positive (label 1) followed by its "
            "negatives (label 0), as shared/data/recsys.py's leave_one_out writes them"
        )
    return size


def binary_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    x, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    return float(np.mean(np.maximum(x, 0.0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def metrics(outputs: dict, batch: dict) -> dict[str, float]:
    """HR@10 / NDCG@10 of the model and of the baselines, and the cross-entropy on the candidates."""
    labels = np.asarray(batch["label"])
    if not (labels == 0).any():  # training rows, not ranking blocks
        return {"loss": binary_cross_entropy(outputs["logits"], labels)}
    size = candidate_blocks(labels)
    scores = np.asarray(outputs["logits"]).reshape(-1, size)
    result = {
        f"hr@{K}": hit_rate_at_k(scores, K),
        f"ndcg@{K}": ndcg_at_k(scores, K),
        "loss": binary_cross_entropy(outputs["logits"], labels),
    }
    # Popularity: the number of training interactions; ties broken at random (a fixed seed).
    jitter = np.random.default_rng(0).uniform(0.0, 0.5, size=labels.shape)
    baselines = {"pop": batch["popularity"] + jitter}
    if "true_score" in batch:
        baselines["oracle"] = batch["true_score"]
    for name, values in baselines.items():
        values = np.asarray(values).reshape(-1, size)
        result[f"{name}_hr@{K}"], result[f"{name}_ndcg@{K}"] = hit_rate_at_k(values, K), ndcg_at_k(values, K)
    result[f"random_hr@{K}"], result[f"random_ndcg@{K}"] = random_ranking_at_k(size, K)
    return result


def predict(spec, model, config, state: dict, inputs: list[str], options: dict) -> None:
    """tools/predict.py RUN --fw keras USER_ID ...: top-K items the user has not interacted with."""

    def probability(out):
        return 1.0 / (1.0 + np.exp(-np.asarray(out["logits"], np.float64)))

    recommend(spec, model, config, state, inputs, options, probability, "p(interact)")
