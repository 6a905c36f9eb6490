"""shared/data/recsys.py: planted ratings and implicit data, negative sampling, leave-one-out, MovieLens readers
(on small files in the official formats, written here: the licence forbids shipping the real ones)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data import load, recsys
from shared.errors import UserError
from tests.conftest import assert_one_line_error, run_tool

SMALL_RATINGS = {"num_users": 120, "num_items": 60, "num_ratings": 3000}
SMALL_IMPLICIT = {"num_users": 80, "num_items": 300, "mean_interactions": 12}


def columns(dataset, split):
    return dataset[split].with_format("numpy")[:]


def test_planted_ratings_are_deterministic_in_scale_and_long_tailed():
    a, b = load("planted-ratings", **SMALL_RATINGS), load("planted-ratings", **SMALL_RATINGS)
    other = load("planted-ratings", **SMALL_RATINGS, seed=1)
    for split in ("train", "validation", "test"):
        assert np.array_equal(columns(a, split)["rating"], columns(b, split)["rating"])
    assert not np.array_equal(columns(a, "train")["rating"], columns(other, "train")["rating"])
    sizes = [a[s].num_rows for s in ("train", "validation", "test")]
    assert sizes == [2400, 300, 300]
    every = {
        k: np.concatenate([columns(a, s)[k] for s in a]) for k in ("user", "item", "rating", "true_rating")
    }
    assert len(np.unique(every["user"] * 60 + every["item"])) == 3000  # no pair rated twice
    assert every["rating"].min() >= 1.0 and every["rating"].max() <= 5.0
    noise = every["rating"] - every["true_rating"]
    assert np.abs(noise).max() <= recsys.NOISE_BOUND + 1e-6
    described = recsys.meta(a)
    assert described["noise_floor_rmse"] == pytest.approx(float(np.sqrt(np.mean(noise**2))), rel=0.05)
    item_counts = np.sort(np.bincount(every["item"], minlength=60))[::-1]
    assert item_counts[:6].sum() > 2.5 * item_counts[-6:].sum()  # the top 10% far above the bottom 10%


def test_truncated_normal_std_matches_sampling():
    draws = np.random.default_rng(0).normal(0.0, 0.3, 2_000_000)
    kept = draws[np.abs(draws) <= 0.6]
    assert recsys.truncated_normal_std(0.3, 0.6) == pytest.approx(kept.std(), rel=2e-3)
    assert recsys.truncated_normal_std(0.3, 0.6) < 0.3


def test_sample_negatives_avoid_positives_repeat_by_seed_and_can_be_distinct():
    num_items = 30
    users = np.arange(20).repeat(3)
    items = np.random.default_rng(1).integers(0, num_items, len(users))
    keys = np.unique(users * num_items + items)
    first = recsys.sample_negatives(users, keys, num_items, 8, np.random.default_rng(5))
    again = recsys.sample_negatives(users, keys, num_items, 8, np.random.default_rng(5))
    assert np.array_equal(first, again)
    assert not np.isin(users[:, None] * num_items + first, keys).any()
    distinct = recsys.sample_negatives(users, keys, num_items, 25, np.random.default_rng(5), distinct=True)
    assert all(len(set(row)) == 25 for row in distinct)
    assert not np.isin(users[:, None] * num_items + distinct, keys).any()


def test_leave_one_out_holds_out_the_latest_and_second_latest_with_distinct_negatives():
    user = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    item = np.array([5, 6, 7, 8, 1, 2, 3, 4, 5])
    time = np.array([40, 10, 30, 20, 1, 2, 9, 8, 7])
    splits = recsys.leave_one_out(user, item, time, num_items=120, seed=0, eval_negatives=99)
    test, val = splits["test"], splits["validation"]
    assert test["item"].reshape(-1, 100)[:, 0].tolist() == [5, 3]  # user 0's latest (t=40), user 2's (t=9)
    assert val["item"].reshape(-1, 100)[:, 0].tolist() == [7, 4]
    assert sorted(zip(splits["train"]["user"].tolist(), splits["train"]["item"].tolist())) == [
        (0, 6),
        (0, 8),
        (1, 1),
        (1, 2),
        (2, 5),
    ]  # user 1 has two interactions: train only
    for block_user, block in zip(test["user"].reshape(-1, 100)[:, 0], test["item"].reshape(-1, 100)):
        assert len(set(block)) == 100
        assert not set(block[1:]) & set(item[user == block_user])
    assert test["label"].reshape(-1, 100)[:, 0].tolist() == [1.0, 1.0] and test["label"].sum() == 2
    with pytest.raises(UserError, match="fewer than 99 remain"):
        recsys.leave_one_out(user, item, time, num_items=100, seed=0)


def test_planted_implicit_blocks_and_oracle_scores():
    data = load("planted-implicit", **SMALL_IMPLICIT)
    described = recsys.meta(data)
    assert described["kind"] == "implicit" and described["eval_negatives"] == 99
    train = columns(data, "train")
    test = columns(data, "test")
    assert test["user"].size == 80 * 100  # every user has >= 5 interactions, so each is evaluated
    held = test["user"].reshape(-1, 100)[:, 0] * 300 + test["item"].reshape(-1, 100)[:, 0]
    assert not np.isin(held, train["user"] * 300 + train["item"]).any()
    scores = test["true_score"].reshape(-1, 100)
    # The planted propensity ranks held-out items far better than chance (10 of 100).
    assert np.mean(np.sum(scores[:, 1:] >= scores[:, :1], axis=1) < 10) > 0.3
    again = load("planted-implicit", **SMALL_IMPLICIT)
    assert np.array_equal(columns(again, "test")["item"], test["item"])


def test_explicit_ratings_convert_to_the_implicit_protocol():
    data = recsys.to_implicit(load("planted-ratings", num_users=50, num_items=400, num_ratings=3000))
    assert recsys.meta(data)["kind"] == "implicit"
    test = columns(data, "test")
    assert test["user"].size % 100 == 0 and (test["label"].reshape(-1, 100)[:, 0] == 1).all()
    assert data["train"].num_rows + 2 * test["user"].size // 100 == 3000  # two held out per evaluated user


# ------------------------------------------------------------------------------------------------ MovieLens
def write_movielens(folder, fmt: str, rows, extra_line: str | None = None, titles: bool = True):
    """rows: (user, item, rating, timestamp) tuples, written in the official format `fmt`."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "ml-100k":
        lines = [f"{u}\t{i}\t{int(r)}\t{t}" for u, i, r, t in rows]
        name, title_name = "u.data", "u.item"
        title_lines = [
            f"{i}|Movie {i} (1999)|01-Jan-1999||http://x|0|1" for i in sorted({r[1] for r in rows})
        ]
    elif fmt == "ml-1m":
        lines = [f"{u}::{i}::{int(r)}::{t}" for u, i, r, t in rows]
        name, title_name = "ratings.dat", "movies.dat"
        title_lines = [f"{i}::Movie {i} (1999)::Drama" for i in sorted({r[1] for r in rows})]
    else:
        lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:.1f},{t}" for u, i, r, t in rows]
        name, title_name = "ratings.csv", "movies.csv"
        title_lines = ["movieId,title,genres"] + [
            f'{i},"Movie {i}, The (1999)",Drama' for i in sorted({r[1] for r in rows})
        ]
    if extra_line is not None:
        lines.insert(3, extra_line)
    (folder / name).write_text("\n".join(lines) + "\n", encoding="latin-1")
    if titles:
        (folder / title_name).write_text("\n".join(title_lines) + "\n", encoding="latin-1")
    return folder / name


