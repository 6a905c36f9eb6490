"""Explicit rating prediction (recsys/mf): batches {user, item int64, rating float32}, outputs {rating}.

Also the helpers both recommender tasks share (shared/tasks/implicit.py imports them): id checks against
the model's table sizes, the preprocessing state (raw ids, where the data came from) and top-K
recommendation for tools/predict.py.
"""

from __future__ import annotations

import numpy as np

from shared.data import load
from shared.data.recsys import meta, movielens_titles
from shared.errors import UserError
from shared.metrics import mae, rmse
from shared.tasks import check_keys

PRIMARY_METRIC = "rmse"
HIGHER_IS_BETTER = False
METRICS = ("rmse", "mae", "floor_rmse")  # floor_rmse on planted data


def example_batch(config, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "user": rng.integers(0, config.num_users, size=batch_size).astype(np.int64),
        "item": rng.integers(0, config.num_items, size=batch_size).astype(np.int64),
        "rating": rng.uniform(config.rating_min, config.rating_max, size=batch_size).astype(np.float32),
    }


def check_ids(config, batch: dict) -> None:
    """user and item are int (B,) arrays of indices inside the model's embedding tables."""
    check_keys(batch, {"user": ("i", 1), "item": ("i", 1)})
    for key, size in (("user", config.num_users), ("item", config.num_items)):
        ids = np.asarray(batch[key])
        outside = (ids < 0) | (ids >= size)
        if outside.any():
            raise UserError(
                f"{key} index {int(ids[outside][0])} is out of range: the model's table has "
                f"num_{key}s={size} (indices 0..{size - 1})"
            )


def check_batch(config, batch: dict) -> None:
    check_ids(config, batch)
    if "rating" in batch:
        check_keys(batch, {"rating": ("f", 1)})


def recsys_state(described: dict, config, state: dict | None, kind: str) -> dict:
    """The preprocessing state of a recommender checkpoint: table sizes, raw ids and the data's source.
    Checks that the data fits the model (and, when evaluating, that it is the data the model was trained on)."""
    for key in ("user", "item"):
        found, size = described[f"num_{key}s"], getattr(config, f"num_{key}s")
        if found > size:
            raise UserError(
                f"the data has {found:,} {key}s but the model's table has num_{key}s={size:,}: pass "
                f"--set num_users={described['num_users']} --set num_items={described['num_items']}"
            )
    fresh = {
        "kind": kind,
        "source": described["source"],
        "num_users": described["num_users"],
        "num_items": described["num_items"],
        "user_ids": described["user_ids"],
        "item_ids": described["item_ids"],
    }
    if state is not None:
        differ = [k for k in ("num_users", "num_items", "user_ids", "item_ids") if state.get(k) != fresh[k]]
        if differ:
            raise UserError(
                f"the data's {' and '.join(differ)} differ from those the checkpoint was trained on "
                f"({state['source']['data']}): evaluate it on that data"
            )
        return state
    return fresh


def prepare(dataset, config, state: dict | None = None):
    """A recommender DatasetDict of explicit ratings -> numpy splits {user, item, rating[, true_rating]}."""
    described = meta(dataset)
    if described["kind"] != "explicit":
        raise UserError(
            f"{described['source']['data']} holds implicit feedback (no ratings): recsys/mf needs "
            "explicit ratings, e.g. planted-ratings or movielens:/path/to/ml-1m"
        )
    state = recsys_state(described, config, state, "ratings")
    low, high = config.rating_min, config.rating_max
    if described["rating_min"] < low or described["rating_max"] > high:
        raise UserError(
            f"the data's ratings run {described['rating_min']:g}..{described['rating_max']:g} but the "
            f"model declares {low:g}..{high:g}: pass --set rating_min={described['rating_min']:g} "
            f"--set rating_max={described['rating_max']:g}"
        )
    splits = {}
    for name in dataset:
        columns = dataset[name].with_format("numpy")[:]
        rating = columns["rating"].astype(np.float32)
        outside = np.nonzero((rating < low) | (rating > high))[0]
        if len(outside):
            raise UserError(
                f"{name} row {int(outside[0])} has rating {rating[outside[0]]:g}, outside the declared "
                f"scale {low:g}..{high:g}"
            )
        splits[name] = {
            "user": columns["user"].astype(np.int64),
            "item": columns["item"].astype(np.int64),
            "rating": rating,
        }
        if "true_rating" in columns:  # planted data: the noise-free rating, for the noise floor
            splits[name]["true_rating"] = columns["true_rating"].astype(np.float32)
    return splits, state


def metrics(outputs: dict, batch: dict) -> dict[str, float]:
    """RMSE and MAE; on planted data also floor_rmse, the RMSE of the true ratings (the best possible)."""
    result = {
        "rmse": rmse(outputs["rating"], batch["rating"]),
        "mae": mae(outputs["rating"], batch["rating"]),
    }
    if "true_rating" in batch:
        result["floor_rmse"] = rmse(batch["true_rating"], batch["rating"])
    return result


