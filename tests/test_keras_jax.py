"""Keras' JAX backend: which backend a run takes, tier 1 of the twins on JAX, and the Keras trainer on JAX
(one replica, and data parallel over 2 XLA CPU devices giving the one-replica run)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared import checkpoint
from shared.errors import UserError
from shared.frameworks import choose_keras_backend, set_keras_backend
from tests.conftest import ROOT, assert_one_line_error, run_tool
from tests.test_distributed import RECIPE, layout, losses, weights, weights_apart
from zoo import registry

JAX_ENV = {"OMP_NUM_THREADS": "1", "KERAS_BACKEND": "jax"}


def test_backend_choice_flag_then_environment_then_jax_on_gpus():
    assert choose_keras_backend("torch", gpus=1, env={"KERAS_BACKEND": "jax"}) == "torch"
    assert choose_keras_backend(None, gpus=0, env={"KERAS_BACKEND": "jax"}) == "jax"
    assert choose_keras_backend(None, gpus=2, env={}) == "jax"
    assert choose_keras_backend(None, gpus=0, env={}) == "tensorflow"
    with pytest.raises(
        UserError, match="--keras-backend must be one of jax, tensorflow, torch; found 'mxnet'"
    ):
        choose_keras_backend("mxnet", env={})
    with pytest.raises(UserError, match="KERAS_BACKEND must be one of"):
        choose_keras_backend(None, env={"KERAS_BACKEND": "numpy"})


def test_a_backend_that_is_not_installed_is_refused(monkeypatch):
    import shared.frameworks as frameworks

    monkeypatch.setattr(frameworks, "installed", lambda module: module != "jax")
    assert frameworks.choose_keras_backend(None, gpus=1, env={}) == "torch"  # the next that coexists
    with pytest.raises(UserError, match=r"the Keras backend jax is not installed \(GPUs: pip install"):
        frameworks.choose_keras_backend("jax", env={})


def test_the_loaded_backend_cannot_be_switched(frameworks):
    keras, _ = frameworks
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    with pytest.raises(UserError, match=f"already loaded with the {keras.backend.backend()} backend"):
        set_keras_backend(other)


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--fw", "torch", "--keras-backend", "jax"], ["--keras-backend jax is for --fw keras"]),
        (["--fw", "keras", "--keras-backend", "theano"], ["--keras-backend must be one of"]),
    ],
)
def test_backend_flags_that_cannot_work_are_one_line_errors(args, needles, tmp_path):
    proc = run_tool("tools/train.py", "zoo/vision/cnn", *args, "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "run").exists()


def jax_train(out, *extra: str) -> dict:
    proc = run_tool(
        "tools/train.py", "zoo/vision/cnn", "--fw", "keras", "--keras-backend", "jax", *RECIPE,
        "--out", str(out), *extra, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


def test_two_jax_cpu_replicas_follow_one_replica(tmp_path):
    """The smoke CNN through the Keras trainer on JAX (tools/train.py sets the backend and splits the CPU into
    2 XLA devices before jax loads): global batch 256 on 1 replica, and sharded 2 x 128 by DataParallel.
    JAX runs one program over the global batch, so BatchNorm and the loss are the global batch's either way:
    the same loss at every step and the same weights, to float32 reduction order."""
    one = jax_train(tmp_path / "one")
    two = jax_train(tmp_path / "two", "--cpu-replicas", "2")
    assert (one["replicas"], two["replicas"]) == (1, 2) and one["steps"] == two["steps"] == 5
    assert one["backend"] == two["backend"] == "jax"
    assert checkpoint.load(tmp_path / "two")["meta"]["backend"] == "jax"
    first, second = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert np.isfinite(first).all() and first[-1] < first[0]  # it trains
    relative = [abs(a - b) / abs(a) for a, b in zip(first, second)]
    assert max(relative) <= 1e-4, relative  # measured 6.6e-6 at the 5th step on 2026-11-27
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    worst, _ = weights_apart(w1, w2)
    # float32 drift of the sharded reductions (the losses agree to 7e-6): measured 4.9e-4 on 2026-11-27; the
    # torch test's 1- vs 2-thread runs drift 7.8e-3 (tests/test_distributed.py)
    assert worst <= 3e-3, worst
    assert layout(tmp_path / "two") == layout(tmp_path / "one")


TIER1 = """
import json, sys
sys.modules["triton"] = None  # as shared.frameworks.load_both
import keras
from shared.crosscheck import run_tier1
from zoo import registry
assert keras.backend.backend() == "jax", keras.backend.backend()
spec = registry.get(sys.argv[1])
checks = run_tier1(spec, spec.config(), batch_sizes=(2,))
print(json.dumps([c.as_dict() for c in checks]))
"""


def jax_tier1(name: str) -> list[dict]:
    proc = run_tool("-W", "ignore", "-c", TIER1, name, env=JAX_ENV, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# perception on JAX: the float64 train loss differs from torch's by 7e-9 relative (float32-sized, where every
# other model agrees to float64 rounding) and gradients by 2.3e-2 of the floor (up3.conv.weight): a float32
# step somewhere in its Keras path on JAX, not found yet (its forward checks pass).
PERCEPTION_ON_JAX = pytest.mark.xfail(strict=True, reason="float32 somewhere in the JAX path; see comment")


def tier1_param(name: str):
    if name == "recsys/mf":  # make test: about 15 CPU-seconds
        return name
    marks = [pytest.mark.slow] + ([PERCEPTION_ON_JAX] if name == "driving/perception" else [])
    return pytest.param(name, marks=marks)


# recsys/mf in make test; every model in test-all (about 6 CPU-minutes in all on 2 cores).
@pytest.mark.parametrize("name", [tier1_param(n) for n in registry.list_models()])
def test_tier1_on_jax(name):
    """The twins compute the same function with Keras on JAX: forward both ways, float64 gradients (JAX's
    x64 mode), optimizer steps, whole train steps through the Keras trainer, and the model's own checks."""
    checks = jax_tier1(name)
    failed = [f"{c['name']}: {c['max_error']:.3e} > {c['tolerance']:.0e} ({c['detail']})" for c in checks]
    assert not [f for f, c in zip(failed, checks) if not c["passed"]], "\n".join(failed)
    assert {"gradients", "optimizer_step", "train_step_sgd", "round_trip_torch_keras_torch"} <= {
        c["name"] for c in checks
    }


