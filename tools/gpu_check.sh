#!/usr/bin/env bash
# The GPU check: one call on a machine with a GPU and PyTorch (no TensorFlow needed; the Keras twins run on
# Keras' PyTorch backend). In order, while the time budget lasts (BUDGET_S, default 540 s):
#   1. the twins on the GPU: forward after weight transfer both ways (fp32, TF32 off), train-mode loss and
#      gradients (float64, as tier 1 computes them), against the tolerances of shared/crosscheck.py
#   2. every model trained by run.train (what `tools/train.py MODEL --fw torch --gpus 1` runs) for ~STEPS steps
#   3. throughput of torch and Keras twins, fp32 and bf16, eager then compiled (torch.compile; Keras
#      jit_compile, which is torch.compile on this backend): WARMUP_STEPS untimed, then TIMED_STEPS timed
# Prints three tables, writes $OUT/gpu_check.json and $OUT/gpu_check.txt; exit 1 when a twin check fails
# or a model does not train, 0 otherwise (a config skipped for time is listed as skipped).
#
#   tools/gpu_check.sh
#   MODELS="vision/cnn nlp/seq2seq" STEPS=300 BUDGET_S=300 tools/gpu_check.sh
#   ALLOW_CPU=1 MODELS=vision/cnn STEPS=5 TIMED_STEPS=3 WARMUP_STEPS=1 tools/gpu_check.sh   # dry run, no GPU
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND=torch PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
OUT="${OUT:-runs/gpu-check}"
RUNS="${RUNS:-$(mktemp -d)}"  # training run folders (checkpoints): kept out of $OUT
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

"$PY" - "$OUT" "$RUNS" <<'PYTHON' 2>&1 | tee "$OUT/gpu_check.txt"
import gc
import json
import math
import os
import sys
import time

import torch

out, runs = sys.argv[1], sys.argv[2]
BUDGET = float(os.environ.get("BUDGET_S", "540"))
STEPS = int(os.environ.get("STEPS", "200"))
WARMUP, TIMED = int(os.environ.get("WARMUP_STEPS", "10")), int(os.environ.get("TIMED_STEPS", "50"))
START = time.monotonic()
GPUS = 1 if torch.cuda.is_available() else 0
if not GPUS and os.environ.get("ALLOW_CPU") != "1":
    sys.exit("gpu_check: torch sees no GPU; ALLOW_CPU=1 runs the same checks on the CPU as a dry run")

missing = []
for module in ("keras", "safetensors", "datasets", "numpy", "tqdm", "tensorboard", "matplotlib"):
    try:
        __import__(module)
    except ImportError:
        missing.append(module)
if missing:
    sys.exit(f"gpu_check: missing Python packages {', '.join(missing)}; install them from requirements.lock")

import keras  # noqa: E402  (KERAS_BACKEND=torch: no TensorFlow)

from shared import crosscheck  # noqa: E402
from shared.data import load  # noqa: E402
from shared.data.iterator import BatchIterator  # noqa: E402
from shared.train import keras_trainer, run, torch_trainer  # noqa: E402
from zoo import registry  # noqa: E402

MODELS = os.environ.get("MODELS", "").split() or registry.list_models()
device = torch.device("cuda" if GPUS else "cpu")
report = {"device": torch.cuda.get_device_name(0) if GPUS else "cpu (dry run)", "torch": torch.__version__,
          "keras": keras.__version__, "keras_backend": keras.backend.backend(), "twins": [], "runs": [],
          "throughput": []}
print(f"== gpu_check on {report['device']}: torch {torch.__version__}, keras {keras.__version__} "
      f"({keras.backend.backend()} backend), budget {BUDGET:.0f}s", flush=True)


def left() -> float:
    return BUDGET - (time.monotonic() - START)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


def smoke(spec, **overrides):
    kwargs = dict(spec.smoke_data)
    data = kwargs.pop("dataset", spec.dataset)
    return spec.config(**{**spec.smoke_config, **overrides}), data, kwargs


_SPLITS = {}


def train_split(spec):
    if spec.name not in _SPLITS:
        config, data, kwargs = smoke(spec)
        _SPLITS[spec.name] = spec.task_module.prepare(load(data, **kwargs), config)[0]["train"]
    return _SPLITS[spec.name]


