"""Mixed precision and compilation: bf16 really computes in bfloat16 with float32 weights in both twins,
fp16 goes through loss scaling, the CPU refuses fp16, and --compile trains (torch.compile, Keras XLA)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.data.iterator import BatchIterator
from shared.errors import UserError
from tests.conftest import assert_one_line_error, run_tool
from zoo import registry

SPEC = registry.get("vision/cnn")
SMOKE = [arg for k, v in SPEC.smoke_config.items() for arg in ("--set", f"{k}={v}")]
ENV = {"OMP_NUM_THREADS": "1"}


def tiny():
    config = SPEC.config(**{**SPEC.smoke_config, "batch_size": 16})
    return config, BatchIterator(SPEC.example_batch(config, 48, seed=5), 16, seed=0)


def test_torch_bf16_runs_the_forward_in_bfloat16_and_keeps_float32_weights(frameworks):
    _, torch = frameworks
    from shared.train import torch_trainer

    config, iterator = tiny()
    session = torch_trainer.Session(
        SPEC, config, torch_trainer.setup(0, None, 0), total_steps=3, precision="bf16"
    )
    seen = []
    session.model.fc.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    before = {k: v.clone() for k, v in session.model.state_dict().items()}
    loss = session.train_epoch(iterator, 0, progress=False)
    assert seen == [torch.bfloat16] * 3 and np.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in session.model.parameters())
    assert not torch.equal(before["fc.weight"], session.model.fc.weight)


def test_torch_fp16_steps_through_the_gradient_scaler(frameworks):
    """fp16 is refused on the CPU by setup(); the step itself (autocast + GradScaler) runs on any device."""
    _, torch = frameworks
    from shared.data.torch_data import to_tensors
    from shared.train import torch_trainer

    config, iterator = tiny()
    model = SPEC.build("torch", config)
    optimizer = torch_trainer.make_optimizer(model, config)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    start = model.fc.weight.detach().clone()
    loss = torch_trainer.train_step(
        SPEC.impl("torch"),
        model,
        optimizer,
        to_tensors(next(iter(iterator))),
        config,
        precision="fp16",
        scaler=scaler,
    )
    assert torch.isfinite(loss) and scaler.get_scale() == 2.0**10  # a finite step keeps the scale
    assert not torch.equal(start, model.fc.weight)
    model.fc.weight.data[0, 0] = float("inf")  # an overflowing step is skipped and the scale halves
    before = model.fc.bias.detach().clone()
    torch_trainer.train_step(
        SPEC.impl("torch"),
        model,
        optimizer,
        to_tensors(next(iter(iterator))),
        config,
        precision="fp16",
        scaler=scaler,
    )
    assert scaler.get_scale() == 2.0**9 and torch.equal(before, model.fc.bias)


def test_keras_bf16_policy_computes_in_bfloat16_and_keeps_float32_weights(frameworks):
    keras, _ = frameworks
    from shared.train import keras_trainer

    config, iterator = tiny()
    runtime = keras_trainer.setup(0, None, 0)
    session = keras_trainer.Session(SPEC, config, runtime, total_steps=3, precision="bf16")
    conv = session.model.layer1.layers[0].conv1  # torch: model.layer1[0].conv1
    assert conv.compute_dtype == "bfloat16" and conv.kernel.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    before = np.asarray(session.model.fc.kernel).copy()
    loss = session.train_epoch(iterator, 0, progress=False)
    assert np.isfinite(loss) and not np.array_equal(before, np.asarray(session.model.fc.kernel))
    fp16 = keras_trainer.Session(SPEC, config, runtime, total_steps=3, precision="fp16")
    assert isinstance(fp16.module.optimizer, keras.optimizers.LossScaleOptimizer)


def test_fp16_on_the_cpu_is_refused_in_both_frameworks(frameworks):
    from shared.train import keras_trainer, torch_trainer

    for trainer in (torch_trainer, keras_trainer):
        with pytest.raises(UserError, match="fp16 is for GPUs"):
            trainer.setup(0, None, 0, precision="fp16")


@pytest.mark.parametrize(
    "fw,precision,needle",
    [
        ("torch", "fp16", "--precision fp16 is for GPUs"),
        ("keras", "fp8", "--precision must be one of fp32, bf16, fp16"),
    ],
)
def test_bad_precision_is_a_one_line_error(fw, precision, needle, tmp_path):
    proc = run_tool(
        "tools/train.py",
        "zoo/vision/cnn",
        "--fw",
        fw,
        "--precision",
        precision,
        "--data",
        "digits",
        *SMOKE,
        "--out",
        str(tmp_path / "run"),
        env=ENV,
    )
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "run").exists()


# 5 updates of plain SGD on 256 digits each: enough updates that a compiled step which skipped or
# misapplied the update (or trained another copy of the weights) shows in the losses after the first.
COMPILE_RECIPE = [
    "--data",
    "digits",
    *SMOKE,
    "--batch-size",
    "256",
    "--set",
    "optimizer=sgd",
    "--lr",
    "0.01",
    "--set",
    "schedule=constant",
    "--threads",
    "1",
    "--no-progress",
]
# Compilation reorders float32 sums, and the difference grows by 3-20x per update (measured 2026-11-27,
# relative loss differences at steps 0-4: torch 3.5e-7, 8.0e-5, 1.2e-3, 1.4e-4, 6.4e-5; Keras 0, 3.1e-5,
# 5.6e-4, 1.3e-3, 5.0e-3), while each update lowers the loss by 2-6%. So: the loss before any update to
# float32 rounding, after the first update within 2e-4, then within 2e-2.
COMPILE_FIRST_RTOL = (1e-5, 2e-4)
COMPILE_LOSS_RTOL = 2e-2
# The final weights are not compared: they ended 1.4e-2 apart (relative to each tensor's largest value) in
# both frameworks, float32 drift that a tolerance loose enough to pass would let real bugs through too.


@pytest.mark.timeout(900)
@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_compiled_training_matches_eager_training(fw, tmp_path):
    """torch.compile (inductor's C++ backend on the CPU) and Keras jit_compile (XLA) train like eager mode:
    the same loss at every one of 5 updates (within float32 reordering), and the losses fall."""
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        proc = run_tool(
            "tools/train.py",
            "zoo/vision/cnn",
            "--fw",
            fw,
            *COMPILE_RECIPE,
            "--out",
            str(tmp_path / name),
            *extra,
            env=ENV,
            timeout=800,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = (tmp_path / name / "steps.csv").read_text().splitlines()[1:]
        runs[name] = [float(line.split(",")[1]) for line in lines]
    eager, compiled = runs["eager"], runs["compiled"]
    assert len(eager) == len(compiled) == 5
    relative = [abs(a - b) / abs(a) for a, b in zip(eager, compiled)]
    assert relative[0] <= COMPILE_FIRST_RTOL[0] and relative[1] <= COMPILE_FIRST_RTOL[1], relative
    assert max(relative) <= COMPILE_LOSS_RTOL, relative
    assert compiled[-1] < compiled[0]  # the updates were applied
    meta = json.loads((tmp_path / "compiled" / "checkpoint" / "meta.json").read_text())
    assert meta["compile"] is True and meta["precision"] == "fp32"
