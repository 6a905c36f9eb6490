"""driving/perception: config checks, tier 1 on a non-default config, a drifting upsampling caught, NaN
steering masked alike in both twins, the task's metrics, and predict's overlays and one-line errors."""

import json
import math
import re

import numpy as np
import pytest
from PIL import Image

from shared.errors import UserError
from shared.tasks import perception
from tests.conftest import assert_one_line_error, run_tool
from zoo import registry

SPEC = registry.get("driving/perception")
SMALL = {
    "width": 4,
    "image_height": 32,
    "image_width": 64,
    "stage_blocks": (1, 1, 1),
    "steering_hidden": (8,),
}


@pytest.mark.slow
def test_tier1_with_deeper_stages_and_other_batchnorm_settings(frameworks):
    from shared.crosscheck import run_tier1

    # width 6: stages of 6, 12 and 24 channels (a 1x1 stride-2 convolution on 6 channels is where torch's
    # channels_last CPU kernel corrupts memory; see torch_impl.PerceptionNet.forward).
    config = SPEC.config(
        width=6,
        image_height=32,
        image_width=48,
        stage_blocks=(2, 1, 2),
        steering_channels=5,
        steering_hidden=(12, 6),
        bn_epsilon=1e-3,
        bn_momentum=0.3,
    )
    checks = run_tier1(SPEC, config, batch_sizes=(1, 3))
    failed = [f"{c.name}: {c.max_error:.3e} > {c.tolerance:.0e} ({c.detail})" for c in checks if not c.passed]
    assert not failed, "\n".join(failed)


def test_a_flipped_transposed_convolution_kernel_is_caught(frameworks, monkeypatch):
    """The classic upsampling drift: a kernel spatially flipped on transfer keeps names, shapes and round
    trips intact, so only the forward comparison can see it; it must."""
    import zoo.driving.perception.weights as weights
    from shared.crosscheck import check_forward, check_round_trip, check_structure
    from weightmap import Row, Transform

    flipped = Transform(
        "flipped",
        lambda a: [a[0].transpose(3, 2, 0, 1)[:, :, ::-1, ::-1].copy()],
        lambda a: [a[0][:, :, ::-1, ::-1].transpose(2, 3, 1, 0).copy()],
    )
    original = weights.weight_map

    def broken(config):
        return [
            Row(r.keras, r.canonical, flipped) if r.canonical == ("up1.up.weight",) else r
            for r in original(config)
        ]

    config = SPEC.config(**SMALL)
    torch_model, keras_model = SPEC.build("torch", config), SPEC.build("keras", config)
    for check in check_forward(SPEC, config, torch_model, keras_model, "torch_to_keras", (2,)):
        assert check.passed, check  # the real map
    monkeypatch.setattr(weights, "weight_map", broken)
    assert all(c.passed for c in check_structure(SPEC, config, torch_model, keras_model))
    assert all(c.passed for c in check_round_trip(SPEC, torch_model, keras_model))
    assert not any(
        c.passed for c in check_forward(SPEC, config, torch_model, keras_model, "torch_to_keras", (2,))
    )


def test_keras_kernels_of_one_shape_start_different(frameworks):
    """One unseeded Keras 3 initializer returns the same values on every call; the twin must not share one
    (it did: every 3x3 kernel of a shape started identical, and Keras trained 2 mIoU points behind)."""
    import keras

    keras.utils.set_random_seed(0)
    model = SPEC.build("keras", SPEC.config(**SMALL))
    kernels = [np.asarray(v) for v in model.variables if v.path.endswith("/kernel")]
    same = [
        (a.shape, i, j)
        for i, a in enumerate(kernels)
        for j, b in enumerate(kernels[:i])
        if a.shape == b.shape and np.array_equal(a, b)
    ]
    assert len(kernels) > 10 and not same, same


