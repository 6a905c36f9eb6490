#!/usr/bin/env bash
# The GPU check: one call on a machine with a GPU, torch and JAX, without TensorFlow (see
# ../shared/gpu/README.md). Each section runs under `timeout` within an overall budget (BUDGET_S, default
# 505 s: with start-up and the limits' grace the whole check fits 9 minutes on one H100); a section stopped
# by its limit keeps the rows it had measured (tools/bench.py writes its JSON as it goes). In order:
#   twins      the twins on the GPU: forward after weight transfer both ways (fp32, TF32 off), float64 loss
#              and gradients (Keras on its PyTorch backend), and the torch trainer's CUDA prefetcher
#              (batches in order, early stop, errors passed on)             -> twins.json
#   resnet18   ResNet-18, ImageNet stem, 224 px, batch 128 (tools/bench.py --preset resnet18-224):
#              torch: plain loop, trainer, torchvision, fp32/bf16           -> bench-resnet18-torch.json
#              plain loop and torchvision in bf16 + channels_last           -> bench-resnet18-torch-cl.json
#              Keras on JAX: plain fit, trainer, keras-hub ResNetBackbone, fp32/bf16 -> bench-resnet18-keras-jax.json
#   small      every model's smoke config, torch and Keras on JAX (the GPU default): plain loop and trainer,
#              with the Keras / torch trainer ratio, 200-step blocks        -> bench-small.json
#   resnet18   (the rest, last) Keras on PyTorch                             -> bench-resnet18-keras-torch.json
#              torch trainer bf16 + torch.compile                           -> bench-resnet18-torch-compile.json
#   literal    (run second: the mission's commands before the timings) `tools/train.py zoo/nlp/seq2seq --fw torch --gpus 1` and `--fw keras --gpus 1` exactly as
#              written (KERAS_BACKEND as the caller set it, else the project's default) -> literal-*.log,
#              literal.json (exit status, seconds, result.json)
# Writes all of these into $OUT (default runs/gpu-check), with gpu_check.txt (everything printed) and
# sections.json (each section's exit status, seconds, limit, whether its limit stopped it). Render the
# bench files locally with `python tools/bench.py --write-docs DIR/bench-*.json`.
# Exit status: 1 if a twin check failed, 0 otherwise (timings never fail the check; see sections.json).
#
#   tools/gpu_check.sh                                    # on the GPU machine (.whl/ installed when needed)
#   ALLOW_CPU=1 tools/gpu_check.sh                        # dry run on the CPU: tiny sizes, same sections
#   SECTIONS="twins small" BUDGET_S=200 tools/gpu_check.sh
#   SECTIONS=literal LITERAL_FWS=keras LITERAL_S=200 tools/gpu_check.sh   # one literal command, longer limit
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu-check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
exec > >(tee "$OUT/gpu_check.txt") 2>&1
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
START=$SECONDS
BUDGET="${BUDGET_S:-505}"
SCALE=1
SECTIONS="${SECTIONS:-twins resnet18 small literal}"