def movielens_rows(n_users=12, n_items=40, per_user=15, half_stars=False, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1) * 7, per_user, replace=False):  # raw ids with gaps
            rating = rng.integers(1, 11) / 2 if half_stars else float(rng.integers(1, 6))
            rows.append((u * 3, int(i), rating, int(rng.integers(1e9, 1.1e9))))
    return rows


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m", "ml-20m"])
def test_movielens_formats_load_with_contiguous_ids_and_titles(tmp_path, fmt):
    rows = movielens_rows(half_stars=fmt == "ml-20m")
    write_movielens(tmp_path / fmt, fmt, rows)
    data = load(f"movielens:{tmp_path / fmt}")
    described = recsys.meta(data)
    assert described["format"] == fmt and described["num_users"] == 12
    assert described["rating_min"] == (0.5 if fmt == "ml-20m" else 1.0)
    assert sum(data[s].num_rows for s in data) == len(rows) and data["train"].num_rows == round(
        0.8 * len(rows)
    )
    every = {k: np.concatenate([columns(data, s)[k] for s in data]) for k in ("user", "item", "rating")}
    raw_pairs = sorted((u, i, r) for u, i, r, _ in rows)
    mapped = sorted(
        zip(
            np.asarray(described["user_ids"])[every["user"]].tolist(),
            np.asarray(described["item_ids"])[every["item"]].tolist(),
            every["rating"].tolist(),
        )
    )
    assert mapped == raw_pairs
    assert every["item"].max() == described["num_items"] - 1  # contiguous despite the gaps in raw ids
    titles = recsys.movielens_titles(tmp_path / fmt)
    assert titles[rows[0][1]].startswith(f"Movie {rows[0][1]}")


@pytest.mark.parametrize(
    "fmt, line, problem",
    [
        ("ml-1m", "7::70::6::978300760", "rating 6 is outside the scale 1..5"),
        ("ml-1m", "7::70::4", "expected user::item::rating::timestamp"),
        ("ml-100k", "7\tseventy\t4\t978300760", "with integer ids"),
        ("ml-20m", "7,70,4.25,978300760", "rating 4.25 is outside the scale 0.5..5 in steps of 0.5"),
        ("ml-20m", "7,70,4.0,97830,0760", "expected user,item,rating,timestamp"),
    ],
)
def test_malformed_movielens_lines_are_named_by_file_and_line(tmp_path, fmt, line, problem):
    path = write_movielens(tmp_path / fmt, fmt, movielens_rows(), extra_line=line)
    with pytest.raises(UserError) as err:
        load(f"movielens:{tmp_path / fmt}")
    assert f"{path}:4:" in str(err.value) and problem in str(err.value)


def test_movielens_folder_problems(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load(f"movielens:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no MovieLens ratings file"):
        load(f"movielens:{tmp_path / 'empty'}")
    bad_header = tmp_path / "ml-20m"
    write_movielens(bad_header, "ml-20m", movielens_rows(half_stars=True))
    path = bad_header / "ratings.csv"
    path.write_text("user,movie,rating,time\n" + path.read_text().split("\n", 1)[1])
    with pytest.raises(UserError, match=rf"{path}:1: expected the header"):
        load(f"movielens:{bad_header}")


def test_train_cli_reports_a_malformed_movielens_file_in_one_line(tmp_path):
    path = write_movielens(tmp_path / "ml-1m", "ml-1m", movielens_rows(), extra_line="7::70::9::978300760")
    proc = run_tool(
        "tools/train.py",
        "zoo/recsys/mf",
        "--fw",
        "torch",
        "--data",
        f"movielens:{tmp_path / 'ml-1m'}",
        "--out",
        str(tmp_path / "run"),
        timeout=300,
    )
    assert_one_line_error(proc, f"{path}:4:", "rating 9 is outside the scale 1..5")
    assert not (tmp_path / "run").exists()
