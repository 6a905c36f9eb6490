"""DanQ's checks beyond tier 1 (ModelSpec.extra_checks): reverse-complement averaging in both twins."""

from __future__ import annotations

import dataclasses

import numpy as np

from shared.crosscheck import FORWARD_RTOL, Check, check_forward, compare_dicts, max_rel_error
from shared.data.dna import reverse_complement


def reverse_complement_checks(spec, config) -> list[Check]:
    """Tier 1's forward checks run `config` as given; here the other rc_average setting is compared across
    twins too, and in each twin, with one set of weights:
      - averaged logits(x) == (single-strand logits(x) + single-strand logits(rc(x))) / 2
      - averaged logits are strand-invariant: logits(x) == logits(rc(x))
      - single-strand logits are not (else the invariance above would prove nothing)."""
    on = spec.config(**{**dataclasses.asdict(config), "rc_average": True})
    off = spec.config(**{**dataclasses.asdict(config), "rc_average": False})
    other = off if config.rc_average else on
    torch_model, keras_model = spec.build("torch", other), spec.build("keras", other)
    checks = check_forward(
        spec,
        other,
        torch_model,
        keras_model,
        f"torch_to_keras_rc_average_{other.rc_average}",
        batch_sizes=(2,),
    )
    weights = spec.get_weights(torch_model)
    batch = spec.example_batch(on, batch_size=3, seed=21)
    flipped = {**batch, "sequence": reverse_complement(batch["sequence"])}
    for fw in ("torch", "keras"):
        averaging, single = spec.build(fw, on), spec.build(fw, off)
        spec.set_weights(averaging, weights)
        spec.set_weights(single, weights)
        averaged = spec.forward(averaging, batch)["logits"]
        forward, backward = spec.forward(single, batch)["logits"], spec.forward(single, flipped)["logits"]
        checks.append(
            compare_dicts(
                f"rc_average_is_mean_of_strands_{fw}",
                {"logits": (forward + backward) / 2},
                {"logits": averaged},
                FORWARD_RTOL,
            )
        )
        checks.append(
            compare_dicts(
                f"rc_average_strand_invariant_{fw}",
                {"logits": averaged},
                {"logits": spec.forward(averaging, flipped)["logits"]},
                FORWARD_RTOL,
            )
        )
        gap = max_rel_error(forward, backward)
        checks.append(
            Check(
                f"single_strand_not_invariant_{fw}",
                gap,
                1e-4,
                bool(np.isfinite(gap) and gap > 1e-4),
                "single-strand logits(x) vs logits(rc(x)) must differ (passes when above tolerance)",
            )
        )
    return checks
