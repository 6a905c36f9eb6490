"""recsys/neumf: the NeuMF forward pass and loss in both twins, the implicit task's negative sampling, ranking
metrics and baselines, top-K prediction, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data import load
from shared.errors import UserError
from shared.metrics import hit_rate_at_k, ndcg_at_k, random_ranking_at_k
from shared.tasks import implicit
from zoo import registry

SPEC = registry.get("recsys/neumf")
TINY_DATA = {"num_users": 40, "num_items": 200, "mean_interactions": 10}


def tiny_config(**overrides):
    return SPEC.config(
        **{"num_users": 40, "num_items": 200, "mf_dim": 4, "mlp_layers": (8, 6, 4), **overrides}
    )


def test_both_twins_compute_the_paper_forward_pass_and_cross_entropy(frameworks):
    from shared.data.keras_data import to_tensors as keras_tensors
    from shared.data.torch_data import to_tensors as torch_tensors

    config = tiny_config()
    torch_model, keras_model = SPEC.build("torch", config), SPEC.build("keras", config)
    w = SPEC.get_weights(torch_model)
    SPEC.set_weights(keras_model, w)
    batch = SPEC.example_batch(config, batch_size=6, seed=4)
    u, i = batch["user"], batch["item"]
    gmf = w["gmf_user.weight"][u] * w["gmf_item.weight"][i]
    x = np.concatenate([w["mlp_user.weight"][u], w["mlp_item.weight"][i]], axis=1)
    for layer in range(2):
        x = np.maximum(x @ w[f"mlp.{layer}.weight"].T + w[f"mlp.{layer}.bias"], 0.0)
    logits = (np.concatenate([gmf, x], axis=1) @ w["prediction.weight"].T + w["prediction.bias"])[:, 0]
    y = batch["label"]
    expected_loss = np.mean(
        -y * np.log(1 / (1 + np.exp(-logits))) - (1 - y) * np.log(1 - 1 / (1 + np.exp(-logits)))
    )
    for fw, model, tensors in (
        ("torch", torch_model, torch_tensors(batch)),
        ("keras", keras_model, keras_tensors(batch)),
    ):
        np.testing.assert_allclose(SPEC.forward(model, batch)["logits"], logits, rtol=1e-5, atol=1e-7)
        impl = SPEC.impl(fw)
        loss = impl.compute_loss(impl.call(model, tensors), tensors, config)
        assert float(np.asarray(loss.detach() if fw == "torch" else loss)) == pytest.approx(
            expected_loss, rel=1e-5
        )


def test_both_twins_start_from_the_same_weights_drawn_with_the_authors_initialisers(frameworks):
    config = SPEC.config(num_users=3000, num_items=3000, mlp_layers=(64, 256, 8))
    torch_w, keras_w = (SPEC.get_weights(SPEC.build(fw, config)) for fw in ("torch", "keras"))
    assert all(np.array_equal(torch_w[k], keras_w[k]) for k in torch_w)
    assert np.std(torch_w["gmf_user.weight"]) == pytest.approx(0.01, rel=0.05)  # N(0, 0.01^2)
    glorot = np.sqrt(6.0 / (64 + 256))
    assert glorot >= np.abs(torch_w["mlp.0.weight"]).max() > 0.95 * glorot
    assert np.abs(torch_w["prediction.weight"]).max() <= np.sqrt(3.0 / (8 + 8))  # LeCun uniform
    assert not torch_w["mlp.0.bias"].any() and not torch_w["prediction.bias"].any()
    other = SPEC.get_weights(
        SPEC.build("torch", SPEC.config(num_users=3000, num_items=3000, mlp_layers=(64, 256, 8), seed=1))
    )
    assert not np.array_equal(other["gmf_user.weight"], torch_w["gmf_user.weight"])


def test_training_negatives_are_never_positives_and_repeat_by_seed():
    data = load("planted-implicit", **TINY_DATA)
    splits, state = implicit.prepare(data, tiny_config())
    again, _ = implicit.prepare(data, tiny_config())
    other, _ = implicit.prepare(data, tiny_config(seed=1))
    train = splits["train"]
    positives = data["train"].num_rows
    assert len(train["user"]) == 5 * positives and train["label"].sum() == positives
    keys = set((train["user"][train["label"] == 1] * 200 + train["item"][train["label"] == 1]).tolist())
    negatives = train["user"][train["label"] == 0] * 200 + train["item"][train["label"] == 0]
    assert not set(negatives.tolist()) & keys
    assert np.array_equal(again["train"]["item"], train["item"])  # both twins train on these same samples
    assert not np.array_equal(other["train"]["item"], train["item"])
    pop = np.bincount(train["item"][train["label"] == 1], minlength=200)
    assert np.array_equal(splits["test"]["popularity"], pop[splits["test"]["item"]])
    assert state["kind"] == "implicit" and state["source"]["data"] == "planted-implicit"


def test_ranking_metrics_on_known_ranks():
    # Three users, 5 candidates each (positive first): ranks 0, 3 and 4.
    scores = np.array([[9, 1, 2, 3, 4], [5, 9, 8, 7, 1], [0, 1, 2, 3, 4]], float)
    assert hit_rate_at_k(scores, 1) == pytest.approx(1 / 3)
    assert hit_rate_at_k(scores, 4) == pytest.approx(2 / 3)
    assert ndcg_at_k(scores, 4) == pytest.approx((1.0 + 1 / np.log2(5)) / 3)
    assert hit_rate_at_k(np.zeros((2, 5)), 4) == 0.0  # ties count against the positive
    hr, ndcg = random_ranking_at_k(100, 10)
    assert hr == pytest.approx(0.1) and ndcg == pytest.approx(
        sum(1 / np.log2(r + 2) for r in range(10)) / 100
    )


def test_metrics_report_model_popularity_random_and_oracle():
    rng = np.random.default_rng(0)
    labels = np.tile(np.r_[1.0, np.zeros(99)], 50).astype(np.float32)
    true_score = rng.normal(size=labels.size) + 3 * labels
    batch = {
        "label": labels,
        "popularity": rng.integers(0, 5, labels.size).astype(np.float32),
        "true_score": true_score,
    }
    out = implicit.metrics({"logits": true_score}, batch)
    assert out["hr@10"] == out["oracle_hr@10"] > 0.5 and out["random_hr@10"] == pytest.approx(0.1)
    assert 0.0 <= out["pop_hr@10"] < 0.4 and np.isfinite(out["loss"])
    with pytest.raises(UserError, match="equal blocks of one positive"):
        implicit.metrics(
            {"logits": np.zeros(7)},
            {"label": np.array([1, 0, 0, 1, 0, 0, 0], np.float32), "popularity": np.zeros(7)},
        )


def test_explicit_data_is_turned_into_the_leave_one_out_protocol():
    ratings = load("planted-ratings", num_users=30, num_items=400, num_ratings=1500)
    splits, _ = implicit.prepare(ratings, tiny_config(num_users=30, num_items=400))
    blocks = splits["test"]["label"].reshape(-1, 100)
    assert (blocks[:, 0] == 1).all() and blocks[:, 1:].sum() == 0 and len(blocks) == 30


def test_predict_lists_items_the_user_never_interacted_with(frameworks, capsys):
    data = load("planted-implicit", **TINY_DATA)
    config = tiny_config()
    _, state = implicit.prepare(data, config)
    model = SPEC.build("keras", config)
    implicit.predict(SPEC, model, config, state, ["3"], {"top_k": 4})
    lines = capsys.readouterr().out.splitlines()
    seen = set()
    for split in data:
        rows = data[split].with_format("numpy")[:]
        seen |= set(rows["item"][(rows["user"] == 3) & (rows["label"] > 0)].tolist())
    assert lines[0].startswith(f"user 3: {len(seen)} items already rated, top 4 of {200 - len(seen)} others")
    items = [int(line.split()[2]) for line in lines[1:]]
    assert len(items) == 4 and not set(items) & seen
    assert all(0.0 < float(line.split()[-1]) < 1.0 for line in lines[1:])  # probabilities
    with pytest.raises(UserError, match="user index 40 is out of range"):
        SPEC.forward(model, {"user": np.array([40]), "item": np.array([0])})
