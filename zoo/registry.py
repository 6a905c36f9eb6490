"""Find the zoo's models: every zoo/<domain>/<model>/ folder whose spec.py defines SPEC.

spec.py is the folder's registration with the zoo's harness (task, dataset, smoke recipe); the model
itself (config.py, torch_impl.py, keras_impl.py, weights.py) never imports it, so the folder lifts out.

Models are found, not listed: adding a folder adds a model to every CLI and every parametrised test.
Nothing here imports torch or tensorflow.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from zoo.spec import ModelSpec

ZOO_ROOT = Path(__file__).resolve().parent


@cache
def _discover() -> dict[str, str]:
    found = {}
    for init in sorted(ZOO_ROOT.glob("*/*/__init__.py")):
        folder = init.parent
        if not (folder / "config.py").exists():
            continue
        name = f"{folder.parent.name}/{folder.name}"
        found[name] = f"zoo.{folder.parent.name}.{folder.name}"
    return found


def list_models() -> list[str]:
    """Names such as 'vision/cnn', sorted."""
    return sorted(_discover())


def normalize_name(name_or_path: str) -> str:
    """Accept 'vision/cnn', 'zoo/vision/cnn', './zoo/vision/cnn/' or an absolute folder path."""
    text = str(name_or_path).strip().rstrip("/")
    parts = Path(text).parts
    if "zoo" in parts:
        parts = parts[len(parts) - 1 - parts[::-1].index("zoo") + 1 :]
    return "/".join(parts[-2:]) if len(parts) >= 2 else text


def get(name_or_path: str) -> ModelSpec:
    name = normalize_name(name_or_path)
    models = _discover()
    if name not in models:
        raise ValueError(
            f"unknown model {name_or_path!r}: expected one of {', '.join(sorted(models))} "
            "(a name like vision/cnn or a folder like zoo/vision/cnn)"
        )
    module = models[name]
    try:
        spec = importlib.import_module(f"{module}.spec").SPEC
    except ModuleNotFoundError as err:
        if err.name != f"{module}.spec":
            raise
        spec = importlib.import_module(module).SPEC  # a folder that still registers in __init__.py
    if spec.name != name:
        raise ValueError(f"zoo/{name}/__init__.py declares SPEC.name={spec.name!r}; expected {name!r}")
    return spec
