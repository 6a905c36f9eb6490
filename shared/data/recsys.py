"""Recommender datasets (framework-free): planted low-rank ratings, their implicit version, MovieLens.

    planted-ratings       explicit ratings r = mu + b_u + b_i + p_u . q_i + noise, random 80/10/10 split
    planted-implicit      who-interacted-with-what drawn from the same planted factors, leave-one-out
    movielens:/path       the official ml-100k, ml-1m or ml-20m files read from a local folder (the licence
                          forbids redistribution, so nothing is downloaded), random 80/10/10 split

Every dataset is a DatasetDict whose splits carry a JSON description (read it with `meta`): sizes, rating
scale, raw ids, where the data came from (so tools/predict.py can find a user's history) and, for
planted data, the best score any model can reach. Ids in the `user` / `item` columns are contiguous
indices 0..num_users-1 / 0..num_items-1; MovieLens raw ids are kept in the description.

Implicit data follows He et al. (2017): each user's latest interaction is the test item, the one before
it the validation item; each is ranked against 99 items the user never interacted with, sampled once
with a fixed seed. Evaluation rows come in blocks of 1 + 99 per user, the positive first.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from shared.data import store
from shared.data.catalog import register
from shared.errors import UserError

EVAL_NEGATIVES = 99
# The planted model's parts are bounded so that every rating lies inside the declared 1..5 scale:
# mu + b_u + b_i + p_u . q_i stays in [3 - 1.4, 3 + 1.4] (|p_u . q_i| <= |p_u| |q_i| = FACTOR_BOUND by
# Cauchy-Schwarz) and the noise is a normal truncated at +-NOISE_BOUND.
RATING_SCALE = (1.0, 5.0)
GLOBAL_MEAN, BIAS_BOUND, FACTOR_BOUND, NOISE_BOUND = 3.0, 0.3, 0.8, 0.6
USER_ALPHA, ITEM_ALPHA = 0.5, 0.8  # Zipf exponents of user activity and item popularity (long tails)


# ----------------------------------------------------------------------------------------- building blocks
def meta(dataset) -> dict:
    """The recommender description attached to a DatasetDict's splits by the loaders here."""
    first = dataset[next(iter(dataset))]
    try:
        found = json.loads(first.info.description or "")
    except json.JSONDecodeError:
        found = None
    if not isinstance(found, dict) or found.get("kind") not in ("explicit", "implicit"):
        raise UserError(
            f"the dataset (columns {', '.join(first.column_names)}) is not a recommender dataset: "
            "use planted-ratings, planted-implicit or movielens:/path/to/ml-1m"
        )
    return found


def to_dataset_dict(splits: dict[str, dict[str, np.ndarray]], description: dict):
    import datasets

    text = json.dumps(description)
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(columns, info=datasets.DatasetInfo(description=text))
            for name, columns in splits.items()
        }
    )