def test_jax_is_importable_beside_torch():
    """torch (its CUDA 13 build) and jax load into one process jax-first (the tier-1 subprocesses above
    load torch first, then keras with jax)."""
    code = "import sys; sys.modules['triton'] = None; import jax, torch; print(jax.__version__, torch.__version__)"
    proc = run_tool("-c", code, cwd=ROOT, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.split()[0] == "0.10.2", proc.stderr[-2000:]


@pytest.mark.parametrize("schedule", ["cosine", "inverse_sqrt", "constant"])
def test_keras_schedule_gives_torch_lambda_lr_every_step(schedule, frameworks):
    """The Keras trainer's lr, read from the optimizer's step counter inside the step, is what torch's
    LambdaLR gives at every step (float32 rounding of the same value)."""
    keras, torch = frameworks
    from shared.train.keras_trainer import PerStepSchedule
    from shared.train.schedule import lr_at

    spec = registry.get("vision/cnn")
    config = spec.config(schedule=schedule, warmup_steps=3, lr=0.1)
    total = 17
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(config, s, total) / config.lr)
    ours = PerStepSchedule(config, total)
    for step in range(total + 2):  # past the end: the last rate holds, as nothing trains there
        theirs = optimizer.param_groups[0]["lr"] if step < total else lr_at(config, total - 1, total)
        assert float(keras.ops.convert_to_numpy(ours(step))) == pytest.approx(theirs, rel=1e-7), step
        optimizer.step()
        lambda_lr.step()


