"""A cross-framework check beyond tier 1: decoding, greedy and beam, gives the same tokens in both twins.

For sequence models whose task decodes (shared/tasks/translation.py): a ModelSpec names it as its
extra_checks, which run_tier1 (shared/crosscheck.py) runs after the tier-1 checks:

    ModelSpec(..., extra_checks=decoding_checks)

It reaches the model through the spec alone: the twins from spec.build, the random sources from the
task's example_batch, the decoding from the task's decode(spec, model, config, src, src_mask, ...).
"""

from __future__ import annotations

import numpy as np

from shared.crosscheck import Check

DECODING_RTOL = 1e-5  # hypothesis log-probability (relative to max(1, |score|)) and attention weights


def decoding_checks(spec, config, sources: int = 6, beam_size: int = 3, seed: int = 21) -> list[Check]:
    """With the same weights, greedy and beam search give the same tokens in both twins on random sources."""
    import keras
    import torch

    task = spec.task_module
    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    torch_model, keras_model = spec.build("torch", config), spec.build("keras", config)
    spec.set_weights(keras_model, spec.get_weights(torch_model))
    batch = task.example_batch(config, batch_size=sources, seed=seed)
    max_len = min(config.max_tgt_len, 12)
    checks = []
    for name, width in (("greedy", 1), ("beam", beam_size)):
        found = [
            task.decode(spec, m, config, batch["src"], batch["src_mask"], beam_size=width, max_len=max_len)
            for m in (torch_model, keras_model)
        ]
        same = sum(t.tokens == k.tokens for t, k in zip(*found))
        score_err = max(abs(t.score - k.score) / max(1.0, abs(t.score)) for t, k in zip(*found))
        attention_err = max(
            float(np.max(np.abs(t.attention - k.attention)))
            if t.attention is not None and t.tokens == k.tokens
            else 0.0
            for t, k in zip(*found)
        )
        passed = same == sources and score_err <= DECODING_RTOL and attention_err <= DECODING_RTOL
        checks.append(
            Check(
                f"{name}_decoding_identical",
                max(score_err, attention_err),
                DECODING_RTOL,
                passed,
                f"{same}/{sources} identical token sequences (max_len {max_len}"
                f"{'' if width == 1 else f', beam {width}'}); worst of relative score error and "
                "attention error",
            )
        )
    return checks
