"""bio/danq: DanQ (Quang and Xie 2016), a CNN + BiLSTM over one-hot DNA with one logit per label."""

from zoo.bio.danq.config import Config
from zoo.spec import ModelSpec


def extra_checks(spec, config):
    from zoo.bio.danq.checks import reverse_complement_checks

    return reverse_complement_checks(spec, config)


SPEC = ModelSpec(
    name="bio/danq",
    task="multilabel",
    dataset="motifs",
    package=__name__,
    config_cls=Config,
    extra_checks=extra_checks,
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
)
