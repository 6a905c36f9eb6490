"""A model folder is the unit a user copies: each folder below, copied out of the repository as a package
(with torchlike.py and weightmap.py beside it), builds, runs and trains in a Python that cannot see the
repository: the torch twin with torch alone, the Keras twin with Keras alone. The Keras run loads the torch
run's weights through the folder's weights.py and must give the torch twin's outputs.

Folders join the list as they become self-contained (config.py standard library only, relative imports).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT
from zoo import registry

COPYABLE = ["recsys/mf", "recsys/neumf", "bio/danq"]

# Runs in `python -I` (no PYTHONPATH, no user site, no current directory on sys.path) inside the copy.
CHILD = r"""
import importlib, importlib.util, json, sys
from importlib.machinery import PathFinder

import numpy as np

framework, folder, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
# The virtualenv's editable install maps `zoo` and `shared` to the repository: drop its finder.
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
assert importlib.util.find_spec("zoo") is None and importlib.util.find_spec("shared") is None, "repo visible"


class WithoutTheOtherFramework(PathFinder):  # as if it were not installed
    absent = {"torch": ("keras", "tensorflow", "jax"), "keras": ("torch",)}[framework]

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.split(".")[0] in cls.absent else super().find_spec(name, path, target)


sys.meta_path[:] = [WithoutTheOtherFramework if f is PathFinder else f for f in sys.meta_path]
sys.path.insert(0, folder)
report = {}
for name, overrides in names.items():
    package = name.split("/")[-1]
    Config = importlib.import_module(f"{package}.config").Config
    impl = importlib.import_module(f"{package}.{framework}_impl")
    config = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    config.validate()
    arrays = dict(np.load(f"{folder}/{package}.batch.npz"))
    if framework == "torch":
        import torch

        batch = {k: torch.from_numpy(v) for k, v in arrays.items()}
        model = impl.build_model(config).eval()
        start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        with torch.no_grad():
            outputs = {k: v.numpy() for k, v in impl.call(model, batch).items()}
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        loss = impl.compute_loss(impl.call(model, batch, training=True), batch, config)
        loss.backward()
        optimizer.step()
        moved = any(not np.array_equal(start[k], v.numpy()) for k, v in model.state_dict().items())
        np.savez(f"{folder}/{package}.torch.npz", **{f"w.{k}": v for k, v in start.items()},
                 **{f"out.{k}": v for k, v in outputs.items()})
        report[name] = {"loss": float(loss), "moved": moved}
    else:
        import keras
        import tensorflow as tf

        weight_map = importlib.import_module(f"{package}.weights").weight_map
        batch = {k: keras.ops.convert_to_tensor(v) for k, v in arrays.items()}
        model = impl.build_model(config)
        saved = np.load(f"{folder}/{package}.torch.npz")
        variables = {v.path: v for v in model.variables if not v.path.endswith("/seed_generator_state")}
        rows = weight_map(config)
        assert {p for r in rows for p in r.keras} == set(variables), "weights.py does not cover the model"
        for row in rows:
            values = row.transform.from_canonical([saved[f"w.{n}"] for n in row.canonical])
            for path, value in zip(row.keras, values):
                variables[path].assign(value)
        outputs = {k: keras.ops.convert_to_numpy(v) for k, v in impl.call(model, batch).items()}
        error = max(float(np.max(np.abs(outputs[k] - saved[f"out.{k}"]))) for k in outputs)
        before = [np.array(v) for v in model.trainable_variables]
        with tf.GradientTape() as tape:
            loss = impl.compute_loss(impl.call(model, batch, training=True), batch, config)
        grads = tape.gradient(loss, model.trainable_variables)
        keras.optimizers.SGD(0.1).apply_gradients(zip(grads, model.trainable_variables))
        moved = any(not np.array_equal(b, np.array(v)) for b, v in zip(before, model.trainable_variables))
        report[name] = {"loss": float(loss), "moved": moved, "max_error_vs_torch": error}
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """The folders, torchlike.py and weightmap.py copied to a directory outside the repository, with one
    example batch per model and its small (smoke) config."""
    target = tmp_path_factory.mktemp("copied")
    assert not target.resolve().is_relative_to(ROOT)
    for helper in ("torchlike.py", "weightmap.py"):
        shutil.copy(ROOT / helper, target / helper)
    names = {}
    for name in COPYABLE:
        spec = registry.get(name)
        shutil.copytree(
            ROOT / "zoo" / name, target / name.split("/")[-1], ignore=shutil.ignore_patterns("__pycache__")
        )
        overrides = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.smoke_config.items()}
        batch = spec.example_batch(spec.config(**spec.smoke_config), batch_size=4, seed=0)
        np.savez(target / f"{name.split('/')[-1]}.batch.npz", **batch)
        names[name] = overrides
    return target, names


def run_child(framework: str, target, names) -> dict:
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, framework, str(target), json.dumps(names)],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    return json.loads(line[len("REPORT ") :])


def test_copied_folders_run_with_torch_alone_then_keras_alone(copied):
    target, names = copied
    torch_report = run_child("torch", target, names)
    keras_report = run_child("keras", target, names)
    for name in names:
        assert torch_report[name]["moved"] and keras_report[name]["moved"], name
        assert np.isfinite(torch_report[name]["loss"]) and np.isfinite(keras_report[name]["loss"]), name
        assert keras_report[name]["max_error_vs_torch"] < 1e-5, (name, keras_report[name])
