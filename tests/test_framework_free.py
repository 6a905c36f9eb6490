"""shared/ modules outside torch_*.py / keras_*.py import neither torch nor TensorFlow."""

import json
import subprocess
import sys

from tests.conftest import ROOT


def framework_free_modules() -> list[str]:
    modules = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        if path.name.startswith(("torch_", "keras_")):
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_shared_modules_import_no_framework():
    modules = framework_free_modules()
    assert "shared.crosscheck" in modules and "shared.train.run" in modules
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps([m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_torch_training_run_never_loads_tensorflow(tmp_path):
    """Logging, plots, data and checkpoints stay framework-free: a torch run holds no TensorFlow
    (the two in one process have crashed torch training with heap corruption)."""
    code = (
        "import json, sys\n"
        "from zoo import registry\n"
        "from shared.train.run import train\n"
        "spec = registry.get('vision/cnn')\n"
        "cfg = spec.config(**spec.smoke_config)\n"
        f"train(spec, cfg, 'torch', data='digits', out={str(tmp_path / 'run')!r}, threads=1, progress=False)\n"
        "print(json.dumps('tensorflow' in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False
