"""Issue 19: callbacks fired identically by both trainers (early stopping, best + last checkpoints, the
user's own callbacks, callback state through a resume), fine-tuning (--init, --freeze) and named recipes,
with their bad inputs refused in one line, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared import checkpoint
from shared.errors import UserError
from shared.markdown import replace_block
from shared.train import finetune, recipes
from shared.train.callbacks import Callback, EarlyStopping
from shared.train.run import train
from tests.conftest import ROOT, assert_one_line_error, run_tool
from zoo import registry

SPEC = registry.get("vision/cnn")  # the smallest model that has BatchNorm and a head
SMOKE = {**SPEC.smoke_config, "epochs": 4}
# val_loss on the digits falls by > 0.2 from epoch 1 to 2 and by < 0.06 from epoch 2 to 3 in both
# frameworks: with min_delta 0.1 both stop after epoch 3 and keep epoch 2, far from the threshold.
EARLY = "val_loss:patience=0:min_delta=0.1"
FREEZE = ("conv1", "bn1")


@pytest.fixture(scope="module")
def tool():
    """tools/train.py as a module (its main and request), imported as `python tools/train.py` runs it."""
    import importlib.util
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    spec = importlib.util.spec_from_file_location("tools_train", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder(Callback):
    """A user callback: the hooks in the order they fire, with the epoch-end keys."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_step_end(self, step, logs=None):
        if step % 20 == 0:
            self.calls.append(("step", step, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(k for k in logs if k != "seconds")))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


class Crash(Callback):
    """Stands in for a killed process: raises at the start of an epoch (after the previous epoch's snapshot)."""

    def __init__(self, at_epoch: int | None):
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("killed")


@pytest.fixture(scope="module")
def init_file(tmp_path_factory):
    """The torch twin's initial weights (seed 0) as a safetensors file in canonical names."""
    import torch
    from safetensors.numpy import save_file

    torch.manual_seed(0)
    weights = SPEC.get_weights(SPEC.build("torch", SPEC.config(**SMOKE)))
    path = tmp_path_factory.mktemp("init") / "resnet-init.safetensors"
    save_file(weights, str(path))
    return path, weights


@pytest.fixture(scope="module")
def twin_runs(init_file, tmp_path_factory, frameworks):
    """The same fine-tuning run (--init, --freeze, --early-stop, --keep best) in both frameworks."""
    runs = {}
    for fw in ("torch", "keras"):
        out = tmp_path_factory.mktemp(f"run-{fw}") / "run"
        recorder = Recorder()
        result = train(
            SPEC,
            SPEC.config(**SMOKE),
            fw,
            data="digits",
            out=out,
            threads=1,
            progress=False,
            early_stop=EARLY,
            init=str(init_file[0]),
            freeze=FREEZE,
            callbacks=[recorder],
        )
        runs[fw] = (out, result, recorder)
    return runs


def test_both_frameworks_stop_at_the_same_epoch_and_keep_the_same_best_epoch(twin_runs):
    stops = {
        fw: (r["stopped_early_at"], r["checkpoint_epoch"], r["last_epoch"])
        for fw, (_, r, _) in twin_runs.items()
    }
    assert stops["torch"] == stops["keras"], stops
    stopped, best, last = stops["torch"]
    assert stopped == last < SMOKE["epochs"], stops  # it did stop early
    for fw, (out, _result, _) in twin_runs.items():
        losses = [float(r["val_loss"]) for r in _csv_rows(out / "metrics.csv")]
        assert len(losses) == last and int(np.argmin(losses)) + 1 == best, (fw, losses)