def test_unknown_steering_is_left_out_of_the_loss_in_both_twins(frameworks):
    from shared.train import keras_trainer, torch_trainer

    config = SPEC.config(**SMALL)
    torch_model, keras_model = SPEC.build("torch", config), SPEC.build("keras", config)
    SPEC.set_weights(keras_model, SPEC.get_weights(torch_model))
    batch = SPEC.example_batch(config, batch_size=4, seed=3)
    batch["steering"] = np.array([np.nan, 2.0, np.nan, -1.0], np.float32)
    t_loss, t_grads = torch_trainer.loss_and_grads(SPEC.impl("torch"), torch_model, batch, config)
    k_loss, k_grads = keras_trainer.loss_and_grads(SPEC.impl("keras"), keras_model, batch, config)
    assert all(np.isfinite(g).all() for g in [*t_grads.values(), *k_grads.values()])
    assert k_loss == pytest.approx(t_loss, rel=1e-5)
    out = SPEC.forward(torch_model, batch, training=True)  # the same batch statistics as the loss saw
    expected = perception.metrics(out, batch, config)["loss"]  # known frames only, class-weighted
    assert t_loss == pytest.approx(expected, rel=1e-4)


def test_iou_steering_and_loss_from_known_outputs():
    mask = np.array([[[0, 1, 1, 2]]])  # (1, 1, 4): no vehicle (class 3) in the labels
    predicted = np.array([[[0, 1, 2, 2]]])
    logits = np.eye(4)[predicted] * 10.0  # (1, 1, 4, 4), confident
    out = {"logits": logits, "steering": np.array([1.5])}
    scores = perception.metrics(out, {"mask": mask, "steering": np.array([1.0], np.float32)})
    assert scores["iou_background"] == 1.0 and scores["iou_road"] == 0.5 and scores["iou_lane_marking"] == 0.5
    assert math.isnan(scores["iou_vehicle"])  # neither labelled nor predicted: left out of the mean
    assert scores["miou"] == pytest.approx(2.0 / 3.0) and scores["pixel_accuracy"] == 0.75
    assert scores["steering_mae"] == 0.5
    unknown = perception.metrics(out, {"mask": mask, "steering": np.array([np.nan], np.float32)})
    assert math.isnan(unknown["steering_mae"]) and unknown["miou"] == scores["miou"]
    config = SPEC.config(class_weights=(1.0, 1.0, 3.0, 3.0), steering_loss_weight=0.05)
    weighted = perception.metrics(out, {"mask": mask, "steering": np.array([1.0], np.float32)}, config)
    ce = -np.log(np.exp(logits[0, 0, range(4), mask[0, 0]]) / np.exp(logits[0, 0]).sum(-1))  # per pixel
    w = np.array([1.0, 1.0, 1.0, 3.0])  # class weights of the labels 0, 1, 1, 2
    assert weighted["loss"] == pytest.approx((w * ce).sum() / w.sum() + 0.05 * 0.5**2)


def test_evaluate_in_batches_equals_metrics_on_the_whole_split(frameworks):
    config = SPEC.config(**SMALL)
    model = SPEC.build("torch", config)
    data = {"train": perception.example_batch(config, 7, seed=1)}
    data["train"]["steering"][2] = np.nan
    whole = perception.metrics(SPEC.forward(model, data["train"]), data["train"], config)
    batched = perception.evaluate(SPEC, model, data["train"], config, batch_size=3)
    assert batched.keys() == whole.keys()
    for key in whole:
        assert batched[key] == pytest.approx(whole[key], rel=1e-6, nan_ok=True), (
            key
        )  # float32 kernels vary by batch


def test_prepare_and_check_batch_name_the_size_to_use():
    from shared.data import load

    config = SPEC.config()  # 64 x 128
    with pytest.raises(UserError, match="--set image_height=32 --set image_width=64"):
        perception.prepare(load("roads:32x64,train=2,validation=1,test=1"), config)
    with pytest.raises(UserError, match="images are 32x64; the model takes 64x128"):
        perception.check_batch(config, {"image": np.zeros((1, 32, 64, 3), np.float32)})


