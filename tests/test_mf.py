"""recsys/mf: Koren's formula and L2 term in both twins, sparse-table rules, the rating task's data checks,
metrics and top-K prediction, and one-line errors from the CLIs."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data import load
from shared.data.recsys import to_dataset_dict
from shared.errors import UserError
from shared.tasks import rating
from tests.conftest import assert_one_line_error, run_tool
from zoo import registry

SPEC = registry.get("recsys/mf")
TINY_DATA = {"num_users": 40, "num_items": 30, "num_ratings": 500}


def tiny_config(**overrides):
    return SPEC.config(
        **{
            "num_users": 40,
            "num_items": 30,
            "num_factors": 3,
            "l2_factors": 0.1,
            "l2_biases": 0.05,
            **overrides,
        }
    )


def test_both_twins_compute_koren_rating_and_the_written_l2_loss(frameworks):
    from shared.data.keras_data import to_tensors as keras_tensors
    from shared.data.torch_data import to_tensors as torch_tensors

    config = tiny_config()
    torch_model, keras_model = SPEC.build("torch", config), SPEC.build("keras", config)
    w = SPEC.get_weights(torch_model)
    SPEC.set_weights(keras_model, w)
    batch = SPEC.example_batch(config, batch_size=6, seed=3)
    u, i = batch["user"], batch["item"]
    p, q, b_u, b_i = (
        w["user_factors.weight"][u],
        w["item_factors.weight"][i],
        w["user_bias.weight"][u, 0],
        w["item_bias.weight"][i, 0],
    )
    expected = w["global_bias"] + b_u + b_i + np.sum(p * q, axis=1)
    penalty = 0.1 * (np.sum(p * p, 1) + np.sum(q * q, 1)) + 0.05 * (b_u**2 + b_i**2)
    expected_loss = np.mean((expected - batch["rating"]) ** 2) + np.mean(penalty)
    assert w["global_bias"] == pytest.approx(3.0)  # the midpoint of the declared 1..5 scale
    assert all(np.array_equal(v, SPEC.get_weights(SPEC.build("keras", config))[k]) for k, v in w.items())
    for model, tensors in ((torch_model, torch_tensors(batch)), (keras_model, keras_tensors(batch))):
        out = SPEC.forward(model, batch)
        np.testing.assert_allclose(out["rating"], expected, rtol=1e-6)
        np.testing.assert_allclose(out["penalty"], penalty, rtol=1e-5)
        impl = SPEC.impl("torch" if model is torch_model else "keras")
        loss = impl.compute_loss(impl.call(model, tensors), tensors, config)
        assert float(np.asarray(loss.detach() if hasattr(loss, "detach") else loss)) == pytest.approx(
            expected_loss, rel=1e-5
        )


def test_sparse_tables_need_plain_sgd():
    with pytest.raises(UserError, match="sparse_embeddings=true needs plain SGD.*--set optimizer=sgd"):
        SPEC.config(sparse_embeddings=True)
    with pytest.raises(UserError, match="sgd_momentum=0.9"):
        SPEC.config(sparse_embeddings=True, optimizer="sgd")
    assert SPEC.config(sparse_embeddings=True, optimizer="sgd", sgd_momentum=0.0).sparse_embeddings


def test_sparse_gradient_checks_fail_when_the_twins_differ(frameworks):
    """The extra checks can fail: a Keras twin whose item factors differ disagrees on the touched rows."""
    from shared.crosscheck import build_float64, float64_batch
    from zoo.recsys.sparse_checks import check_sparse_gradients, sparse_batch, sparse_config

    config = sparse_config(SPEC, tiny_config())
    batch = float64_batch(sparse_batch(SPEC, config))
    torch_model, keras_model = build_float64(SPEC, config)
    checks = check_sparse_gradients(SPEC, config, torch_model, keras_model, batch)
    assert all(c.passed for c in checks), [(c.name, c.max_error) for c in checks if not c.passed]
    weights = SPEC.get_weights(torch_model)
    weights["item_factors.weight"] = 1.5 * weights["item_factors.weight"]
    SPEC.set_weights(keras_model, weights)
    checks = {c.name: c for c in check_sparse_gradients(SPEC, config, torch_model, keras_model, batch)}
    assert checks["sparse_grads_are_sparse"].passed and checks["sparse_grad_rows"].passed
    assert not checks["sparse_grad_touched_rows"].passed and not checks["sparse_grad_whole_table"].passed


def test_prepare_checks_table_sizes_scale_and_kind():
    data = load("planted-ratings", **TINY_DATA)
    splits, state = rating.prepare(data, tiny_config())
    assert set(splits) == {"train", "validation", "test"} and "true_rating" in splits["test"]
    assert state["source"] == {
        "data": "planted-ratings",
        "kwargs": {**TINY_DATA, "rank": 3, "noise": 0.3, "seed": 0},
    }
    with pytest.raises(UserError, match="has 40 users but .* num_users=20: pass --set num_users=40"):
        rating.prepare(data, tiny_config(num_users=20))
    with pytest.raises(UserError, match="run 1..5 but the model declares 2..5: pass --set rating_min=1"):
        rating.prepare(data, tiny_config(rating_min=2.0))
    off_scale = to_dataset_dict(
        {
            s: {
                "user": np.array([0, 1]),
                "item": np.array([2, 3]),
                "rating": np.array([4.0, 7.5], np.float32),
            }
            for s in ("train", "validation", "test")
        },
        {
            "kind": "explicit",
            "source": {"data": "x", "kwargs": {}},
            "num_users": 40,
            "num_items": 30,
            "rating_min": 1.0,
            "rating_max": 5.0,
            "user_ids": None,
            "item_ids": None,
        },
    )
    with pytest.raises(UserError, match="row 1 has rating 7.5, outside the declared scale 1..5"):
        rating.prepare(off_scale, tiny_config())
    implicit = load("planted-implicit", num_users=40, num_items=200, mean_interactions=10)
    with pytest.raises(UserError, match="holds implicit feedback"):
        rating.prepare(implicit, tiny_config())
    with pytest.raises(UserError, match="item index 30 is out of range: .* num_items=30"):
        rating.check_batch(tiny_config(), {"user": np.array([1]), "item": np.array([30])})


def test_metrics_rmse_mae_and_the_noise_floor():
    out = rating.metrics(
        {"rating": np.array([3.0, 4.0, 2.0])},
        {"rating": np.array([3.0, 5.0, 4.0]), "true_rating": np.array([3.5, 4.5, 4.0])},
    )
    assert out["rmse"] == pytest.approx(np.sqrt(5 / 3)) and out["mae"] == pytest.approx(1.0)
    assert out["floor_rmse"] == pytest.approx(np.sqrt(0.5 / 3))


def test_predict_lists_the_top_k_items_the_user_has_not_rated(frameworks, capsys):
    data = load("planted-ratings", **TINY_DATA)
    config = tiny_config()
    _, state = rating.prepare(data, config)
    model = SPEC.build("torch", config)
    rating.predict(SPEC, model, config, state, ["7"], {"top_k": 5})
    lines = capsys.readouterr().out.splitlines()
    rated = set()
    for split in data:
        rows = data[split].with_format("numpy")[:]
        rated |= set(rows["item"][rows["user"] == 7].tolist())
    assert lines[0].startswith(f"user 7: {len(rated)} items already rated, top 5 of {30 - len(rated)} others")
    items = [int(line.split()[2]) for line in lines[1:]]
    scores = [float(line.split()[-1]) for line in lines[1:]]
    assert len(items) == 5 and not set(items) & rated and scores == sorted(scores, reverse=True)
    everything = SPEC.forward(model, {"user": np.full(30, 7), "item": np.arange(30)})["rating"]
    unrated = [i for i in np.argsort(-everything) if i not in rated]
    assert items == unrated[:5]
    with pytest.raises(
        UserError, match="user '41' is not in planted-ratings: expected one of its 40 user ids"
    ):
        rating.predict(SPEC, model, config, state, ["41"], {"top_k": 5})


@pytest.mark.slow  # trains a checkpoint, then starts two tools that each import a framework
def test_cli_errors_for_unknown_users_and_data_larger_than_the_tables(frameworks, tmp_path):
    from shared.train.run import train

    config = tiny_config(epochs=1, batch_size=64)
    train(
        SPEC,
        config,
        "torch",
        data="planted-ratings",
        data_kwargs=TINY_DATA,
        out=tmp_path / "run",
        threads=1,
        progress=False,
    )
    proc = run_tool("tools/predict.py", str(tmp_path / "run"), "--fw", "torch", "12", "abc")
    assert_one_line_error(proc, "user 'abc' is not in planted-ratings")
    proc = run_tool("tools/evaluate.py", str(tmp_path / "run"), "--fw", "keras", "--data", "planted-ratings")
    assert_one_line_error(proc, "the data has 800 users but the model's table has num_users=40")


@pytest.mark.slow  # two fresh processes, each building 100k-user x 100k-item tables
def test_sparse_tables_keep_a_100k_table_step_from_allocating_a_table_copy():
    from zoo.recsys.memory import measure_in_subprocess

    dense = measure_in_subprocess("recsys/mf", "torch", "sgd, dense tables")
    sparse = measure_in_subprocess("recsys/mf", "torch", "sgd, sparse tables")
    assert dense["step_peak_mib"] > 0.9 * dense["tables_mib"]  # the measurement sees table-sized gradients
    assert sparse["step_peak_mib"] < 0.05 * sparse["tables_mib"]