def test_columns_decoded_in_a_jax_compiled_step_are_numpy_bits():
    """The Keras trainer decodes uint8 images inside the compiled step (shared/data/keras_data.py): under
    jax.jit the values are numpy's, bit for bit, where XLA's arithmetic would differ in the last bit (it
    multiplies by a divisor's reciprocal); a mask's cast decodes exactly too."""
    code = """
import sys; sys.modules['triton'] = None
import jax, numpy as np
from shared.data.columns import decode_array
from shared.data.keras_data import decode_columns, decode_tensor, widened
image = [("cast", "float32"), ("div", 255.0), ("sub", [0.3, 0.4, 0.5]), ("div", [0.2, 0.25, 0.3])]
rng = np.random.default_rng(0)
batch = {"image": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
         "mask": rng.integers(0, 4, (4, 8, 8), dtype=np.uint8)}
decode = {"image": image, "mask": [("cast", "int64")]}
device = widened(batch, decode)
out = jax.jit(lambda b: decode_columns(b, device))(batch)
arithmetic = jax.jit(lambda x: decode_tensor(x, image))(batch["image"])
for k in batch:
    want = decode_array(batch[k], decode[k])
    assert np.asarray(out[k]).dtype == want.dtype, (k, np.asarray(out[k]).dtype)
    assert np.array_equal(np.asarray(out[k]), want), k
print(int((np.asarray(arithmetic) != decode_array(batch["image"], image)).sum()))
"""
    proc = run_tool("-c", code, cwd=ROOT, env={**JAX_ENV, "JAX_ENABLE_X64": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the arithmetic decode does differ: the table is what keeps numpy's bits
    assert int(proc.stdout.split()[-1]) > 0


def test_inference_on_jax_is_compiled_and_reads_the_current_weights():
    """Keras' eval forward and greedy decoding run compiled on JAX (shared/keras_weights.inference): the same
    outputs as the eager twin, and weights changed after the first compiled call are the ones the next call
    uses (they are passed in, not baked into the program); a model that goes takes its functions along."""
    code = """
import sys; sys.modules['triton'] = None
import keras, numpy as np
from shared import decoding, keras_weights
from zoo import registry
assert keras.backend.backend() == "jax"
calls = []


def close(found, want):  # float32 rounding of another summation order, relative to the outputs' scale
    np.testing.assert_allclose(found, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))


for name in ("vision/cnn", "nlp/seq2seq"):
    spec = registry.get(name)
    config = spec.config(**spec.smoke_config)
    model, impl = spec.build("keras", config), spec.impl("keras")
    batch = spec.example_batch(config, batch_size=3, seed=1)

    def eager():
        found = impl.call(model, keras_weights.to_tensors(batch), training=False)
        return {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in found.items()}

    first = spec.forward(model, batch)
    for k, v in eager().items():
        close(first[k], v)
    for variable in model.trainable_variables:  # new weights after the compilation
        variable.assign(variable.value * 1.5)
    second = spec.forward(model, batch)
    for k, v in eager().items():
        close(second[k], v)
    key = next(iter(first))
    assert not np.allclose(first[key], second[key]), key
    calls.append(sorted(getattr(model, keras_weights.COMPILED)))
stepper = decoding.bind(model, "keras")
memory, state = stepper.encode(batch["src"], batch["src_mask"])
logits, state, attention = stepper.step(memory, state, np.full(len(batch["src"]), 1, np.int64))
want = model.decode_step(*[{k: keras.ops.convert_to_tensor(v) for k, v in d.items()} for d in model.encode(
    keras.ops.convert_to_tensor(batch["src"]), keras.ops.convert_to_tensor(batch["src_mask"]))],
    keras.ops.convert_to_tensor(np.full(len(batch["src"]), 1, np.int64)))
close(logits, np.asarray(want[0]))
calls.append(sorted(getattr(model, keras_weights.COMPILED)))
import gc, weakref
gone = weakref.ref(model)
del model, stepper, eager
gc.collect()
assert gone() is None, "the compiled functions keep their model alive"
print(calls)
"""
    proc = run_tool("-W", "ignore", "-c", code, cwd=ROOT, env=JAX_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[['call'], ['call'], ['call', 'decode_step', 'encode']]"