def zipf_weights(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed probabilities (k + 1) ** -alpha, dealt to ids in a random order."""
    weights = (1.0 + np.arange(n)) ** -alpha
    return weights[rng.permutation(n)] / weights.sum()


def truncated_normal_std(sigma: float, bound: float) -> float:
    """Standard deviation of N(0, sigma^2) truncated to [-bound, bound]: the planted noise floor."""
    a = bound / sigma
    pdf, mass = math.exp(-a * a / 2) / math.sqrt(2 * math.pi), math.erf(a / math.sqrt(2))
    return sigma * math.sqrt(1.0 - 2.0 * a * pdf / mass)


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """keys in sorted_keys, elementwise (sorted_keys: sorted int64)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def sample_negatives(
    users: np.ndarray,
    positive_keys: np.ndarray,
    num_items: int,
    per_user: int,
    rng: np.random.Generator,
    distinct: bool = False,
) -> np.ndarray:
    """(len(users), per_user) items drawn uniformly among those whose key user * num_items + item is not in
    positive_keys (sorted); distinct=True also forbids repeats within a row. Rejection sampling: the same
    rng state gives the same negatives, so both twins train and evaluate on identical samples."""
    users = np.asarray(users, np.int64)
    items = rng.integers(0, num_items, size=(len(users), per_user))
    bad = contains(positive_keys, users[:, None] * num_items + items)
    while True:
        if distinct:
            order = np.argsort(items, axis=1, kind="stable")
            ranked = np.take_along_axis(items, order, axis=1)
            repeat = np.zeros_like(bad)
            np.put_along_axis(repeat, order[:, 1:], ranked[:, 1:] == ranked[:, :-1], axis=1)
            bad |= repeat
        if not bad.any():
            return items
        rows, cols = np.nonzero(bad)
        items[rows, cols] = rng.integers(0, num_items, size=len(rows))
        bad[:] = False
        bad[rows, cols] = contains(positive_keys, users[rows] * num_items + items[rows, cols])


def random_split(columns: dict[str, np.ndarray], seed: int, fractions=(0.8, 0.1, 0.1)) -> dict:
    """Random train / validation / test split of the rows (the explicit-rating protocol)."""
    n = len(next(iter(columns.values())))
    order = np.random.default_rng([seed, 2]).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    parts = {
        "train": order[:n_train],
        "validation": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return {name: {k: v[np.sort(rows)] for k, v in columns.items()} for name, rows in parts.items()}


def leave_one_out(
    user: np.ndarray,
    item: np.ndarray,
    timestamp: np.ndarray,
    num_items: int,
    seed: int,
    eval_negatives: int = EVAL_NEGATIVES,
) -> dict[str, dict[str, np.ndarray]]:
    """Each user's latest interaction -> test, the one before -> validation, the rest -> train; each held-out
    item is followed by eval_negatives distinct items the user never interacted with. Users with fewer than
    three interactions stay in train only."""
    user, item = np.asarray(user, np.int64), np.asarray(item, np.int64)
    order = np.lexsort((np.arange(len(user)), timestamp, user))  # by user, then time, then file order
    u = user[order]
    last = np.r_[u[1:] != u[:-1], True]  # the latest row of each user
    test = last & (np.bincount(u)[u] >= 3)
    validation = np.r_[test[1:], False]  # the row before a test row: the same user's second latest
    keys = np.unique(user * num_items + item)
    busiest = int(np.bincount(keys // num_items).max())
    if busiest + eval_negatives > num_items:
        raise UserError(
            f"a user has interacted with {busiest} of the {num_items} items: fewer than "
            f"{eval_negatives} remain to sample as evaluation negatives"
        )
    rng = np.random.default_rng([seed, 3])
    splits = {}
    for name, mask in (("validation", validation), ("test", test)):
        rows = order[mask]
        negatives = sample_negatives(user[rows], keys, num_items, eval_negatives, rng, distinct=True)
        items = np.concatenate(
            [item[rows, None], negatives], axis=1
        )  # (users, 1 + negatives), positive first
        labels = np.zeros(items.shape, np.float32)
        labels[:, 0] = 1.0
        splits[name] = {
            "user": np.repeat(user[rows], 1 + eval_negatives),
            "item": items.reshape(-1),
            "label": labels.reshape(-1),
        }
    train = order[~(test | validation)]
    splits["train"] = {"user": user[train], "item": item[train], "label": np.ones(len(train), np.float32)}
    return {k: splits[k] for k in ("train", "validation", "test")}


def to_implicit(dataset, eval_negatives: int = EVAL_NEGATIVES):
    """An explicit-rating DatasetDict -> the implicit leave-one-out protocol (every rating is an interaction)."""
    described = meta(dataset)
    if described["kind"] == "implicit":
        return dataset
    rows = {
        k: np.concatenate([dataset[s].with_format("numpy")[k] for s in dataset])
        for k in ("user", "item", "timestamp")
    }
    splits = leave_one_out(
        rows["user"],
        rows["item"],
        rows["timestamp"],
        described["num_items"],
        described.get("seed", 0),
        eval_negatives,
    )
    return to_dataset_dict(splits, {**described, "kind": "implicit", "eval_negatives": eval_negatives})


# ------------------------------------------------------------------------------------------- planted data
def planted_model(num_users: int, num_items: int, rank: int, seed: int) -> dict[str, np.ndarray]:
    """True factors (on spheres of radius sqrt(FACTOR_BOUND)), biases and long-tailed popularity."""
    rng = np.random.default_rng([seed, 1])

    def sphere(n):
        x = rng.standard_normal((n, rank))
        return x / np.linalg.norm(x, axis=1, keepdims=True) * math.sqrt(FACTOR_BOUND)

    return {
        "user_factors": sphere(num_users),
        "item_factors": sphere(num_items),
        "user_bias": rng.uniform(-BIAS_BOUND, BIAS_BOUND, num_users),
        "item_bias": rng.uniform(-BIAS_BOUND, BIAS_BOUND, num_items),
        "user_activity": zipf_weights(num_users, USER_ALPHA, rng),
        "item_popularity": zipf_weights(num_items, ITEM_ALPHA, rng),
    }


def planted_signal(model: dict, user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """The noise-free rating mu + b_u + b_i + p_u . q_i: the best possible prediction."""
    dot = np.einsum("nk,nk->n", model["user_factors"][user], model["item_factors"][item])
    return GLOBAL_MEAN + model["user_bias"][user] + model["item_bias"][item] + dot


@register("planted-ratings")
@store.cached("planted-ratings")
def planted_ratings(
    num_users: int = 800,
    num_items: int = 400,
    rank: int = 3,
    num_ratings: int = 150_000,
    noise: float = 0.3,
    seed: int = 0,
):
    """Explicit ratings of a planted rank-`rank` biased MF model. Pairs are drawn with probability
    proportional to user activity x item popularity (both long-tailed); noise is N(0, noise^2) truncated at
    +-0.6, so ratings stay within 1..5 and the best possible RMSE is that truncated normal's std."""
    if (
        not 0 < noise <= 1.0
        or num_ratings > num_users * num_items // 2
        or min(num_users, num_items, rank) < 1
    ):
        raise UserError(
            f"planted-ratings needs 0 < noise <= 1 and num_ratings <= half of num_users x num_items; "
            f"found noise={noise}, num_ratings={num_ratings}, {num_users} x {num_items}"
        )
    model = planted_model(num_users, num_items, rank, seed)
    rng = np.random.default_rng([seed, 4])
    keys = np.empty(0, np.int64)
    while len(keys) < num_ratings:  # unique (user, item) pairs, in the order first drawn
        draw = 2 * (num_ratings - len(keys))
        new = rng.choice(num_users, draw, p=model["user_activity"]) * num_items + rng.choice(
            num_items, draw, p=model["item_popularity"]
        )
        both = np.concatenate([keys, new])
        _, first = np.unique(both, return_index=True)
        keys = both[np.sort(first)][:num_ratings]
    user, item = keys // num_items, keys % num_items
    noise_draw = rng.normal(0.0, noise, num_ratings)
    while np.any(outside := np.abs(noise_draw) > NOISE_BOUND):
        noise_draw[outside] = rng.normal(0.0, noise, int(outside.sum()))
    signal = planted_signal(model, user, item)
    columns = {
        "user": user,
        "item": item,
        "rating": (signal + noise_draw).astype(np.float32),
        "timestamp": rng.permutation(num_ratings).astype(np.int64),
        "true_rating": signal.astype(np.float32),
    }
    kwargs = {
        "num_users": num_users,
        "num_items": num_items,
        "rank": rank,
        "num_ratings": num_ratings,
        "noise": noise,
        "seed": seed,
    }
    return to_dataset_dict(
        random_split(columns, seed),
        {
            "kind": "explicit",
            "source": {"data": "planted-ratings", "kwargs": kwargs},
            "num_users": num_users,
            "num_items": num_items,
            "rating_min": RATING_SCALE[0],
            "rating_max": RATING_SCALE[1],
            "seed": seed,
            "noise_floor_rmse": truncated_normal_std(noise, NOISE_BOUND),
            "user_ids": None,
            "item_ids": None,
        },
    )


@register("planted-implicit")
@store.cached("planted-implicit")
def planted_implicit(
    num_users: int = 1000,
    num_items: int = 800,
    rank: int = 3,
    mean_interactions: int = 40,
    temperature: float = 0.25,
    seed: int = 0,
    eval_negatives: int = EVAL_NEGATIVES,
):
    """The implicit version of planted-ratings: user u interacts with item i with a propensity
    popularity_i * exp(signal_ui / temperature) (lower temperature: less noise), sampled without replacement
    (Gumbel top-k); each user has at least 5 interactions and long-tailed activity beyond that. The planted
    propensity is kept as `true_score` on evaluation rows: the best possible ranking."""
    if temperature <= 0 or not 5 <= mean_interactions <= (num_items - eval_negatives) // 2:
        raise UserError(
            f"planted-implicit needs temperature > 0 and 5 <= mean_interactions <= "
            f"{(num_items - eval_negatives) // 2}; found {temperature}, {mean_interactions}"
        )
    model = planted_model(num_users, num_items, rank, seed)
    rng = np.random.default_rng([seed, 5])
    counts = 5 + np.floor((mean_interactions - 5) * num_users * model["user_activity"]).astype(np.int64)
    counts = np.minimum(counts, num_items - eval_negatives - 1)
    every_user = np.repeat(np.arange(num_users), num_items)
    every_item = np.tile(np.arange(num_items), num_users)
    score = (
        np.log(model["item_popularity"])[every_item]
        + planted_signal(model, every_user, every_item) / temperature
    ).reshape(num_users, num_items)
    keys = score + rng.gumbel(size=score.shape)  # Gumbel top-k: sampling without replacement
    ranked = np.argsort(-keys, axis=1)
    take = np.arange(num_items)[None, :] < counts[:, None]
    user, item = np.nonzero(take)[0], ranked[take]
    splits = leave_one_out(user, item, rng.random(len(user)), num_items, seed, eval_negatives)
    for name in ("validation", "test"):
        s = splits[name]
        s["true_score"] = score[s["user"], s["item"]].astype(np.float32)
    kwargs = {
        "num_users": num_users,
        "num_items": num_items,
        "rank": rank,
        "mean_interactions": mean_interactions,
        "temperature": temperature,
        "seed": seed,
        "eval_negatives": eval_negatives,
    }
    return to_dataset_dict(
        splits,
        {
            "kind": "implicit",
            "source": {"data": "planted-implicit", "kwargs": kwargs},
            "num_users": num_users,
            "num_items": num_items,
            "eval_negatives": eval_negatives,
            "seed": seed,
            "user_ids": None,
            "item_ids": None,
        },
    )


# ----------------------------------------------------------------------------------------------- MovieLens
# file, separator, header line, rating scale (min, max, step), title file: the official releases' formats.
MOVIELENS = {
    "ml-100k": {
        "ratings": "u.data",
        "sep": "\t",
        "header": None,
        "scale": (1.0, 5.0, 1.0),
        "titles": "u.item",
    },
    "ml-1m": {
        "ratings": "ratings.dat",
        "sep": "::",
        "header": None,
        "scale": (1.0, 5.0, 1.0),
        "titles": "movies.dat",
    },
    "ml-20m": {
        "ratings": "ratings.csv",
        "sep": ",",
        "header": "userId,movieId,rating,timestamp",
        "scale": (0.5, 5.0, 0.5),
        "titles": "movies.csv",
    },
}


def movielens_format(folder: Path) -> str:
    if not folder.is_dir():
        raise UserError(
            f"MovieLens folder {folder} does not exist: pass movielens:/path/to/ml-1m (an unzipped "
            "official release; it cannot be downloaded for you: its licence forbids redistribution)"
        )
    for name, spec in MOVIELENS.items():
        if (folder / spec["ratings"]).is_file():
            return name
    wanted = ", ".join(f"{s['ratings']} ({n})" for n, s in MOVIELENS.items())
    raise UserError(f"{folder} holds no MovieLens ratings file: expected one of {wanted}")


def _bad_line(path: Path, line_no: int, line: str, problem: str) -> UserError:
    return UserError(f"{path}:{line_no}: {problem}; found {line.strip()[:80]!r}")


def _first_bad_line(path: Path, fmt: dict) -> UserError:
    """The slow path, run only when the fast parse failed: name the first malformed line."""
    low, high, step = fmt["scale"]
    with open(path, encoding="latin-1") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if line_no == 1 and fmt["header"]:
                if line.strip() != fmt["header"]:
                    return _bad_line(path, 1, line, f"expected the header {fmt['header']!r}")
                continue
            fields = line.rstrip("\r\n").split(fmt["sep"])
            try:
                if len(fields) != 4:
                    raise ValueError
                int(fields[0]), int(fields[1]), int(fields[3])
                rating = float(fields[2])
            except ValueError:
                return _bad_line(
                    path,
                    line_no,
                    line,
                    f"expected user{fmt['sep']}item{fmt['sep']}rating{fmt['sep']}timestamp with integer ids",
                )
            if not (low <= rating <= high and abs(rating / step - round(rating / step)) < 1e-9):
                return _bad_line(
                    path,
                    line_no,
                    line,
                    f"rating {rating:g} is outside the scale {low:g}..{high:g} in steps of {step:g}",
                )
    return UserError(f"{path}: could not be parsed as MovieLens ratings")


def read_movielens(folder: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """(format name, columns user_id, item_id, rating, timestamp) from an official MovieLens folder."""
    import pandas as pd

    folder = Path(folder).expanduser().resolve()
    name = movielens_format(folder)
    fmt = MOVIELENS[name]
    path = folder / fmt["ratings"]
    raw = path.read_bytes()
    if fmt["sep"] == "::":
        raw = raw.replace(b"::", b"\t")
    try:
        frame = pd.read_csv(
            io.BytesIO(raw),
            sep="\t" if fmt["sep"] == "::" else fmt["sep"],
            header=None,
            skiprows=1 if fmt["header"] else 0,
            dtype=np.float64,
            engine="c",
            names=["user_id", "item_id", "rating", "timestamp"],
        )
        values = {k: frame[k].to_numpy() for k in frame.columns}
    except (ValueError, pd.errors.ParserError):
        raise _first_bad_line(path, fmt) from None
    low, high, step = fmt["scale"]
    ok = np.ones(len(frame), bool)
    for key in ("user_id", "item_id", "timestamp"):
        ok &= np.isfinite(values[key]) & (values[key] == np.round(values[key]))
    r = values["rating"]
    ok &= np.isfinite(r) & (r >= low) & (r <= high) & (np.abs(r / step - np.round(r / step)) < 1e-9)
    if fmt["header"]:
        first = raw[: raw.find(b"\n")].decode("latin-1").strip()
        if first != fmt["header"]:
            raise _bad_line(path, 1, first, f"expected the header {fmt['header']!r}")
    if not ok.all() or len(frame) == 0:
        if len(frame) == 0:
            raise UserError(f"{path} holds no ratings")
        raise _first_bad_line(path, fmt)
    return name, {
        "user_id": values["user_id"].astype(np.int64),
        "item_id": values["item_id"].astype(np.int64),
        "rating": r.astype(np.float32),
        "timestamp": values["timestamp"].astype(np.int64),
    }


def movielens_titles(folder: str | Path) -> dict[int, str]:
    """Raw movie id -> title, from the release's movie file ({} when the folder has none)."""
    import csv

    folder = Path(folder).expanduser().resolve()
    fmt = MOVIELENS[movielens_format(folder)]
    path = folder / fmt["titles"]
    if not path.is_file():
        return {}
    titles = {}
    with open(path, encoding="utf-8" if path.suffix == ".csv" else "latin-1", newline="") as f:
        rows = (
            csv.reader(f)
            if path.suffix == ".csv"
            else (line.rstrip("\r\n").split("|" if path.name == "u.item" else "::") for line in f)
        )
        for line_no, fields in enumerate(rows, start=1):
            if path.suffix == ".csv" and line_no == 1:
                continue
            if len(fields) < 2 or not fields[0].isdigit():
                raise _bad_line(path, line_no, "|".join(fields), "expected movie id and title")
            titles[int(fields[0])] = fields[1]
    return titles


@register("movielens")
def movielens(path: str = "", seed: int = 0):
    """Explicit ratings of an official MovieLens release, random 80/10/10 split; raw ids -> contiguous."""
    if not path:
        raise UserError("movielens needs a folder: pass --data movielens:/path/to/ml-1m")
    name, raw = read_movielens(path)
    user_ids, user = np.unique(raw["user_id"], return_inverse=True)
    item_ids, item = np.unique(raw["item_id"], return_inverse=True)
    columns = {
        "user": user.astype(np.int64),
        "item": item.astype(np.int64),
        "rating": raw["rating"],
        "timestamp": raw["timestamp"],
    }
    low, high, _ = MOVIELENS[name]["scale"]
    folder = str(Path(path).expanduser().resolve())
    return to_dataset_dict(
        random_split(columns, seed),
        {
            "kind": "explicit",
            "source": {"data": f"movielens:{folder}", "kwargs": {"seed": seed}},
            "format": name,
            "num_users": len(user_ids),
            "num_items": len(item_ids),
            "rating_min": low,
            "rating_max": high,
            "seed": seed,
            "user_ids": user_ids.tolist(),
            "item_ids": item_ids.tolist(),
        },
    )
