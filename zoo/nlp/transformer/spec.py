"""nlp/transformer's registration with the zoo's harness: task, dataset, decoding checks, smoke recipe.

The model itself (config.py, torch_impl.py, keras_impl.py, weights.py) never imports this file.
"""

from shared.crosscheck_decoding import decoding_checks
from zoo.spec import ModelSpec, TrainingRecipe

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
    heads=("src_embed", "tgt_embed"),
    recipes=(
        TrainingRecipe(
            "numbers-en-fr",
            "The card's Results: the default Config (3 epochs, greedy decoding) on numbers in words.",
            data="numbers-en-fr",
            metric="bleu",
            expect=99.0,
        ),
        TrainingRecipe(
            "multi30k",
            "The card's Multi30k recipe (English -> German), sized like published small Transformers "
            "for one GPU; not run here.",
            config={
                "epochs": 30,
                "batch_size": 128,
                "lr": 7e-4,
                "src_vocab_size": 8000,
                "tgt_vocab_size": 8000,
                "max_src_len": 64,
                "max_tgt_len": 64,
                "d_model": 256,
                "num_heads": 8,
                "num_encoder_layers": 3,
                "num_decoder_layers": 3,
                "ffn_dim": 1024,
                "dropout": 0.1,
                "norm_first": True,
                "warmup_steps": 2000,
                "decoding": "beam",
                "beam_size": 5,
                "length_penalty": 0.6,
            },
            data="hub:bentrevett/multi30k",
            metric="bleu",
            device="gpu",
        ),
    ),
)