def _csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_best_and_last_are_verified_checkpoints_that_result_json_names(twin_runs):
    for fw, (out, _result, _) in twin_runs.items():
        best, last = checkpoint.load(out / "checkpoint"), checkpoint.load(out / "last")
        saved = json.loads((out / "result.json").read_text())
        assert (
            best["meta"]["epoch"] == saved["checkpoint_epoch"]
            and last["meta"]["epoch"] == saved["last_epoch"]
        )
        assert best["meta"]["kept"] == "best val_loss (min)" and last["meta"]["kept"] == "last", fw
        assert saved["checkpoint"] == str(out / "checkpoint") and saved["last"] == str(out / "last")
        same = all(np.array_equal(best["weights"][k], last["weights"][k]) for k in best["weights"])
        assert same == (saved["checkpoint_epoch"] == saved["last_epoch"]), fw


def test_an_earlier_best_epoch_goes_to_checkpoint_and_the_last_to_last(tmp_path):
    """kept_checkpoints with a BestCheckpoint whose best epoch (2) precedes the last (3)."""
    from shared.train.callbacks import BestCheckpoint, CallbackList
    from shared.train.request import RunSettings
    from shared.train.run import kept_checkpoints

    best = BestCheckpoint("val_accuracy")
    best.best, best.best_epoch, best.best_weights = 0.9, 2, {"w": np.zeros(2)}

    class Run:
        settings = RunSettings("torch", tmp_path, "digits")
        callbacks = CallbackList([best], "torch")
        now = {"epoch": 3}
        last_weights = {"w": np.ones(2)}

    kept = kept_checkpoints(Run())
    assert [(k["folder"], k["epoch"], float(k["weights"]["w"][0])) for k in kept] == [
        ("checkpoint", 2, 0.0),
        ("last", 3, 1.0),
    ]
    assert kept[0]["kept"] == "best val_accuracy (None)" or kept[0]["kept"].startswith("best val_accuracy")


def test_same_first_step_loss_from_the_same_init_in_both_frameworks(twin_runs):
    first = {fw: float(_csv_rows(out / "steps.csv")[0]["loss"]) for fw, (out, _, _) in twin_runs.items()}
    assert abs(first["torch"] - first["keras"]) <= 1e-5 * abs(first["torch"]), first


def test_frozen_parameters_and_their_batchnorm_do_not_move_in_either_framework(twin_runs, init_file):
    _, initial = init_file
    for fw, (out, _, _) in twin_runs.items():
        weights = checkpoint.load(out / "last")["weights"]
        for name in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
            np.testing.assert_array_equal(weights[name], initial[name], err_msg=f"{fw} {name}")
        assert not np.array_equal(weights["layer1.0.conv1.weight"], initial["layer1.0.conv1.weight"]), fw


def test_init_source_sha256_and_freezing_are_recorded_in_meta_and_card(twin_runs, init_file):
    path, _ = init_file
    for fw, (out, _result, _) in twin_runs.items():
        meta = json.loads((out / "checkpoint" / "meta.json").read_text())
        assert meta["init"]["source"] == str(path) and meta["init"]["sha256"] == checkpoint.sha256_file(path)
        assert meta["init"]["reinitialised"] == [] and meta["init"]["freeze"] == list(FREEZE)
        card = (out / "checkpoint" / "README.md").read_text()
        assert checkpoint.sha256_file(path) in card and "`conv1`" in card, fw


def test_callbacks_fire_identically_in_both_frameworks(twin_runs):
    calls = {fw: recorder.calls for fw, (_, _, recorder) in twin_runs.items()}
    assert calls["torch"] == calls["keras"]
    epochs = twin_runs["torch"][1]["last_epoch"]
    hooks = [c[0] for c in calls["torch"]]
    assert hooks[0] == "train_begin" and hooks[-1] == "train_end"
    assert hooks.count("epoch_begin") == hooks.count("epoch_end") == epochs
    keys = next(c[2] for c in calls["torch"] if c[0] == "epoch_end")
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(keys)
    assert next(c[2] for c in calls["torch"] if c[0] == "step") == ["loss", "lr"]


