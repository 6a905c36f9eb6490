"""Framework-free greedy and beam search, driving a twin's decoder step function.

Both twins of a translation model decode with this one algorithm, on numpy, so equal logits give equal
tokens; the twins differ only in how they compute one step.

The step-function interface. A translation twin's model (the torch nn.Module / keras.Model) defines two
methods on its framework's tensors:

    model.encode(src, src_mask) -> (memory, state)
        src (N, S) int64 token ids, src_mask (N, S) bool (True on real tokens).
        memory  dict of tensors: what every step reads and none changes (encoder outputs, mask).
        state   dict of tensors: what each step updates (recurrent state, tokens so far, caches).
        Every tensor in both has the batch row on axis 0, so this driver can repeat rows for beams and
        reorder them when beams are re-ranked. A twin transposes inside: a GRU's (L, N, H) state is
        handed out as (N, L, H).

    model.decode_step(memory, state, tokens) -> (logits, state, attention)
        tokens     (N,) int64: each row's previous token (BOS at the first step).
        logits     (N, V) float over the target vocabulary, for the next token.
        state      the updated state, same keys and leading axis.
        attention  (N, S) attention over source positions, or None for a model without one map.

bind(model, fw) wraps the two in a Stepper with numpy in and numpy out, in inference mode (torch: eval()
and no gradients; Keras: training=False), so the search below runs on numpy alone. A twin module that
still defines numpy-level functions encode(model, src, src_mask) and decode_step(model, memory, state,
tokens) is bound as it is (pass it as impl).

Scores are sums of log-probabilities: a float64 log-softmax of the twin's logits, computed here.
Beam hypotheses are ranked by score / lp(length), GNMT's length penalty lp = ((5 + length) / 6) ** alpha
(Wu et al. 2016); alpha = 0 ranks by the raw sum. Length counts generated tokens, EOS included.
Ties break towards the lower beam index, then the lower token id (stable sorts), in both twins alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Stepper:
    """A model's encode and decode_step, bound to the model (see the module docstring)."""

    encode: Callable[[np.ndarray, np.ndarray], tuple[Arrays, Arrays]]
    step: Callable[[Arrays, Arrays, np.ndarray], tuple[np.ndarray, Arrays, np.ndarray | None]]


def bind(model: Any, fw: str, impl: Any = None) -> Stepper:
    """The Stepper of a twin model (fw "torch" or "keras"): its encode / decode_step, numpy in and out."""
    if impl is not None and hasattr(impl, "decode_step"):  # numpy-level functions in the twin module
        return Stepper(partial(impl.encode, model), partial(impl.decode_step, model))
    return _torch_stepper(model) if fw == "torch" else _keras_stepper(model)


def _torch_stepper(model) -> Stepper:
    import torch

    device = next(model.parameters()).device

    def tensors(arrays: Arrays) -> dict:
        return {k: torch.as_tensor(np.ascontiguousarray(v), device=device) for k, v in arrays.items()}

    def numpy(tensors: dict) -> Arrays:
        return {k: v.detach().cpu().numpy() for k, v in tensors.items() if v is not None}

    @torch.no_grad()
    def encode(src: np.ndarray, src_mask: np.ndarray) -> tuple[Arrays, Arrays]:
        model.eval()
        memory, state = model.encode(**tensors({"src": src, "src_mask": src_mask}))
        return numpy(memory), numpy(state)

    @torch.no_grad()
    def step(memory: Arrays, state: Arrays, tokens: np.ndarray):
        model.eval()
        logits, state, attention = model.decode_step(
            tensors(memory), tensors(state), tensors({"tokens": tokens})["tokens"]
        )
        found = numpy({"logits": logits, "attention": attention})
        return found["logits"], numpy(state), found.get("attention")

    return Stepper(encode, step)


