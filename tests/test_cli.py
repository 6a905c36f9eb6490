"""The CLIs as a user runs them: one-line errors with exit 2, nothing half-written, and a real round trip."""

import json
import shutil

import pytest

from tests.conftest import assert_one_line_error, run_tool

TINY = [
    "--set",
    "base_width=4",
    "--set",
    "image_size=8",
    "--data",
    "digits",
    "--epochs",
    "1",
    "--threads",
    "2",
    "--no-progress",
]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["tools/train.py", "zoo/vision/nope", "--fw", "torch"], ["unknown model", "vision/cnn"]),
        (["tools/train.py", "zoo/vision/cnn", "--fw", "jax"], ["unknown --fw 'jax'", "keras or torch"]),
        (
            ["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--set", "depth=3"],
            ["unknown config field(s) depth"],
        ),
        (
            ["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--set", "epochs=many"],
            ["'epochs' expects int"],
        ),
        (
            ["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--set", "variant=resnet9"],
            ["variant must be one of"],
        ),
        (["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--set", "oops"], ["--set expects key=value"]),
        (["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--gpus", "-1"], ["--gpus must be 0"]),
        (
            ["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--data", "imagenet-1k"],
            ["unknown dataset 'imagenet-1k'"],
        ),
        (["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--epochs", "x"], ["invalid int value"]),
        (["tools/evaluate.py", "runs/does-not-exist", "--fw", "torch"], ["does not exist"]),
        (["tools/crosscheck.py", "zoo/nowhere"], ["unknown model"]),
    ],
)
def test_usage_errors_are_one_line(args, needles, tmp_path):
    proc = run_tool(*args, "--out", str(tmp_path / "run")) if args[0] == "tools/train.py" else run_tool(*args)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "run").exists(), "a failed run left a folder behind"


def test_rgb_data_into_a_one_channel_model(tmp_path):
    from tests.test_data import write_image_parquet

    write_image_parquet(tmp_path / "mirror/uoft-cs/cifar10", 12, (32, 32, 3), "RGB", image_column="img")
    proc = run_tool(
        "tools/train.py",
        "zoo/vision/cnn",
        "--fw",
        "torch",
        "--data",
        "hub:uoft-cs/cifar10",
        "--set",
        "image_size=32",
        "--out",
        str(tmp_path / "run"),
        env={"ZOO_HUB_MIRROR": str(tmp_path / "mirror")},
    )
    assert_one_line_error(proc, "3-channel images", "in_channels=1", "--set in_channels=3")
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cnn-keras"
    proc = run_tool("tools/train.py", "zoo/vision/cnn", "--fw", "keras", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "result.json").read_text())


def test_train_in_keras_evaluate_in_torch_and_predict(keras_run, tmp_path):
    out, result = keras_run
    proc = run_tool("tools/evaluate.py", str(out), "--fw", "torch", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads(proc.stdout)
    assert evaluated["trained_in"] == "keras" and evaluated["framework"] == "torch"
    assert abs(evaluated["metrics"]["accuracy"] - result["test"]["accuracy"]) <= 1e-3

    from PIL import Image

    from shared import data

    digit = data.load("digits")["test"].with_format("numpy")[:1]
    Image.fromarray(digit["image"][0, :, :, 0].astype("uint8")).resize((40, 40)).convert("RGB").save(
        tmp_path / "digit.png"
    )
    proc = run_tool(
        "tools/predict.py", str(out), "--fw", "torch", str(tmp_path / "digit.png"), "--top-k", "3"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    probs = [float(tok) for tok in line.split(":", 1)[1].replace(",", " ").split()[1::2]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_tampered_checkpoint_and_bad_image_are_one_line_errors(keras_run, tmp_path):
    out, _ = keras_run
    copy = tmp_path / "copy"
    shutil.copytree(out / "checkpoint", copy)
    weights = bytearray((copy / "weights.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (copy / "weights.safetensors").write_bytes(bytes(weights))
    assert_one_line_error(
        run_tool("tools/evaluate.py", str(copy), "--fw", "keras"), "does not match manifest"
    )
    (tmp_path / "bad.png").write_bytes(b"not a png")
    proc = run_tool("tools/predict.py", str(out), "--fw", "torch", str(tmp_path / "bad.png"))
    assert_one_line_error(proc, "cannot read image", "bad.png")


def test_existing_run_folder_is_not_overwritten(keras_run):
    out, _ = keras_run
    before = sorted(p.name for p in out.iterdir())
    proc = run_tool("tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--out", str(out), *TINY)
    assert_one_line_error(proc, "exists and is not empty", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == before


def test_crosscheck_json_reports_every_check():
    # The CLI's JSON contract on a small model (the CNN's tier 1 runs in tests/test_tier1.py).
    proc = run_tool(
        "tools/crosscheck.py", "zoo/recsys/mf", "--json", "--set", "num_factors=4", "--batch-sizes", "1,3"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert {"name", "max_error", "tolerance", "passed"} <= set(rows[0])
    assert all(r["passed"] for r in rows), [r for r in rows if not r["passed"]]
    names = {r["name"] for r in rows}
    for size in (1, 3):
        assert {f"forward_torch_to_keras_b{size}", f"forward_keras_to_torch_b{size}"} <= names
    assert {
        "parameter_count",
        "canonical_names_and_shapes",
        "round_trip_torch_keras_torch",
        "train_loss",
        "gradients",
        "optimizer_step",
        "train_step_sgd",
        "sparse_grads_are_sparse",  # the model's own extra checks come too
    } <= names
    assert all(r["model"] == "recsys/mf" for r in rows)
