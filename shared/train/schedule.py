"""Learning-rate schedules as plain functions of the optimizer step, used by both trainers."""

from __future__ import annotations

import math


def lr_at(config, step: int, total_steps: int) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total_steps`.

    constant:     lr after a linear warm-up.
    cosine:       linear warm-up to lr, then cosine decay to 0 at total_steps.
    inverse_sqrt: Vaswani et al. 2017: lr * min(s / w, sqrt(w / s)) with s = step + 1, w = warmup_steps
                  (the paper's d_model ** -0.5 is folded into lr).
    """
    warmup = max(config.warmup_steps, 0)
    s = step + 1
    if config.schedule == "inverse_sqrt":
        w = max(warmup, 1)
        return config.lr * min(s / w, math.sqrt(w / s))
    if warmup and s <= warmup:
        return config.lr * s / warmup
    if config.schedule == "constant":
        return config.lr
    progress = min(max(step - warmup, 0) / max(total_steps - warmup, 1), 1.0)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
