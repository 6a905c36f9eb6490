"""Checkpoints written before the model folders became self-contained (tests/fixtures/legacy/, made by
make_legacy.py at commit eff2336) still load in both frameworks and give the outputs they gave then."""

from pathlib import Path

import numpy as np
import pytest

from shared.models import load_model
from zoo import registry

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"


# The models of commit eff2336, each with a fixture; a model added later has none and needs none.
LEGACY_MODELS = sorted(p.name.replace("-", "/", 1) for p in LEGACY.iterdir() if p.is_dir() and "-" in p.name)


def test_every_model_of_that_commit_is_still_registered_and_has_its_fixture():
    assert LEGACY_MODELS == [
        "bio/danq",
        "driving/perception",
        "nlp/seq2seq",
        "nlp/transformer",
        "recsys/mf",
        "recsys/neumf",
        "vision/cnn",
    ]
    assert set(LEGACY_MODELS) <= set(registry.list_models())


@pytest.mark.parametrize("fw", ["torch", "keras"])
@pytest.mark.parametrize("name", LEGACY_MODELS)
def test_legacy_checkpoint_loads_and_predicts_the_same(name, fw, frameworks):
    folder = LEGACY / name.replace("/", "-")
    expected = np.load(LEGACY / f"{name.replace('/', '-')}.expected.npz")
    spec, _, model, ckpt = load_model(folder, fw)
    assert ckpt["model"] == name
    batch = {k[len("batch.") :]: expected[k] for k in expected.files if k.startswith("batch.")}
    outputs = spec.forward(model, batch)
    for key in (k[len("out.") :] for k in expected.files if k.startswith("out.")):
        np.testing.assert_allclose(outputs[key], expected[f"out.{key}"], rtol=1e-4, atol=1e-5, err_msg=key)
