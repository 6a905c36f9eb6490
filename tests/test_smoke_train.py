"""Every model trains for a few seconds in both frameworks, and each checkpoint evaluates the same in the
other framework."""

import json
from pathlib import Path

import numpy as np
import pytest

from shared import checkpoint
from shared.train.run import train
from zoo import registry


def smoke(spec):
    data_kwargs = dict(spec.smoke_data)
    data = data_kwargs.pop("dataset", spec.dataset)
    return spec.config(**spec.smoke_config), data, data_kwargs


@pytest.fixture(scope="module")
def evaluate():
    from shared.evaluation import evaluate_checkpoint

    return evaluate_checkpoint


@pytest.mark.parametrize("fw", ["torch", "keras"])
@pytest.mark.parametrize("name", registry.list_models())
def test_smoke_train_and_cross_framework_evaluation(name, fw, tmp_path, frameworks, evaluate):
    spec = registry.get(name)
    config, data, data_kwargs = smoke(spec)
    result = train(
        spec, config, fw, data=data, data_kwargs=data_kwargs, out=tmp_path / "run", threads=2, progress=False
    )
    run = tmp_path / "run"
    for produced in (
        "checkpoint/weights.safetensors",
        "checkpoint/manifest.json",
        "checkpoint/README.md",
        "metrics.csv",
        "steps.csv",
        "curves.png",
        "result.json",
    ):
        assert (run / produced).is_file(), produced
    assert list((run / "tensorboard").iterdir()), "no TensorBoard event file"
    primary = spec.task_module.PRIMARY_METRIC
    assert np.isfinite(result["test"][primary])
    steps = (run / "steps.csv").read_text().splitlines()[1:]
    assert len(steps) == json.loads((run / "result.json").read_text())["steps"] >= 1
    if hasattr(spec.task_module, "after_training"):  # attention maps, segmentation overlays
        pictures = [Path(p) for p in result["pictures"]]
        assert pictures and all(
            p.suffix == ".png" and p.is_file() and p.is_relative_to(run) for p in pictures
        )

    loaded = checkpoint.load(run)
    assert loaded["meta"]["framework"] == fw and loaded["model"] == name
    other = "keras" if fw == "torch" else "torch"
    for target in (fw, other):
        evaluated = evaluate(str(run), target)
        assert evaluated["metrics"][primary] == pytest.approx(result["test"][primary], abs=1e-3), target