@pytest.fixture
def images(tmp_path):
    """Two rendered frames at the model's size, one 4:3 frame to resize, and bad files."""
    from shared.data.roads import write_sample_images

    folder = tmp_path / "in"
    good = [str(p) for p in write_sample_images(folder, count=2, height=32, width=64)]
    Image.fromarray(np.full((60, 80, 3), 90, np.uint8)).save(folder / "large.jpg")
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(folder / "gray.png")
    Image.fromarray(np.zeros((32, 64, 4), np.uint8)).save(folder / "rgba.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    whole = (folder / good[0].split("/")[-1]).read_bytes()
    (folder / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return folder, good


def test_predict_writes_overlays_with_the_resize_policy(frameworks, images, tmp_path, capsys):
    folder, good = images
    config = SPEC.config(**SMALL)
    state = {
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
        "class_names": ["background", "road", "lane_marking", "vehicle"],
    }
    out = tmp_path / "overlays"
    perception.predict(
        SPEC,
        SPEC.build("keras", config),
        config,
        state,
        [*good, str(folder / "large.jpg")],
        {"out": str(out)},
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("steering" in line and "deg" in line for line in lines)
    assert "(resized 80x60 -> 64x32)" in lines[2]
    written = sorted(p.name for p in out.iterdir())
    assert written == ["large_overlay.png", "roads_test_0_overlay.png", "roads_test_1_overlay.png"]
    assert Image.open(out / "roads_test_0_overlay.png").size == (512, 256)  # 32 x 64 shown 8x
    assert Image.open(out / "large_overlay.png").size == (512, 256)  # its 80 x 40 centre crop, shown 6.4x


@pytest.mark.parametrize(
    "name,message",
    [
        ("gray.png", "is a grayscale image (mode L)"),
        ("rgba.png", "is an RGB image with an alpha channel (mode RGBA)"),
        ("corrupt.png", "cannot read image"),
        ("truncated.png", "cannot read image"),
        ("missing.png", "does not exist"),
    ],
)
def test_predict_refuses_bad_files_before_writing_anything(frameworks, images, tmp_path, name, message):
    folder, good = images
    config = SPEC.config(**SMALL)
    out = tmp_path / "overlays"
    expected = (
        f"{message} {folder / name}" if message.startswith("cannot") else f"image {folder / name} {message}"
    )
    with pytest.raises(UserError, match=re.escape(expected)):
        perception.predict(
            SPEC,
            SPEC.build("torch", config),
            config,
            {"mean": [0.5] * 3, "std": [0.25] * 3},
            [good[0], str(folder / name)],
            {"out": str(out)},
        )
    assert not out.exists()


@pytest.mark.slow
def test_predict_cli_ends_bad_input_in_one_line_with_status_2(images, tmp_path):
    """End to end through tools/predict.py with a checkpoint (untrained weights, saved as training saves)."""
    import torch  # noqa: F401  (built here only to export weights)

    from shared import checkpoint
    from shared.recipe import config_to_dict

    folder, good = images
    config = SPEC.config(**SMALL)
    weights = SPEC.get_weights(SPEC.build("torch", config))
    checkpoint.save(
        tmp_path / "ckpt",
        model_name=SPEC.name,
        config=config_to_dict(config),
        weights=weights,
        meta={"framework": "torch", "data": "roads"},
        extra_files={"preprocessing.json": {"mean": [0.5] * 3, "std": [0.25] * 3}},
    )
    proc = run_tool(
        "tools/predict.py",
        str(tmp_path / "ckpt"),
        "--fw",
        "torch",
        good[0],
        str(folder / "gray.png"),
        "--opt",
        f"out={tmp_path / 'out'}",
        timeout=300,
    )
    assert_one_line_error(proc, str(folder / "gray.png"), "grayscale")
    proc = run_tool(
        "tools/predict.py",
        str(tmp_path / "ckpt"),
        "--fw",
        "torch",
        *good,
        "--opt",
        f"out={tmp_path / 'out'}",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "roads_test_0_overlay.png",
        "roads_test_1_overlay.png",
    ]
    assert json.loads((tmp_path / "ckpt" / "preprocessing.json").read_text())["std"] == [0.25] * 3