# The GPU machine lacks Keras, keras-hub and a few more: install the wheels ../shared/gpu/fetch-wheels.sh
# put into .whl/ (Python 3.12 builds) into a folder of their own, first on PYTHONPATH.
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('keras') is None)" >/dev/null 2>&1 && compgen -G ".whl/*.whl" >/dev/null; then
  SITE="${SITE:-$(mktemp -d)/site}"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || { echo "gpu_check: installing .whl/ failed"; exit 2; }
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"

GPU=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$GPU" != 1 ] && [ "${ALLOW_CPU:-}" != 1 ]; then
  echo "gpu_check: torch sees no GPU; ALLOW_CPU=1 runs the same sections on the CPU with tiny sizes (a dry run)"
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PYTHON'
import importlib.metadata as m
import platform
names = ("torch", "torchvision", "jax", "jaxlib", "keras", "keras-hub", "tensorflow", "numpy")
found = []
for n in names:
    try:
        found.append(f"{n} {m.version(n)}")
    except m.PackageNotFoundError:
        found.append(f"{n} -")
print(f"python {platform.python_version()}; " + ", ".join(found))
PYTHON

if [ "$GPU" = 1 ]; then
  RESNET=(--preset resnet18-224)
  TIMING=(--steps 20 --repeats 3 --warmup 5)
  SMALL_TIMING=(--steps 200 --repeats 3 --warmup 5)  # a Keras fit call costs ~0.1 s: long blocks (tools/bench.py)
  COMPILE=1
  LITERAL_EXTRA=()
else  # the dry run: the same commands on tiny sizes; torch.compile (a C++ toolchain, minutes) left out
  RESNET=(--preset resnet18-224 --set image_size=32 --batch-size 4)
  TIMING=(--steps 1 --repeats 1 --warmup 1)
  SMALL_TIMING=(--steps 1 --repeats 1 --warmup 1)
  COMPILE="${DRY_COMPILE:-0}"
  LITERAL_EXTRA=(--epochs 1 --batch-size 512 --set hidden_size=16 --set embedding_dim=16 --set attention_dim=16)
  SCALE="${DRY_SCALE:-4}"  # a shared CPU compiles and runs slower than the GPU machine: longer limits
  BUDGET="${BUDGET_S:-2000}"
fi
: > "$OUT/sections.jsonl"

# section NAME LIMIT COMMAND...: run it under `timeout` (the whole process group: Keras children too),
# within what is left of the budget; record its exit status and time.
section() {
  local name=$1 limit=$2 left rc t0
  shift 2
  limit=$((limit * SCALE))
  left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 20 ]; then
    echo "== [$name] skipped: ${left}s left of the ${BUDGET}s budget"
    echo "{\"section\": \"$name\", \"skipped\": \"time budget\"}" >> "$OUT/sections.jsonl"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== [$name] at $((SECONDS - START))s, limit ${limit}s: $*"
  t0=$SECONDS
  timeout -k 15 "$limit" "$@"
  rc=$?
  echo "== [$name] exit $rc after $((SECONDS - t0))s"
  echo "{\"section\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - t0)), \"limit\": $limit, \"timed_out\": $([ $rc = 124 ] || [ $rc = 137 ] && echo true || echo false)}" >> "$OUT/sections.jsonl"
  return 0
}
wants() { [[ " $SECTIONS " == *" $1 "* ]]; }
BENCH=("$PY" tools/bench.py)

if wants twins; then
  section twins 35 env KERAS_BACKEND=torch "$PY" - "$OUT" <<'PYTHON'
import json
import os
import sys

import numpy as np
import torch

out = sys.argv[1]
import keras  # noqa: E402  (KERAS_BACKEND=torch: no TensorFlow)

from shared import crosscheck  # noqa: E402
from shared.data.iterator import BatchIterator  # noqa: E402
from shared.data.torch_data import to_tensors  # noqa: E402
from shared.keras_weights import grads_to_canonical  # noqa: E402
from shared.train import keras_trainer, torch_input, torch_trainer  # noqa: E402
from zoo import registry  # noqa: E402

GPU = torch.cuda.is_available()
device = torch.device("cuda" if GPU else "cpu")
# fp32 without TF32 (TF32 rounds matmul inputs to 10 mantissa bits: not tier 1's comparison); Keras' PyTorch
# backend keeps some arithmetic in float32 under a float64 policy, so gradients are held to tier 1's float32
# tolerance (GRAD_TOL), not crosscheck.GRAD_RTOL.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
GRAD_TOL = float(os.environ.get("GRAD_TOL", "1e-4"))
rows = []


def save():
    with open(os.path.join(out, "twins.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(0) if GPU else "cpu (dry run)", "rows": rows}, f, indent=1)


def first_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


def prefetcher_checks():
    arrays = {"image": np.random.default_rng(0).integers(0, 255, (64, 8, 8, 3), dtype=np.uint8), "label": np.arange(64)}
    iterator = BatchIterator(arrays, 8, seed=1)
    convert = lambda b: to_tensors(b, device)  # noqa: E731
    got = list(torch_input.device_batches(iterator.batches(0), convert, device))
    same = len(got) == len(iterator) and all(
        np.array_equal(g["image"].cpu().numpy(), w["image"]) and np.array_equal(g["label"].cpu().numpy(), w["label"])
        for g, w in zip(got, iterator.batches(0)))
    early = torch_input.device_batches(iterator.batches(0), convert, device)
    next(early)
    early.close() if hasattr(early, "close") else None
    stopped = not getattr(early, "thread", None) or not early.thread.is_alive()

    def broken():
        yield from iterator.batches(0, 6)
        raise RuntimeError("a bad batch")

    try:
        list(torch_input.device_batches(broken(), convert, device))
        passed_on = False
    except RuntimeError as err:
        passed_on = "a bad batch" in str(err)
    kind = type(torch_input.device_batches(iter(()), convert, device)).__name__
    return [crosscheck.Check(f"prefetch_{n}_{kind}", 0.0 if ok else 1.0, 0.0, ok)
            for n, ok in (("order", same), ("early_stop", stopped), ("errors", passed_on))]


for name in os.environ.get("MODELS", "").split() or registry.list_models():
    spec = registry.get(name)
    try:
        config = spec.config(**spec.smoke_config)
        torch.manual_seed(0)
        keras.utils.set_random_seed(0)
        torch_model, keras_model = spec.build("torch", config).to(device), spec.build("keras", config)
        checks = crosscheck.check_forward(spec, config, torch_model, keras_model, "torch_to_keras", (1, 5))
        checks += crosscheck.check_forward(spec, config, keras_model, torch_model, "keras_to_torch", (2,))
        c64 = crosscheck.no_dropout(spec, config)
        t64, k64 = crosscheck.build_float64(spec, c64)
        t64 = t64.to(device)
        spec.set_weights(k64, spec.get_weights(t64))
        batch = crosscheck.float64_batch(spec.example_batch(c64, batch_size=4, seed=7))
        t_loss, t_grads = torch_trainer.loss_and_grads(spec.impl("torch"), t64, batch, c64)
        k_loss, k_paths = keras_trainer.loss_and_grads(spec.impl("keras"), k64, batch, c64)
        k_grads = grads_to_canonical(k64, spec.weight_map(c64), k_paths)
        loss_err = abs(t_loss - k_loss) / max(1e-8, abs(t_loss))
        floor = 0.01 * max(float(np.max(np.abs(g))) for g in t_grads.values())
        checks += [crosscheck.Check("train_loss_float64", loss_err, GRAD_TOL, loss_err <= GRAD_TOL),
                   crosscheck.compare_dicts("gradients_float64", t_grads, k_grads, GRAD_TOL, relative_floor=floor)]
        found = [{"model": name, "check": c.name, "max_error": c.max_error, "tolerance": c.tolerance,
                  "passed": bool(c.passed)} for c in checks]
    except Exception as err:  # noqa: BLE001  (report every model)
        found = [{"model": name, "check": "twins", "error": first_line(err), "passed": False}]
    rows.extend(found)
    for r in found:
        shown = r.get("error") or f"max err {r['max_error']:.2e} (tol {r['tolerance']:.0e})"
        print(f"[twins] {name:20s} {r['check']:28s} {'PASS' if r['passed'] else 'FAIL'}  {shown}", flush=True)
    save()
try:
    checks = prefetcher_checks()
    rows.extend({"model": "-", "check": c.name, "passed": bool(c.passed)} for c in checks)
except Exception as err:  # noqa: BLE001
    rows.append({"model": "-", "check": "prefetch", "error": first_line(err), "passed": False})
for r in rows[-3:]:
    print(f"[input] {r['check']:40s} {'PASS' if r['passed'] else 'FAIL'} {r.get('error', '')}", flush=True)
save()
PYTHON
fi

if wants literal; then
  for fw in ${LITERAL_FWS:-torch keras}; do
    folder="runs/nlp-seq2seq-$fw"  # the commands' default --out: replaced only when it is a run folder
    if [ -f "$folder/run.json" ] || [ -f "$folder/result.json" ]; then rm -rf "$folder"; fi
    t0=$SECONDS
    # limits from the 2026-11-27 H100 run: torch 50 s in all, Keras on JAX 96 s (25 s of it eager evaluation,
    # compiled since)
    if [ "$fw" = keras ]; then limit="${LITERAL_S:-100}"; else limit="${LITERAL_S:-70}"; fi
    section "literal-$fw" "$limit" "$PY" tools/train.py zoo/nlp/seq2seq --fw "$fw" --gpus "$GPU" "${LITERAL_EXTRA[@]}" \
      > "$OUT/literal-$fw.log" 2>&1
    tail -n 5 "$OUT/literal-$fw.log" | tr '\r' '\n' | tail -n 5
    "$PY" - "$OUT" "$fw" "$folder" "$((SECONDS - t0))" "$GPU" <<'PYTHON'
import json
import os
import sys

out, fw, folder, seconds, gpus = sys.argv[1:]
rows = []
path = os.path.join(out, "literal.json")
if os.path.exists(path):
    rows = json.load(open(path))
section = [json.loads(line) for line in open(os.path.join(out, "sections.jsonl"))][-1]
command = f"python tools/train.py zoo/nlp/seq2seq --fw {fw} --gpus {gpus}"
row = {"command": command, "keras_backend": os.environ.get("KERAS_BACKEND") if fw == "keras" else None,
       "seconds": int(seconds), **{k: section.get(k) for k in ("rc", "timed_out", "limit", "skipped")}}
try:
    result = json.load(open(os.path.join(folder, "result.json")))
    row.update({k: result.get(k) for k in ("steps", "train_seconds", "epoch_seconds", "test", "precision")})
except (OSError, ValueError):
    row["result"] = "no result.json (see literal-%s.log)" % fw
rows.append(row)
json.dump(rows, open(path, "w"), indent=1)
print(f"[literal] {command}: {row}")
PYTHON
  done
fi

if wants resnet18; then
  section resnet18-torch 75 "${BENCH[@]}" vision/cnn "${RESNET[@]}" --fw torch --precision fp32,bf16 "${TIMING[@]}" \
    --json "$OUT/bench-resnet18-torch.json"
  section resnet18-torch-cl 30 "${BENCH[@]}" vision/cnn "${RESNET[@]}" --fw torch --precision bf16 --channels-last \
    --measure plain,peer "${TIMING[@]}" --json "$OUT/bench-resnet18-torch-cl.json"
  section resnet18-keras-jax 70 "${BENCH[@]}" vision/cnn "${RESNET[@]}" --fw keras --keras-backend jax \
    --precision fp32,bf16 "${TIMING[@]}" --json "$OUT/bench-resnet18-keras-jax.json"
fi

# Keras on JAX (its GPU default) against torch for every model, before the extras below
if wants small; then
  section small 120 "${BENCH[@]}" all --smoke --fw torch,keras --keras-backend jax --precision fp32 \
    --measure plain,trainer "${SMALL_TIMING[@]}" --json "$OUT/bench-small.json"
fi

if wants resnet18; then
  section resnet18-keras-torch 60 "${BENCH[@]}" vision/cnn "${RESNET[@]}" --fw keras --keras-backend torch \
    --precision fp32,bf16 "${TIMING[@]}" --json "$OUT/bench-resnet18-keras-torch.json"
  if [ "$COMPILE" = 1 ]; then
    section resnet18-torch-compile 80 "${BENCH[@]}" vision/cnn "${RESNET[@]}" --fw torch --precision bf16 --compile \
      --measure trainer "${TIMING[@]}" --json "$OUT/bench-resnet18-torch-compile.json"
  else
    echo "== [resnet18-torch-compile] left out of the CPU dry run (DRY_COMPILE=1 runs it)"
  fi
fi


"$PY" - "$OUT" <<'PYTHON'
import json
import os
import sys

out = sys.argv[1]
sections = [json.loads(line) for line in open(os.path.join(out, "sections.jsonl"))]
json.dump(sections, open(os.path.join(out, "sections.json"), "w"), indent=1)
print("\n== sections")
for s in sections:
    print(f"{s['section']:24s} " + (f"skipped ({s['skipped']})" if "skipped" in s else
          f"exit {s['rc']:3d}  {s['seconds']:4d}s of {s['limit']}s{'  (stopped by its limit)' if s['timed_out'] else ''}"))
failed = []
twins = os.path.join(out, "twins.json")
if os.path.exists(twins):
    failed = [r for r in json.load(open(twins))["rows"] if not r["passed"]]
    print(f"twins: {len(failed)} failed check(s)" + "".join(f"\n  {r['model']} {r['check']} {r.get('error', '')}" for r in failed))
print(f"files in {out}: " + " ".join(sorted(os.listdir(out))))
sys.exit(1 if failed else 0)
PYTHON
status=$?
echo "gpu_check: $((SECONDS - START))s in all; render with: python tools/bench.py --write-docs $OUT/bench-*.json"
exit $status
