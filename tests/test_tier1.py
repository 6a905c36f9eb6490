"""Tier 1 for every registered model: the twins compute the same function (shared/crosscheck.py)."""

import pytest

from shared.crosscheck import run_tier1
from zoo import registry


def assert_all_pass(checks):
    failed = [f"{c.name}: {c.max_error:.3e} > {c.tolerance:.0e} ({c.detail})" for c in checks if not c.passed]
    assert not failed, "\n".join(failed)
    names = {c.name for c in checks}
    for required in (
        "parameter_count",
        "canonical_names_and_shapes",
        "train_loss",
        "gradients",
        "optimizer_step",
        "train_step_sgd",
        "round_trip_torch_keras_torch",
    ):
        assert required in names


@pytest.mark.parametrize("name", registry.list_models())
def test_tier1_default_config(name, frameworks):
    spec = registry.get(name)
    assert_all_pass(run_tier1(spec, spec.config()))


@pytest.mark.parametrize(
    "overrides",
    [
        # torchvision's resnet18 geometry; in make test its stem and forward are covered by
        # tests/test_checkpoint.py (a torchvision state_dict in both twins), so the whole tier 1 is slow.
        pytest.param(
            {
                "variant": "resnet18",
                "stem": "imagenet",
                "base_width": 64,
                "in_channels": 3,
                "image_size": 224,
                "num_classes": 1000,
            },
            marks=pytest.mark.slow,
        ),
        # The ImageNet stem (7x7 stride-2 conv, max pool) and zero-initialised residual branches, at the
        # smallest size they take (32 px): forward, float64 gradients, optimizer and SGD steps in make test.
        {
            "variant": "resnet18",
            "stem": "imagenet",
            "base_width": 8,
            "in_channels": 3,
            "image_size": 32,
            "num_classes": 10,
            "zero_init_residual": True,
        },
        # Bottleneck blocks; 8 px (1 x 1 by the last stage) keeps it cheap (it was 16 px, the slowest test).
        {"variant": "resnet50", "stem": "small", "base_width": 8, "in_channels": 3, "image_size": 8},
        # Basic blocks as resnet18's; slow, to keep `make test` under 15 minutes on 2 cores.
        pytest.param(
            {
                "variant": "resnet34",
                "stem": "imagenet",
                "base_width": 8,
                "image_size": 64,
                "zero_init_residual": True,
            },
            marks=pytest.mark.slow,
        ),
    ],
    ids=[
        "resnet18-imagenet-224",
        "resnet18-imagenet-32-zero-init",
        "resnet50-small",
        "resnet34-imagenet-zero-init",
    ],
)
def test_tier1_resnet_variants(overrides, frameworks):
    spec = registry.get("vision/cnn")
    assert_all_pass(run_tier1(spec, spec.config(**overrides), batch_sizes=(1, 2)))


def test_a_broken_weight_map_is_caught(frameworks, monkeypatch):
    """The checks can fail: swap two rows' transforms and tier 1 must report it."""
    import zoo.vision.cnn.weights as weights
    from weightmap import IDENTITY

    original = weights.weight_map

    def broken(config):
        rows = original(config)
        fc = next(i for i, r in enumerate(rows) if r.canonical == ("fc.weight",))
        rows[fc] = type(rows[fc])(rows[fc].keras, rows[fc].canonical, IDENTITY)  # forgets the transpose
        return rows

    monkeypatch.setattr(weights, "weight_map", broken)
    spec = registry.get("vision/cnn")
    checks = run_tier1(spec, spec.config(num_classes=10, base_width=10, image_size=8), batch_sizes=(2,))
    assert not next(c for c in checks if c.name == "canonical_names_and_shapes").passed


def test_keras_cnn_kernels_of_one_shape_start_different(frameworks):
    """One unseeded Keras initializer shared by several layers repeats its values; the twin must not share
    one (the functional twin did: same-shaped kernels of the default ResNet-18 started identical)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    spec = registry.get("vision/cnn")
    model = spec.build("keras", spec.config(base_width=4))
    kernels = [np.asarray(v) for v in model.variables if v.path.endswith("/kernel")]
    same = [
        (a.shape, i, j)
        for i, a in enumerate(kernels)
        for j, b in enumerate(kernels[:i])
        if a.shape == b.shape and np.array_equal(a, b)
    ]
    assert len(kernels) > 10 and not same, same
