"""Greedy (and beam) decoding over exported graphs, with the zoo's own algorithm (shared/decoding.py).

`run(graph, feeds)` runs one graph of an export folder (any runtime: onnxruntime, a .pt2 program, a
SavedModel signature ...) on numpy arrays and returns its outputs by name; export.json's "decoding"
section says how the encoder and decoder_step graphs connect. graph_stepper turns the two into the
Stepper that shared.decoding.greedy and beam_search drive, so an export decodes as the zoo does.
Numpy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shared import decoding as zoo_decoding

Runner = Callable[[str, dict], dict]


def graph_stepper(run: Runner, decoding: dict) -> zoo_decoding.Stepper:
    """encode and step functions over the encoder and decoder_step graphs (see export.json "decoding")."""
    state_names = dict(decoding["state"])  # decoder_step input -> the output holding its next value
    prefix = decoding["token_input"] == "prefix"
    memory_names = list(decoding["memory"])

    def encode(src: np.ndarray, src_mask: np.ndarray):
        feeds = {"src": np.asarray(src, np.int64), "src_mask": np.asarray(src_mask, bool)}
        out = run("encoder", feeds)
        memory = {k: feeds[k] if k in feeds else out[k] for k in memory_names}
        state = {k: out[k] for k in state_names}
        if prefix:
            state["prefix"] = np.zeros((len(src), 0), np.int64)
        return memory, state

    def step(memory: dict, state: dict, tokens: np.ndarray):
        tokens = np.asarray(tokens, np.int64)
        if prefix:
            so_far = np.concatenate([state["prefix"], tokens[:, None]], axis=1)  # (N, t)
            out = run("decoder_step", {"prefix": so_far, **memory})
            new_state = {"prefix": so_far}
        else:
            out = run("decoder_step", {"tokens": tokens, **memory, **state})
            new_state = {k: out[name] for k, name in state_names.items()}
        return out["logits"], new_state, out.get("attention")

    return zoo_decoding.Stepper(encode, step)


def greedy(run: Runner, decoding: dict, src: np.ndarray, src_mask: np.ndarray, max_len: int | None = None):
    """One Hypothesis (tokens, score, finished, attention) per source, as the zoo's greedy decoding."""
    return zoo_decoding.greedy(
        graph_stepper(run, decoding),
        src,
        src_mask,
        bos_id=decoding["bos_id"],
        eos_id=decoding["eos_id"],
        max_len=max_len or decoding["max_len"],
    )