def _keras_stepper(model) -> Stepper:
    from keras import ops

    from shared.keras_weights import inference

    encode_fn = inference(model, "encode", lambda src, src_mask: model.encode(src, src_mask))
    step_fn = inference(
        model, "decode_step", lambda memory, state, tokens: model.decode_step(memory, state, tokens)
    )

    def tensors(arrays: Arrays) -> dict:
        return {k: ops.convert_to_tensor(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def numpy(tensors: dict) -> Arrays:
        return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in tensors.items() if v is not None}

    def encode(src: np.ndarray, src_mask: np.ndarray) -> tuple[Arrays, Arrays]:
        found = tensors({"src": src, "src_mask": src_mask})
        memory, state = encode_fn(found["src"], found["src_mask"])
        return numpy(memory), numpy(state)

    def step(memory: Arrays, state: Arrays, tokens: np.ndarray):
        logits, state, attention = step_fn(
            tensors(memory), tensors(state), tensors({"tokens": tokens})["tokens"]
        )
        found = numpy({"logits": logits, "attention": attention})
        return found["logits"], numpy(state), found.get("attention")

    return Stepper(encode, step)


@dataclass
class Hypothesis:
    tokens: list[int]  # generated tokens, BOS and EOS left out
    score: float  # sum of log-probabilities of the generated tokens (EOS included when it ended)
    normalized: float  # score / lp(length): what beam search ranks by (greedy: equal to score)
    finished: bool  # True when it ended with EOS; False when it stopped at max_len
    attention: np.ndarray | None  # (steps, S): one attention row per generated token, EOS included


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


def _check(src: np.ndarray, src_mask: np.ndarray, max_len: int) -> None:
    if src.ndim != 2 or src.shape != src_mask.shape:
        raise ValueError(f"src and src_mask must be (N, S) alike; found {src.shape} and {src_mask.shape}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1; found {max_len}")
    if not np.all(np.asarray(src_mask).any(axis=1)):
        raise ValueError("every source needs at least one real token (src_mask all False in a row)")


def _gather(arrays: Arrays, rows: np.ndarray) -> Arrays:
    return {k: v[rows] for k, v in arrays.items()}


def greedy(
    stepper: Stepper, src: np.ndarray, src_mask: np.ndarray, *, bos_id: int, eos_id: int, max_len: int
) -> list[Hypothesis]:
    """The most probable next token at every step, for a batch of N sources; one Hypothesis each."""
    _check(src, src_mask, max_len)
    memory, state = stepper.encode(src, src_mask)
    n = len(src)
    tokens = np.full(n, bos_id, np.int64)
    generated = np.zeros((n, max_len), np.int64)
    scores, lengths = np.zeros(n), np.zeros(n, np.int64)
    finished = np.zeros(n, bool)
    rows: list[np.ndarray | None] = []
    for t in range(max_len):
        logits, state, attention = stepper.step(memory, state, tokens)
        logp = log_softmax(logits)  # (N, V)
        choice = np.argmax(logp, axis=-1)  # first index on ties
        alive = ~finished
        scores[alive] += logp[alive, choice[alive]]
        generated[alive, t] = choice[alive]
        lengths[alive] += 1
        rows.append(None if attention is None else np.asarray(attention, np.float32))
        finished |= alive & (choice == eos_id)
        tokens = choice.astype(np.int64)
        if finished.all():
            break
    out = []
    for i in range(n):
        length = int(lengths[i])
        body = generated[i, : length - 1 if finished[i] else length].tolist()
        attention = None if rows[0] is None else np.stack([r[i] for r in rows[:length]])
        out.append(Hypothesis(body, float(scores[i]), float(scores[i]), bool(finished[i]), attention))
    return out


def beam_search(
    stepper: Stepper,
    src: np.ndarray,
    src_mask: np.ndarray,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam_size: int,
    alpha: float = 0.0,
) -> list[list[Hypothesis]]:
    """Beam search for a batch of B sources: per source, beam_size hypotheses, best first.

    Each step extends every live beam by every token; walking the candidates best first, one that ends
    in EOS becomes a finished hypothesis and the first beam_size others become the next beams. A source
    is done once it holds beam_size finished hypotheses that no live beam can still beat (its score only
    falls as it grows, so score / lp(max_len) bounds what it can reach); at max_len live beams end
    unfinished. Stopping there returns what searching on to max_len would.
    """
    _check(src, src_mask, max_len)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1; found {beam_size}")
    b, k = len(src), beam_size
    memory, state = stepper.encode(src, src_mask)
    expand = np.repeat(np.arange(b), k)  # row b * k + j is beam j of source b
    memory, state = _gather(memory, expand), _gather(state, expand)
    scores = np.full((b, k), -np.inf)
    scores[:, 0] = 0.0  # one live beam at the start, so the first step does not pick k copies
    tokens = np.full(b * k, bos_id, np.int64)
    history = np.zeros((b * k, 0), np.int64)
    attention_history: np.ndarray | None = None  # (B * k, t, S)
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    done = np.zeros(b, bool)
    for t in range(max_len):
        logits, state, attention = stepper.step(memory, state, tokens)
        logp = log_softmax(logits)  # (B * k, V)
        vocab = logp.shape[-1]
        if attention is not None:
            step_rows = np.asarray(attention, np.float32)[:, None, :]  # (B * k, 1, S)
            attention_history = (
                step_rows
                if attention_history is None
                else np.concatenate([attention_history, step_rows], axis=1)
            )
        candidates = (scores[:, :, None] + logp.reshape(b, k, vocab)).reshape(b, k * vocab)  # (B, k * V)
        order = np.argsort(-candidates, axis=1, kind="stable")
        parents = np.arange(b * k)  # a done source keeps its rows where they are
        next_tokens = tokens.copy()
        next_scores = scores.copy()
        for i in np.flatnonzero(~done):
            kept = 0
            for flat in order[i]:
                score = candidates[i, flat]
                if not np.isfinite(score):
                    break
                beam, token = divmod(int(flat), vocab)
                row = i * k + beam
                if token == eos_id:
                    steps = t + 1
                    rows = None if attention_history is None else attention_history[row, :steps]
                    finished[i].append(
                        Hypothesis(
                            history[row].tolist(),
                            float(score),
                            float(score) / length_penalty(steps, alpha),
                            True,
                            rows,
                        )
                    )
                    continue
                parents[i * k + kept], next_tokens[i * k + kept] = row, token
                next_scores[i, kept] = score
                kept += 1
                if kept == k:
                    break
            next_scores[i, kept:] = -np.inf  # fewer live candidates than beams (tiny vocabularies)
            done[i] = _settled(finished[i], next_scores[i], k, alpha, max_len)
        if done.all():
            break
        state = _gather(state, parents)
        history = np.concatenate([history[parents], next_tokens[:, None]], axis=1)
        if attention_history is not None:
            attention_history = attention_history[parents]
        scores, tokens = next_scores, next_tokens
    for i in np.flatnonzero(~done):  # max_len reached: live beams end unfinished
        for j in range(k):
            if np.isfinite(scores[i, j]):
                row, steps = i * k + j, history.shape[1]
                rows = None if attention_history is None else attention_history[row, :steps]
                finished[i].append(
                    Hypothesis(
                        history[row].tolist(),
                        float(scores[i, j]),
                        float(scores[i, j]) / length_penalty(steps, alpha),
                        False,
                        rows,
                    )
                )
    return [sorted(hyps, key=lambda h: -h.normalized)[:k] for hyps in finished]


def _settled(finished: list[Hypothesis], live_scores: np.ndarray, k: int, alpha: float, max_len: int) -> bool:
    """True once k finished hypotheses exist and none of the live beams can still rank above the k-th."""
    if len(finished) < k:
        return False
    kth = sorted(h.normalized for h in finished)[-k]
    live = live_scores[np.isfinite(live_scores)]
    return live.size == 0 or float(live.max()) / length_penalty(max_len, alpha) <= kth