def test_logged_validation_metrics_are_those_the_task_declares(twin_runs):
    out = twin_runs["torch"][0]
    logged = {k.removeprefix("val_") for k in _csv_rows(out / "metrics.csv")[0] if k.startswith("val_")}
    assert logged <= set(SPEC.task_module.METRICS)
    for name in registry.list_models():
        task = registry.get(name).task_module
        assert task.PRIMARY_METRIC in task.METRICS, name


def test_resume_restores_the_callbacks_state(twin_runs, init_file, tmp_path):
    """Killed after epoch 2 (the best), the resumed run still knows the best val_loss: it stops after
    epoch 3 as the uninterrupted run did (a fresh EarlyStopping would count epoch 3 as an improvement)."""
    out = tmp_path / "run"
    options = dict(
        data="digits",
        out=out,
        threads=1,
        progress=False,
        early_stop=EARLY,
        init=str(init_file[0]),
        freeze=FREEZE,
    )
    with pytest.raises(RuntimeError, match="killed"):
        train(SPEC, SPEC.config(**SMOKE), "torch", **options, callbacks=[Crash(2)])
    resumed = train(SPEC, SPEC.config(**SMOKE), "torch", **options, callbacks=[Crash(None)], resume=True)
    reference = twin_runs["torch"][1]
    for key in ("stopped_early_at", "checkpoint_epoch", "last_epoch", "test"):
        assert resumed[key] == reference[key], key
    assert resumed["init"] == reference["init"]


def test_plain_objects_and_keras_callbacks_are_callbacks(tmp_path, frameworks):
    import keras

    class Plain:  # duck-typed: no base class, two hooks and stop_training
        stop_training = False

        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, epoch, logs):
            self.epochs.append(round(logs["val_accuracy"], 6))
            self.stop_training = epoch == 0

    class Batches(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0

        def on_train_batch_end(self, batch, logs=None):
            self.batches += 1

    config = SPEC.config(**{**SPEC.smoke_config, "epochs": 2})
    plain = Plain()
    result = train(
        SPEC, config, "torch", data="digits", out=tmp_path / "t", threads=1, progress=False, callbacks=[plain]
    )
    assert len(plain.epochs) == 1 and result["last_epoch"] == result["checkpoint_epoch"] == 1

    batches = Batches()
    stopper = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=0, min_delta=0.5)
    result = train(
        SPEC,
        config,
        "keras",
        data="digits",
        out=tmp_path / "k",
        threads=1,
        progress=False,
        callbacks=[stopper, batches],
    )
    assert (
        result["last_epoch"] == 2 and stopper.stopped_epoch == 1
    )  # epoch 1 improves on -inf, epoch 2 cannot
    assert batches.batches == result["steps"] > 0
    with pytest.raises(UserError, match="Keras trainer only"):
        train(
            SPEC,
            config,
            "torch",
            data="digits",
            out=tmp_path / "x",
            threads=1,
            progress=False,
            callbacks=[batches],
        )
    assert not (tmp_path / "x").exists()


def test_a_changed_head_is_reinitialised_and_listed(frameworks):
    """A 10-class checkpoint into a 5-class model: fc is re-initialised, everything else loaded."""
    import torch

    source = SPEC.get_weights(SPEC.build("torch", SPEC.config(**SPEC.smoke_config)))
    expected = {
        k: v.shape
        for k, v in SPEC.get_weights(
            SPEC.build("torch", SPEC.config(**SPEC.smoke_config, num_classes=5))
        ).items()
    }
    loaded, reinit = finetune.plan(expected, {k: v.shape for k, v in source.items()}, SPEC.heads)
    assert reinit == ["fc.bias", "fc.weight"] and len(loaded) == len(expected) - 2
    source["layer1.0.conv1.weight"] = np.zeros((3, 3, 3, 3), np.float32)
    with pytest.raises(UserError, match="mis-shaped layer1.0.conv1.weight") as err:
        finetune.plan(expected, {k: v.shape for k, v in source.items()}, SPEC.heads, "x.safetensors")
    assert "\n" not in str(err.value)
    del torch


