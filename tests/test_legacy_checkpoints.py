"""Checkpoints written before the model folders became self-contained (tests/fixtures/legacy/, made by
make_legacy.py at commit eff2336) still load in both frameworks and give the outputs they gave then."""

from pathlib import Path

import numpy as np
import pytest

from shared.models import load_model
from zoo import registry

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"


@pytest.mark.parametrize("fw", ["torch", "keras"])
@pytest.mark.parametrize("name", registry.list_models())
def test_legacy_checkpoint_loads_and_predicts_the_same(name, fw, frameworks):
    folder = LEGACY / name.replace("/", "-")
    assert folder.is_dir(), (
        f"no legacy checkpoint for {name}: a new model needs none, an old one must keep it"
    )
    expected = np.load(LEGACY / f"{name.replace('/', '-')}.expected.npz")
    spec, _, model, ckpt = load_model(folder, fw)
    assert ckpt["model"] == name
    batch = {k[len("batch.") :]: expected[k] for k in expected.files if k.startswith("batch.")}
    outputs = spec.forward(model, batch)
    for key in (k[len("out.") :] for k in expected.files if k.startswith("out.")):
        np.testing.assert_allclose(outputs[key], expected[f"out.{key}"], rtol=1e-4, atol=1e-5, err_msg=key)