def release() -> None:
    gc.collect()
    if GPUS:
        torch.cuda.empty_cache()


# 1. The twins on the GPU: forward in fp32 without TF32 (TF32 rounds matmul inputs to 10 mantissa bits:
# not the tier-1 comparison), and train-mode loss and gradients in float64 as shared/crosscheck.py's
# check_gradients computes them (float32 ReLUs within rounding of zero flip between frameworks).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
# Keras' PyTorch backend keeps some arithmetic in float32 under a float64 policy: on the CPU (vision/cnn
# smoke) its float64 check gives loss 3.3e-7 and gradients 5.7e-6 where the TensorFlow backend gives 5e-14.
# So the bound here is tier 1's float32 gradient tolerance, not crosscheck.GRAD_RTOL (float64, 1e-6).
GRAD_TOL = float(os.environ.get("GRAD_TOL", "1e-4"))


def gradients_on_device(spec, config) -> list:
    import numpy as np

    from shared.keras_weights import grads_to_canonical

    torch_model, keras_model = crosscheck.build_float64(spec, config)  # Keras: on the GPU by default
    torch_model = torch_model.to(device)
    spec.set_weights(keras_model, spec.get_weights(torch_model))
    batch = crosscheck.float64_batch(spec.example_batch(config, batch_size=4, seed=7))
    t_loss, t_grads = torch_trainer.loss_and_grads(spec.impl("torch"), torch_model, batch, config)
    k_loss, k_paths = keras_trainer.loss_and_grads(spec.impl("keras"), keras_model, batch, config)
    k_grads = grads_to_canonical(keras_model, spec.impl("keras").weight_map(config), k_paths)
    loss_err = abs(t_loss - k_loss) / max(1e-8, abs(t_loss))
    floor = 0.01 * max(float(np.max(np.abs(g))) for g in t_grads.values())
    tol = GRAD_TOL
    return [crosscheck.Check("train_loss_float64", loss_err, tol, loss_err <= tol),
            crosscheck.compare_dicts("gradients_float64", t_grads, k_grads, tol, relative_floor=floor)]


for name in MODELS:
    spec = registry.get(name)
    try:
        config = smoke(spec)[0]
        torch.manual_seed(0)
        keras.utils.set_random_seed(0)
        torch_model, keras_model = spec.build("torch", config).to(device), spec.build("keras", config)
        checks = crosscheck.check_forward(spec, config, torch_model, keras_model, "torch_to_keras", (1, 5))
        checks += crosscheck.check_forward(spec, config, keras_model, torch_model, "keras_to_torch", (2,))
        checks += gradients_on_device(spec, crosscheck.no_dropout(spec, config))
        rows = [{"model": name, "check": c.name, "max_error": c.max_error, "tolerance": c.tolerance,
                 "passed": c.passed} for c in checks]
    except Exception as err:  # noqa: BLE001  (report every model)
        rows = [{"model": name, "check": "twins", "error": first_line(err), "passed": False}]
    report["twins"] += rows
    for r in rows:
        shown = r.get("error") or f"max err {r['max_error']:.2e} (tol {r['tolerance']:.0e})"
        print(f"[twins] {name:20s} {r['check']:28s} {'PASS' if r['passed'] else 'FAIL'}  {shown}", flush=True)
    release()

# 2. Every model trained by run.train in torch on one GPU for about STEPS steps.
for name in MODELS:
    spec = registry.get(name)
    if left() < 30:
        report["runs"].append({"model": name, "skipped": "time budget"})
        continue
    try:
        per_epoch = len(BatchIterator(train_split(spec), smoke(spec)[0].batch_size))
        config, data, kwargs = smoke(spec, epochs=max(1, math.ceil(STEPS / max(per_epoch, 1))))
        t0 = time.perf_counter()
        result = run.train(spec, config, "torch", data=data, data_kwargs=kwargs, gpus=GPUS, progress=False,
                           out=f"{runs}/{name.replace('/', '-')}-torch", overwrite=True, snapshot_every=0)
        primary = spec.task_module.PRIMARY_METRIC
        row = {"model": name, "steps": result["steps"], "seconds": round(time.perf_counter() - t0, 1),
               "train_seconds": round(result["train_seconds"], 1), primary: result["test"][primary],
               "metric": primary}
    except Exception as err:  # noqa: BLE001
        row = {"model": name, "error": first_line(err)}
    report["runs"].append(row)
    print(f"[run] {row}", flush=True)
    release()


