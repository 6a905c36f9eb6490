"""Verification: an artefact, reloaded by its own runtime, against the zoo twin it was made from.

Error of an output: elementwise |export - zoo| / max(1, |zoo|) (absolute where the zoo's value is small,
relative where it is large), its maximum over every output and batch reported with the plain maximum
absolute error. Single-graph models compare the "model" graph with spec.forward at two batch sizes (4
and 1). Translation models compare (a) the encoder's outputs with the twin's encode, (b) decoder_step
driven with the reference target tokens (teacher forcing) with spec.forward's logits and attention on
the real target positions, at two batch sizes and source lengths, and (c) greedy decoding over the
exported graphs with the zoo's greedy decoding: the tokens must be identical. Numpy only.
"""

from __future__ import annotations

import numpy as np

from shared import decoding as zoo_decoding
from shared.export import decode

DECODE_SOURCES = 6
ERROR_DEFINITION = "max over elements of |export - zoo| / max(1, |zoo|)"


class VerificationError(Exception):
    """The artefact does not reproduce the twin (exit status 1; nothing is left behind)."""


def errors(found, expected) -> tuple[float, float]:
    """(max absolute error, max error relative to max(1, |expected|)); inf on a shape or NaN mismatch."""
    found, expected = (
        np.atleast_1d(np.asarray(found, np.float64)),
        np.atleast_1d(np.asarray(expected, np.float64)),
    )
    if found.shape != expected.shape:
        return float("inf"), float("inf")
    if found.size == 0:
        return 0.0, 0.0
    diff = np.abs(found - expected)
    diff[np.isnan(found) & np.isnan(expected)] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()), float((diff / np.maximum(1.0, np.abs(expected))).max())


class Tally:
    def __init__(self):
        self.outputs: dict[str, list[float]] = {}

    def add(self, name: str, found, expected) -> None:
        abs_err, rel_err = errors(found, expected)
        worst = self.outputs.setdefault(name, [0.0, 0.0])
        worst[0], worst[1] = max(worst[0], abs_err), max(worst[1], rel_err)

    def figures(self) -> dict:
        return {
            "max_abs_error": max((v[0] for v in self.outputs.values()), default=0.0),
            "max_rel_error": max((v[1] for v in self.outputs.values()), default=0.0),
            "outputs": {k: {"max_abs_error": v[0], "max_rel_error": v[1]} for k, v in self.outputs.items()},
        }


def verify(plan, spec, model, run: decode.Runner, tolerance: float, framework: str) -> dict:
    """The verification figures of export.json; VerificationError when an error exceeds `tolerance` or
    decoded tokens differ."""
    tally = Tally()
    figures = {}
    if plan.sequence:
        figures.update(_sequence(plan, spec, model, run, tally))
    else:
        graph = plan.graphs["model"]
        for batch in plan.batches:
            feeds = {k: batch[k] for k in graph.input_names}
            expected = spec.forward(model, feeds)
            found = run("model", feeds)
            for name in graph.output_names:
                tally.add(name, found[name], expected[name])
    result = {
        **tally.figures(),
        "batch_size": int(len(next(iter(plan.batches[0].values())))),
        "batch_sizes": [int(len(next(iter(b.values())))) for b in plan.batches],
        "tolerance": tolerance,
        "error": ERROR_DEFINITION,
        "reference": f"spec.forward of the zoo's {framework} twin with the checkpoint's weights",
        **figures,
    }
    worst = result["max_rel_error"]
    if not worst <= tolerance:
        name = max(result["outputs"], key=lambda k: result["outputs"][k]["max_rel_error"])
        raise VerificationError(
            f"verification failed: {name!r} differs from the {framework} twin by {worst:.3g} "
            f"({ERROR_DEFINITION}) > tolerance {tolerance:g}"
        )
    if plan.sequence and not result["decoded_identical"]:
        raise VerificationError(
            f"verification failed: greedy decoding over the exported graphs gave other tokens than the "
            f"{framework} twin's for {result['decoded_sources'] - result['decoded_same']} of "
            f"{result['decoded_sources']} sources"
        )
    return result


def _sequence(plan, spec, model, run, tally: Tally) -> dict:
    zoo_stepper = spec.task_module.stepper(spec, model)
    exported = decode.graph_stepper(run, plan.decoding)
    for batch in plan.batches:
        src, src_mask = batch["src"], batch["src_mask"]
        # (a) the encoder against the twin's encode
        zoo_memory, zoo_state = zoo_stepper.encode(src, src_mask)
        memory, state = exported.encode(src, src_mask)
        for name in plan.graphs["encoder"].output_names:
            tally.add(
                f"encoder.{name}",
                memory[name] if name in memory else state[name],
                zoo_memory[name] if name in zoo_memory else zoo_state[name],
            )
        # (b) decoder_step, fed the reference tokens, against spec.forward
        expected = spec.forward(model, batch)
        logits, attention = [], []
        for t in range(batch["tgt_in"].shape[1]):
            step_logits, state, step_attention = exported.step(memory, state, batch["tgt_in"][:, t])
            logits.append(step_logits)
            attention.append(step_attention)
        real = batch["tgt_mask"]  # positions past a target's end read padding in spec.forward
        tally.add("decoder_step.logits", np.stack(logits, axis=1)[real], expected["logits"][real])
        if "attention" in expected and attention[0] is not None:
            tally.add(
                "decoder_step.attention", np.stack(attention, axis=1)[real], expected["attention"][real]
            )
    # (c) greedy decoding, to the model's max_len
    config = model.zoo_config
    sources = spec.example_batch(config, batch_size=DECODE_SOURCES, seed=5)
    zoo = zoo_decoding.greedy(
        zoo_stepper,
        sources["src"],
        sources["src_mask"],
        bos_id=plan.decoding["bos_id"],
        eos_id=plan.decoding["eos_id"],
        max_len=plan.decoding["max_len"],
    )
    found = decode.greedy(run, plan.decoding, sources["src"], sources["src_mask"])
    same = sum(a.tokens == b.tokens and a.finished == b.finished for a, b in zip(zoo, found))
    for a, b in zip(zoo, found):
        if a.tokens == b.tokens:
            tally.add("greedy.score", b.score, a.score)
    return {
        "decoded_identical": same == len(zoo),
        "decoded_sources": len(zoo),
        "decoded_same": same,
        "decoded_tokens": sum(len(h.tokens) for h in zoo),
        "decoded_max_len": plan.decoding["max_len"],
    }
