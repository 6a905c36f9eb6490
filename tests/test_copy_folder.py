"""A model folder is the unit you copy: lifted out of the repository with the two copyable helpers, its
torch twin builds, runs and trains with torch alone, and its Keras twin with Keras alone.

Each twin runs in a subprocess whose Python cannot reach the repository (isolated mode without the site
module, so neither the checkout nor its editable install is on the path; `import zoo` and `import shared`
are checked to fail) and sees a site-packages without the other framework, as if it were not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo import registry

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ("torchlike.py", "weightmap.py")

# Runs inside the subprocess, started with -I -S (no site-packages, no .pth files, so no editable install of
# the repository): argv = [work dir, package, framework, overrides as JSON, a site-packages view without the
# other framework].
SCRIPT = r"""
import json, os, sys
work, package, fw, overrides, site = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
sys.path[:0] = [work, site]
for name, needed in (("zoo", False), ("shared", False), ("torch", fw == "torch"), ("keras", fw == "keras")):
    try:
        __import__(name)
        found = True
    except ModuleNotFoundError:
        found = False
    if found != needed:
        raise SystemExit(f"{name} is {'importable' if found else 'missing'}: the copy is not isolated as meant")
import importlib
import numpy as np
config_module = importlib.import_module(f"{package}.config")
config = config_module.Config(**overrides)
config.validate()
batch = dict(np.load(os.path.join(work, "batch.npz")))
impl = importlib.import_module(f"{package}.{fw}_impl")
model = impl.build_model(config)
result = {}
if fw == "torch":
    import torch
    weights = importlib.import_module(f"{package}.weights")  # numpy + weightmap only
    result["weight_map_rows"] = len(weights.weight_map(config))
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    model.eval()
    with torch.no_grad():
        outputs = impl.call(model, tensors, training=False)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
    loss.backward()
    optimizer.step()
    moved = sum(int(not torch.equal(a, b.detach())) for a, b in zip(before, model.parameters()))
    result["loss"] = float(loss)
    result["moved"], result["params"] = moved, len(before)
    result["outputs"] = {k: list(v.shape) for k, v in outputs.items()}
else:
    import keras
    import tensorflow as tf
    tensors = {k: keras.ops.convert_to_tensor(np.ascontiguousarray(v)) for k, v in batch.items()}
    outputs = impl.call(model, tensors, training=False)
    before = [np.array(v) for v in model.trainable_variables]
    optimizer = keras.optimizers.AdamW(learning_rate=1e-3)
    with tf.GradientTape() as tape:
        loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    moved = sum(int(not np.array_equal(a, np.array(v))) for a, v in zip(before, model.trainable_variables))
    result["loss"] = float(loss)
    result["moved"], result["params"] = moved, len(before)
    result["outputs"] = {k: list(v.shape) for k, v in outputs.items()}
print("RESULT " + json.dumps(result))
"""


# Top-level names of the other framework's distributions, left out of the site-packages view.
OTHER = {
    "torch": ("keras", "keras_hub", "tensorflow", "tensorflow_text", "tf_keras", "jax", "jaxlib"),
    "keras": ("torch", "torchvision", "torchgen", "functorch", "triton"),
}


@pytest.fixture(scope="module")
def site_views(tmp_path_factory) -> dict[str, Path]:
    """Per framework, a folder of links to this venv's site-packages less the other framework."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    views = {}
    for fw, others in OTHER.items():
        view = tmp_path_factory.mktemp(f"site-{fw}")
        for entry in site.iterdir():
            top = entry.name.split("-")[0].split(".")[0].lower()
            if top in others or entry.suffix == ".pth" or "editable" in entry.name:
                continue
            (view / entry.name).symlink_to(entry)
        views[fw] = view
    return views


def copy_out(name: str, dest: Path) -> str:
    folder = ROOT / "zoo" / name
    package = folder.name
    shutil.copytree(folder, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.md", "figures"))
    for helper in HELPERS:
        shutil.copy(ROOT / helper, dest / helper)
    return package


@pytest.mark.parametrize("fw", ["torch", "keras"])
@pytest.mark.parametrize("name", registry.list_models())
def test_folder_runs_outside_the_repository(name, fw, tmp_path, site_views):
    spec = registry.get(name)
    work = tmp_path / "elsewhere"
    work.mkdir()
    package = copy_out(name, work)
    overrides = {k: v for k, v in spec.smoke_config.items()}
    config = spec.config(**overrides)
    batch = spec.example_batch(config, batch_size=2, seed=0)
    np.savez(work / "batch.npz", **batch)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1", KERAS_BACKEND="tensorflow")
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            SCRIPT,
            str(work),
            package,
            fw,
            json.dumps(overrides),
            str(site_views[fw]),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert np.isfinite(result["loss"])
    assert result["moved"] >= 1, result  # the training step changed the weights
    in_repo = spec.forward(spec.build(fw, config), batch)
    assert result["outputs"] == {k: list(v.shape) for k, v in in_repo.items()}
    if fw == "torch":
        assert result["weight_map_rows"] > 0