class Catalogue:
    """What top-K recommendation needs besides the model, read once: the raw user and item ids, the
    (user, item) pairs already rated or interacted with (from the data the model was trained on, or
    options["data"]) and MovieLens titles where the data has them."""

    def __init__(self, config, state: dict, options: dict):
        source = state["source"]
        data, kwargs = (options["data"], {}) if options.get("data") else (source["data"], source["kwargs"])
        dataset = load(data, **kwargs)
        described = meta(dataset)
        if described["user_ids"] != state["user_ids"] or described["item_ids"] != state["item_ids"]:
            raise UserError(
                f"{data} has other user or item ids than the data the checkpoint was trained on "
                f"({source['data']}): pass that data with --opt data=..."
            )
        seen = []
        for name in dataset:
            columns = dataset[name].with_format("numpy")[:]
            keep = columns["label"] > 0 if "label" in columns else slice(None)
            seen.append(columns["user"][keep] * config.num_items + columns["item"][keep])
        self.data, self.num_items, self.stride = data, state["num_items"], config.num_items
        self.seen = np.unique(np.concatenate(seen))
        self.user_ids = state["user_ids"] or list(range(state["num_users"]))
        self.item_ids = state["item_ids"] or list(range(state["num_items"]))
        self.user_index = {raw: i for i, raw in enumerate(self.user_ids)}
        self.item_index = {raw: i for i, raw in enumerate(self.item_ids)}
        self.titles = movielens_titles(data.partition(":")[2]) if data.startswith("movielens:") else {}

    def user(self, text) -> int:
        """The model's row of a raw user id (an int or its text); a UserError names the valid range."""
        try:
            return self.user_index[int(text)]
        except (TypeError, ValueError, KeyError):
            raise UserError(
                f"user {text!r} is not in {self.data}: expected one of its {len(self.user_ids):,} user ids "
                f"({min(self.user_ids)}..{max(self.user_ids)})"
            ) from None

    def item(self, text) -> int:
        try:
            return self.item_index[int(text)]
        except (TypeError, ValueError, KeyError):
            raise UserError(
                f"item {text!r} is not in {self.data}: expected one of its {len(self.item_ids):,} item ids "
                f"({min(self.item_ids)}..{max(self.item_ids)})"
            ) from None

    def describe(self, i: int, score: float) -> dict:
        entry = {"item": self.item_ids[i], "score": float(score)}
        if self.item_ids[i] in self.titles:
            entry["title"] = self.titles[self.item_ids[i]]
        return entry

    def top_items(self, user: int, scores: np.ndarray, k: int) -> dict:
        """The k best-scored items the user has not rated, from the scores of every item (in table order)."""
        items = np.arange(self.num_items, dtype=np.int64)
        rated = np.isin(user * self.stride + items, self.seen)
        candidates = np.nonzero(~rated)[0]
        top = candidates[np.argsort(-np.asarray(scores, np.float64)[candidates], kind="stable")[:k]]
        return {
            "already_rated": int(rated.sum()),
            "candidates": len(candidates),
            "items": [{"rank": rank, **self.describe(i, scores[i])} for rank, i in enumerate(top, start=1)],
        }


def recommend(spec, model, config, state: dict, inputs: list[str], options: dict, score, what: str) -> None:
    """Print the top-K items for each raw user id in `inputs`, excluding the items the user already rated or
    interacted with (read from the data the model was trained on, or --opt data=NAME)."""
    catalogue = Catalogue(config, state, options)
    k = int(options.get("top_k", 10))
    for text in inputs:
        user = catalogue.user(text)
        items = np.arange(state["num_items"], dtype=np.int64)
        scores = []
        for start in range(0, len(items), config.eval_batch_size):
            chunk = items[start : start + config.eval_batch_size]
            batch = {"user": np.full(len(chunk), user, np.int64), "item": chunk}
            scores.append(score(spec.forward(model, batch, training=False)))
        result = catalogue.top_items(user, np.concatenate(scores).astype(np.float64), k)
        print(
            f"user {text}: {result['already_rated']} items already rated, top {len(result['items'])} of "
            f"{result['candidates']:,} others"
        )
        for entry in result["items"]:
            title = f"  {entry['title']}" if "title" in entry else ""
            print(f"  {entry['rank']:>3}. item {entry['item']}{title}  {what} {entry['score']:.3f}")


def predict(spec, model, config, state: dict, inputs: list[str], options: dict) -> None:
    """tools/predict.py RUN --fw torch USER_ID ...: top-K unrated items by predicted rating."""
    recommend(spec, model, config, state, inputs, options, lambda out: out["rating"], "predicted rating")