def test_init_from_a_store_url_reinitialises_a_changed_head_in_both_twins(
    twin_runs, tmp_path, monkeypatch, frameworks
):
    """A trained checkpoint pushed to a store, fetched by URL into 5-class twins: fc re-initialised and
    listed, every other tensor loaded; --freeze leaves Keras' frozen BatchNorm non-trainable (inference)."""
    import keras

    from shared import hub
    from shared.train.request import RunSettings

    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    hub.push(twin_runs["torch"][0] / "last", str(tmp_path / "store"))
    url = f"file://{tmp_path / 'store'}/vision-cnn/v1"
    source = checkpoint.load(twin_runs["torch"][0] / "last")["weights"]
    config = SPEC.config(**SPEC.smoke_config, num_classes=5)
    for fw in ("torch", "keras"):
        settings = RunSettings(fw, tmp_path / "unused", "digits", init=url, freeze=("layer1",))
        tuned = finetune.FineTune.of(SPEC, config, settings)
        assert tuned.source.kind == "store" and tuned.source.sha256 == checkpoint.sha256_file(
            twin_runs["torch"][0] / "last" / "weights.safetensors"
        )
        model = SPEC.build(fw, config)
        fresh = SPEC.get_weights(model)
        tuned.apply(model)
        after = SPEC.get_weights(model)
        assert tuned.reinitialised == ["fc.bias", "fc.weight"], fw
        np.testing.assert_array_equal(after["fc.weight"], fresh["fc.weight"])
        np.testing.assert_allclose(
            after["layer2.0.conv1.weight"], source["layer2.0.conv1.weight"], atol=0, rtol=0
        )
        assert tuned.record()["reinitialised"] == ["fc.bias", "fc.weight"] and tuned.frozen
        if fw == "keras":
            frozen_bn = [
                layer
                for layer in model._flatten_layers(include_self=False, recursive=True)
                if isinstance(layer, keras.layers.BatchNormalization) and "layer1" in layer.path
            ]
            assert frozen_bn and not any(layer.trainable for layer in frozen_bn)
            assert not any("layer1" in v.path for v in model.trainable_variables)
        else:
            assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("layer1."))


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


@pytest.fixture(scope="module")
def bad_sources(tmp_path_factory):
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("sources")
    save_file({"foo.weight": np.zeros((3, 2), np.float32)}, str(root / "nothing.safetensors"))
    (root / "weights.pt").write_bytes(b"\x80\x04\x95 a pickle")
    (root / "pickle.safetensors").write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    other = registry.get("recsys/mf")
    checkpoint.save(
        root / "mf-checkpoint",
        model_name=other.name,
        config={},
        weights={"global_bias": np.zeros((1,), np.float32)},
        meta={},
    )
    return root


BAD = [
    (["--early-stop", "val_bleu:patience=2"], ["logs no metric 'val_bleu'", "val_accuracy", "val_loss"]),
    (["--early-stop", "val_accuracy:patience=-1"], ["patience must be >= 0"]),
    (["--init", "{root}/mf-checkpoint"], ["checkpoint of recsys/mf", "this run trains vision/cnn"]),
    (["--init", "{root}/weights.pt"], ["refusing", "a torch pickle"]),
    (["--init", "{root}/pickle.safetensors"], ["not a valid safetensors file"]),
    (["--recipe", "imagenet"], ["no recipe 'imagenet'", "mnist-5k, smoke"]),
    (["--freeze", "layer9"], ["--freeze layer9", "its blocks are"]),
    (["--init", "{root}/nothing.safetensors"], ["none of its 1 tensors", "torch twin's names"]),
]


