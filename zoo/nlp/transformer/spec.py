"""nlp/transformer's registration with the zoo's harness: task, dataset, decoding checks, smoke recipe.

The model itself (config.py, torch_impl.py, keras_impl.py, weights.py) never imports this file.
"""

from shared.crosscheck_decoding import decoding_checks
from zoo.spec import ModelSpec

from .config import Config

SPEC = ModelSpec(
    name="nlp/transformer",
    task="translation",
    dataset="numbers-en-fr",
    package=__package__,
    config_cls=Config,
    extra_checks=decoding_checks,  # greedy and beam search give the same tokens in both twins
    smoke_config={
        "epochs": 1,
        "batch_size": 32,
        "d_model": 16,
        "num_heads": 2,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "ffn_dim": 32,
        "warmup_steps": 4,
    },
    smoke_data={"train_size": 256, "validation_size": 32, "test_size": 32, "max_number": 999},
    bad_configs=(
        ({"d_model": 30, "num_heads": 4}, "d_model must be a positive multiple of num_heads"),
        ({"positions": "rotary"}, "positions must be one of sinusoidal, learned"),
        ({"pad_id": 1}, "pad_id must be 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"decoding": "sample"}, "decoding must be 'greedy' or 'beam'"),
    ),
)
