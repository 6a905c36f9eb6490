"""nlp/seq2seq's registration with the zoo's harness: task, dataset, decoding checks, smoke recipe.

The model itself (config.py, torch_impl.py, keras_impl.py, weights.py) never imports this file.
"""

from shared.crosscheck_decoding import decoding_checks
from zoo.spec import ModelSpec, TrainingRecipe

from .config import Config

SPEC = ModelSpec(
    name="nlp/seq2seq",
    task="translation",
    dataset="numbers-en-fr",
    package=__package__,
    config_cls=Config,
    extra_checks=decoding_checks,  # greedy and beam search give the same tokens in both twins
    smoke_config={
        "epochs": 1,
        "batch_size": 32,
        "embedding_dim": 16,
        "hidden_size": 16,
        "attention_dim": 16,
        "warmup_steps": 0,
    },
    smoke_data={"train_size": 256, "validation_size": 32, "test_size": 32, "max_number": 999},
    bad_configs=(
        ({"decoding": "sampling"}, "'greedy' or 'beam'"),
        ({"rnn_dropout": 1.0}, r"rnn_dropout must be in \[0, 1\)"),
        ({"src_vocab_size": 3}, "src_vocab_size must be >= 5"),
        ({"gru_reset_after": False}, "no torch.nn.GRU equivalent"),
    ),
    heads=("encoder.embedding", "decoder.embedding", "decoder.out_proj"),
    recipes=(
        TrainingRecipe(
            "numbers-en-fr",
            "The card's Results: the default Config (2 epochs, greedy decoding) on numbers in words.",
            data="numbers-en-fr",
            metric="bleu",
            expect=99.0,
        ),
        TrainingRecipe(
            "multi30k",
            "The card's Multi30k recipe (English -> German), sized for one GPU; not run here.",
            config={
                "epochs": 15,
                "batch_size": 128,
                "lr": 1e-3,
                "src_vocab_size": 8000,
                "tgt_vocab_size": 8000,
                "max_src_len": 48,
                "max_tgt_len": 48,
                "embedding_dim": 256,
                "hidden_size": 512,
                "attention_dim": 512,
                "embedding_dropout": 0.3,
                "rnn_dropout": 0.3,
                "warmup_steps": 500,
                "decoding": "beam",
                "beam_size": 5,
                "length_penalty": 0.6,
            },
            data="multi30k",
            metric="bleu",
            device="gpu",
        ),
    ),
)