# 3. Throughput: examples per second over TIMED_STEPS steps after WARMUP_STEPS (compilation happens there).
class Enough(Exception):
    pass


def throughput(spec, fw: str, precision: str, compile: bool) -> dict:
    config = smoke(spec)[0]
    trainer = torch_trainer if fw == "torch" else keras_trainer
    runtime = trainer.setup(GPUS, None, config.seed, precision=precision)
    session = trainer.Session(spec, config, runtime, total_steps=WARMUP + TIMED, precision=precision,
                              compile=compile)
    iterator = BatchIterator(train_split(spec), config.batch_size, seed=config.seed)
    stamps = []

    def on_step(step, loss, lr):  # the trainers read each step's loss back: the device is synchronised
        stamps.append((time.perf_counter(), loss))
        if len(stamps) == WARMUP + TIMED:
            raise Enough

    start = time.perf_counter()
    try:
        for epoch in range(10**6):
            session.train_epoch(iterator, epoch, 0, on_step, progress=False)
    except Enough:
        pass
    timed = stamps[-1][0] - stamps[max(WARMUP, 1) - 1][0]
    steps = len(stamps) - max(WARMUP, 1)
    return {"examples_per_s": round(steps * config.batch_size / timed, 1),
            "ms_per_step": round(1000 * timed / steps, 2), "first_step_s": round(stamps[0][0] - start, 1),
            "last_loss": round(stamps[-1][1], 4), "batch_size": config.batch_size}


configs = [(name, fw, precision, compile) for compile in (False, True) for name in MODELS
           for fw in ("torch", "keras") for precision in ("fp32", "bf16")]
for name, fw, precision, compile in configs:
    row = {"model": name, "fw": fw, "precision": precision, "compile": compile}
    if left() < (90 if compile else 20):
        row["skipped"] = "time budget"
    else:
        try:
            row.update(throughput(registry.get(name), fw, precision, compile))
        except Exception as err:  # noqa: BLE001
            row["error"] = first_line(err)
    report["throughput"].append(row)
    print(f"[throughput] {row}", flush=True)
    release()

print(f"\n== twins on {report['device']} (fp32, TF32 off): forward and gradients after weight transfer")
for r in report["twins"]:
    print(f"{r['model']:20s} {r['check']:28s} {'PASS' if r['passed'] else 'FAIL':5s} "
          + (r.get("error") or f"{r['max_error']:.2e} <= {r['tolerance']:.0e}"))
print(f"\n== torch, run.train on {'1 GPU' if GPUS else 'the CPU'}, ~{STEPS} steps")
for r in report["runs"]:
    trained = f"{r.get('steps', 0):5d} steps  {r.get('train_seconds', 0):7.1f}s training"
    shown = r.get("error") or r.get("skipped") or f"{trained}  test {r['metric']} {r[r['metric']]:.4f}"
    print(f"{r['model']:20s} {shown}")
print(f"\n== throughput, examples/s over {TIMED} steps after {WARMUP} (first step includes compilation)")
print(f"{'model':20s} {'fw':6s} {'prec':5s} {'compile':8s} {'ex/s':>10s} {'ms/step':>8s} {'first s':>8s}")
for r in report["throughput"]:
    head = f"{r['model']:20s} {r['fw']:6s} {r['precision']:5s} {str(r['compile']):8s} "
    if "examples_per_s" in r:
        print(head + f"{r['examples_per_s']:10.1f} {r['ms_per_step']:8.2f} {r['first_step_s']:8.1f}")
    else:
        print(head + (r.get("error") or r.get("skipped")))
with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(report, f, indent=1)
failed = [r for r in report["twins"] if not r["passed"]] + [r for r in report["runs"] if "error" in r]
print(f"\n{len(failed)} failure(s); {time.monotonic() - START:.0f}s; details in {out}/gpu_check.json")
sys.exit(1 if failed else 0)
PYTHON
