"""bio/danq's registration with the zoo's harness (task, data, smoke recipe, checks beyond tier 1)."""

from zoo.spec import ModelSpec, TrainingRecipe

from .checks import reverse_complement_checks
from .config import Config

SPEC = ModelSpec(
    name="bio/danq",
    task="multilabel",
    dataset="motifs",
    package=__package__,
    config_cls=Config,
    extra_checks=reverse_complement_checks,
    smoke_config={
        "epochs": 1,
        "batch_size": 32,
        "sequence_length": 60,
        "conv_filters": 8,
        "conv_kernel": 9,
        "pool_size": 4,
        "lstm_units": 4,
        "dense_units": 8,
        "warmup_steps": 0,
    },
    smoke_data={"num_train": 256, "num_validation": 96, "num_test": 96, "sequence_length": 60},
    bad_configs=(
        ({"length_policy": "pad"}, "length_policy must be one of error, center, start; found 'pad'"),
        ({"sequence_length": 24}, "too short for conv_kernel 13 and pool_size 13: it needs at least 25"),
    ),
    heads=("classifier",),
    recipes=(
        TrainingRecipe(
            "motifs",
            "The card's Results: the default Config (4 epochs) on the generated planted-motif sequences.",
            data="motifs",
            metric="auroc",
            expect=0.97,
        ),
    ),
)