@pytest.mark.parametrize("args, needles", BAD, ids=[" ".join(a).split("/")[-1] for a, _ in BAD])
def test_bad_training_requests_are_one_line_errors_that_write_nothing(
    args, needles, bad_sources, tool, tmp_path
):
    out = tmp_path / "run"
    argv = ["zoo/vision/cnn", "--fw", "torch", "--recipe", "smoke", "--out", str(out), "--no-progress"]
    if "--recipe" in args:
        argv = argv[:3] + argv[5:]
    argv += [a.format(root=bad_sources) for a in args]
    with pytest.raises(UserError) as err:
        tool.main(argv)
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert not out.exists()


def test_a_bad_request_exits_2_with_one_line(bad_sources, tmp_path):
    proc = run_tool(
        "tools/train.py",
        "zoo/vision/cnn",
        "--fw",
        "torch",
        "--init",
        str(bad_sources / "weights.pt"),
        "--out",
        str(tmp_path / "r"),
    )
    assert_one_line_error(proc, "a torch pickle")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- recipes


def test_a_recipe_sets_config_and_data_and_flags_override_it(tool, capsys):
    parser = tool.build_parser()
    config, settings = tool.request(
        SPEC, "torch", parser.parse_args(["zoo/vision/cnn", "--fw", "torch", "--recipe", "smoke"])
    )
    assert (config.base_width, config.image_size, settings.data, settings.recipe) == (8, 8, "digits", "smoke")
    args = parser.parse_args(
        [
            "zoo/vision/cnn",
            "--fw",
            "torch",
            "--recipe",
            "smoke",
            "--set",
            "base_width=16",
            "--data",
            "mnist-5k",
        ]
    )
    config, settings = tool.request(SPEC, "torch", args)
    assert (config.base_width, config.image_size, settings.data) == (16, 8, "mnist-5k")
    config, settings = tool.request(
        SPEC, "torch", parser.parse_args(["zoo/vision/cnn", "--fw", "torch", "--recipe", "mnist-5k"])
    )
    assert config == SPEC.config() and settings.data == "mnist-5k"
    assert tool.main(["zoo/vision/cnn", "--list-recipes"]) == 0
    printed = capsys.readouterr().out
    assert "mnist-5k" in printed and "accuracy >= 0.98" in printed and "--recipe smoke" in printed


@pytest.mark.parametrize("name", registry.list_models())
def test_each_card_lists_its_recipes_as_generated_from_the_spec(name):
    spec = registry.get(name)
    assert spec.recipes, f"{name}'s spec.py lists no recipe"
    for recipe in spec.named_recipes():
        spec.config(**recipe.config)  # every recipe's Config is valid
        assert not recipe.metric or recipe.metric in spec.task_module.METRICS, recipe.name
    card = (ROOT / "zoo" / name / "README.md").read_text()
    assert recipes.START in card, f"no Recipes block in {name}'s card: run python tools/summary.py --recipes"
    assert recipes.update_card(spec, card) == card, (
        f"{name}'s Recipes block is stale: run python tools/summary.py --recipes"
    )
    assert replace_block(card, recipes.START, recipes.END, "", "") != card


def test_early_stopping_counts_patience_as_keras_does():
    class Run:
        spec = SPEC
        now = {"epoch": 0}

        def weights(self):
            return {}

    stopper = EarlyStopping("val_accuracy", patience=2, min_delta=0.01)
    stopper.set_run(Run())
    for epoch, value in enumerate([0.5, 0.6, 0.605, 0.6, 0.7]):
        stopper.on_epoch_end(epoch, {"val_accuracy": value})
        if stopper.stop_training:
            break
    assert (stopper.stopped_epoch, stopper.best_epoch, stopper.best, stopper.mode) == (4, 2, 0.6, "max")
    state, _ = stopper.get_state()
    fresh = EarlyStopping("val_accuracy", patience=2, min_delta=0.01)
    fresh.set_state(json.loads(json.dumps(state)), {})
    assert (fresh.wait, fresh.best, fresh.stop_training) == (2, 0.6, True)
