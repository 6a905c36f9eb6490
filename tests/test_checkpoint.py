"""Checkpoints: atomic, verified, pickle-free, loadable in either framework; strict set_weights."""

import json

import numpy as np
import pytest

from shared import checkpoint
from shared.errors import UserError
from zoo import registry


def tiny_checkpoint(folder, **overrides):
    spec = registry.get("vision/cnn")
    config = spec.config(base_width=4, image_size=8, **overrides)
    rng = np.random.default_rng(0)
    weights = {
        "a.weight": rng.standard_normal((3, 2)).astype(np.float32),
        "bn.num_batches_tracked": np.int64(7),
    }
    return checkpoint.save(
        folder,
        model_name=spec.name,
        config=vars(config),
        weights=weights,
        meta={"framework": "torch"},
        extra_files={"preprocessing.json": {"mean": [0.5]}},
    )


def test_save_and_load_round_trip(tmp_path):
    folder = tiny_checkpoint(tmp_path / "ckpt")
    loaded = checkpoint.load(folder)
    assert loaded["model"] == "vision/cnn"
    assert loaded["weights"]["bn.num_batches_tracked"].shape == ()  # 0-d stays 0-d
    assert int(loaded["weights"]["bn.num_batches_tracked"]) == 7
    assert set(loaded["files"]) == {
        "weights.safetensors",
        "config.json",
        "meta.json",
        "preprocessing.json",
        "README.md",
    }
    assert loaded["meta"]["versions"]["numpy"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp folders left behind"
    assert checkpoint.resolve(tmp_path / "ckpt") == folder


def test_overwrite_is_atomic_and_leaves_no_temp(tmp_path):
    tiny_checkpoint(tmp_path / "ckpt")
    tiny_checkpoint(tmp_path / "ckpt", num_classes=3)
    assert json.loads((tmp_path / "ckpt/config.json").read_text())["config"]["num_classes"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda f: (f / "meta.json").write_text("{}"), "does not match manifest"),
        (lambda f: (f / "weights.safetensors").unlink(), "is missing"),
        (lambda f: (f / "config.json").write_bytes((f / "config.json").read_bytes()[:-5]), "does not match"),
        (lambda f: (f / "model.pt").write_bytes(b"x"), "refusing"),
        (lambda f: (f / "manifest.json").write_text("not json"), "malformed"),
    ],
)
def test_damaged_checkpoints_are_refused(tmp_path, damage, message):
    folder = tiny_checkpoint(tmp_path / "ckpt")
    damage(folder)
    with pytest.raises(UserError, match=message):
        checkpoint.load(folder)


@pytest.mark.parametrize("suffix", [".pt", ".pkl", ".h5", ".keras", ".bin"])
def test_pickle_bearing_files_are_refused_by_name(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match="refusing"):
        checkpoint.load(path)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        checkpoint.load(tmp_path / "nope")
    with pytest.raises(UserError, match="no manifest.json"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_set_weights_is_strict(fw, frameworks):
    spec = registry.get("vision/cnn")
    config = spec.config(base_width=4, image_size=8)
    model = spec.build(fw, config)
    weights = spec.get_weights(model)
    missing = {k: v for k, v in weights.items() if k != "fc.bias"}
    with pytest.raises(ValueError, match="missing fc.bias"):
        spec.set_weights(model, missing)
    with pytest.raises(ValueError, match="unexpected extra.weight"):
        spec.set_weights(model, {**weights, "extra.weight": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=r"mis-shaped fc.weight: expected \(10, 32\), found \(10, 31\)"):
        spec.set_weights(model, {**weights, "fc.weight": np.zeros((10, 31), np.float32)})


def test_a_torchvision_resnet_loads_into_both_twins(frameworks):
    """torchvision's resnet18 state_dict loads strictly into the torch twin and, mapped, into Keras."""
    import torch
    import torchvision

    tv = torchvision.models.resnet18(num_classes=10).eval()
    state = {k: v.numpy() for k, v in tv.state_dict().items()}
    spec = registry.get("vision/cnn")
    config = spec.config(variant="resnet18", stem="imagenet", base_width=64, in_channels=3, image_size=64)
    ours = spec.build("torch", config)
    ours.load_state_dict(tv.state_dict(), strict=True)
    keras_model = spec.build("keras", config)
    spec.set_weights(keras_model, state)
    batch = spec.example_batch(config, batch_size=2, seed=3)
    with torch.no_grad():
        reference = tv(torch.from_numpy(batch["image"]).permute(0, 3, 1, 2)).numpy()
    out = spec.forward(keras_model, batch)["logits"]
    assert np.max(np.abs(out - reference)) <= 1e-5 * max(1.0, np.max(np.abs(reference)))
