"""Translation: batches {src, src_mask, tgt_in, tgt_out, tgt_mask}, outputs {logits (B, T, V), attention}.

Both languages get their own subword tokenizer (shared/data/tokenize.py), trained on the training split
and saved in the checkpoint as tokenizer.json. Ids 0-3 are the same in both vocabularies: PAD 0, UNK 1,
BOS 2, EOS 3.

    src       tokens(source) + [EOS]        (N, S) int64, PAD after the end;  src_mask (N, S) bool
    tgt_in    [BOS] + tokens(target)        (N, T) int64: the decoder's input (teacher forcing)
    tgt_out   tokens(target) + [EOS]        (N, T) int64: what it must predict; tgt_mask (N, T) bool

Length policy. A pair whose source takes more than max_src_len tokens (EOS included) or whose target
takes more than max_tgt_len (BOS or EOS included) is left out of its split when data is prepared; the
count per split is printed and kept in state["dropped"]. Decoding stops after max_tgt_len tokens.
tools/predict.py refuses an empty or over-long source with a one-line error.

Config attributes this task reads (fields or properties of the model's Config):
    src_vocab_size, tgt_vocab_size   each tokenizer is trained to at most this many tokens
    max_src_len, max_tgt_len         the length policy above
    pad_id                           must be 0, the tokenizers' [PAD]
    decoding                         "greedy" or "beam": how evaluate() decodes
    beam_size, length_penalty        beam width and GNMT alpha (0 ranks by the raw log-probability)
The twin modules provide call and compute_loss; their models' encode / decode_step methods (tensors in
and out) are bound to numpy by shared/decoding.py's bind(). That decoding gives the same tokens in both
twins is checked by shared/crosscheck_decoding.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from shared import decoding
from shared.checkpoint import read_json
from shared.data.iterator import BatchIterator
from shared.data.tokenize import (
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    decode_ids,
    encode_texts,
    tokenizers,
    tokens_of,
    train_tokenizer,
)
from shared.data.translation import clean
from shared.errors import UserError
from shared.frameworks import framework_of
from shared.metrics import log_softmax
from shared.plots import attention_heatmap
from shared.tasks import check_keys

PRIMARY_METRIC = "bleu"
HIGHER_IS_BETTER = True
METRICS = ("bleu", "exact_match", "token_accuracy", "loss")

TOKENIZER_FILE = "tokenizer.json"
CONFIG_ATTRIBUTES = (
    "src_vocab_size",
    "tgt_vocab_size",
    "max_src_len",
    "max_tgt_len",
    "pad_id",
    "decoding",
    "beam_size",
    "length_penalty",
)


# ---- batches ----------------------------------------------------------------------------------------


def check_config(config) -> None:
    missing = [name for name in CONFIG_ATTRIBUTES if not hasattr(config, name)]
    if missing:
        raise UserError(
            f"{type(config).__module__}.Config lacks {', '.join(missing)}, which the translation "
            "task reads (see shared/tasks/translation.py)"
        )
    if config.pad_id != PAD_ID:
        raise UserError(f"pad_id must be {PAD_ID}, the tokenizers' {PAD}; found {config.pad_id}")


def pad(rows: list[list[int]], width: int) -> np.ndarray:
    out = np.full((len(rows), width), PAD_ID, np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def make_arrays(src_ids: list[list[int]], tgt_ids: list[list[int]]) -> dict[str, np.ndarray]:
    """Token ids (specials left out) -> the batch arrays, padded to the longest row."""
    src = [ids + [EOS_ID] for ids in src_ids]
    tgt_in = [[BOS_ID] + ids for ids in tgt_ids]
    tgt_out = [ids + [EOS_ID] for ids in tgt_ids]
    s = max((len(r) for r in src), default=1)
    t = max((len(r) for r in tgt_in), default=1)
    arrays = {"src": pad(src, s), "tgt_in": pad(tgt_in, t), "tgt_out": pad(tgt_out, t)}
    arrays["src_mask"] = np.arange(s)[None, :] < np.array([len(r) for r in src], np.int64).reshape(-1, 1)
    arrays["tgt_mask"] = np.arange(t)[None, :] < np.array([len(r) for r in tgt_out], np.int64).reshape(-1, 1)
    return {k: arrays[k] for k in ("src", "src_mask", "tgt_in", "tgt_out", "tgt_mask")}


def example_batch(config, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random token ids of random lengths (the first row the longest), padded and masked as real data."""
    rng = np.random.default_rng(seed)
    s_max, t_max = min(config.max_src_len, 9), min(config.max_tgt_len, 8)
    src_len = np.concatenate([[s_max - 1], rng.integers(1, s_max, size=batch_size - 1)])
    tgt_len = np.concatenate([[t_max - 1], rng.integers(1, t_max, size=batch_size - 1)])
    src = [rng.integers(4, config.src_vocab_size, size=n).tolist() for n in src_len]
    tgt = [rng.integers(4, config.tgt_vocab_size, size=n).tolist() for n in tgt_len]
    return make_arrays(src, tgt)


def check_batch(config, batch: dict) -> None:
    check_keys(
        batch,
        {
            "src": ("i", 2),
            "src_mask": ("b", 2),
            "tgt_in": ("i", 2),
            "tgt_out": ("i", 2),
            "tgt_mask": ("b", 2),
        },
    )
    if batch["src"].shape != batch["src_mask"].shape:
        raise ValueError(f"src {batch['src'].shape} and src_mask {batch['src_mask'].shape} differ in shape")
    shapes = {k: batch[k].shape for k in ("tgt_in", "tgt_out", "tgt_mask")}
    if len(set(shapes.values())) != 1 or shapes["tgt_in"][0] != batch["src"].shape[0]:
        raise ValueError(f"tgt_in, tgt_out and tgt_mask must be (B, T) with src's B; found {shapes}")
    for key, size, name in (
        ("src", config.src_vocab_size, "src_vocab_size"),
        ("tgt_in", config.tgt_vocab_size, "tgt_vocab_size"),
        ("tgt_out", config.tgt_vocab_size, "tgt_vocab_size"),
    ):
        if batch[key].size and (batch[key].min() < 0 or batch[key].max() >= size):
            raise ValueError(
                f"batch[{key!r}] holds token ids {batch[key].min()}..{batch[key].max()}; "
                f"the model's {name} is {size}"
            )


# ---- data preparation -------------------------------------------------------------------------------


class Split(dict):
    """One split's arrays (a dict, as every task returns) and what decoding metrics need besides:
    the texts of its pairs (`sources`, `targets`, references for BLEU) and the preprocessing `state`."""

    def __init__(self, arrays: dict, sources: list[str], targets: list[str], state: dict):
        super().__init__(arrays)
        self.sources, self.targets, self.state = sources, targets, state


def prepare(dataset, config, state: dict | None = None):
    """DatasetDict(source, target strings) -> {split: Split}, training the tokenizers unless `state` has them."""
    check_config(config)
    for name in dataset:
        columns = dataset[name].column_names
        if "source" not in columns or "target" not in columns:
            raise UserError(
                f"split {name!r} has columns {', '.join(columns)}; a translation dataset needs "
                "'source' and 'target' (see shared/data/translation.py)"
            )
    if state is None:
        train = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
        source = train_tokenizer(list(train["source"]), config.src_vocab_size)
        target = train_tokenizer(list(train["target"]), config.tgt_vocab_size)
        state = {
            "kind": "translation",
            "special_tokens": dict(zip(SPECIAL_TOKENS, range(4))),
            "src_vocab_size": source.get_vocab_size(),
            "tgt_vocab_size": target.get_vocab_size(),
            "max_src_len": config.max_src_len,
            "max_tgt_len": config.max_tgt_len,
            "tokenizers": {"source": source.to_str(), "target": target.to_str()},
        }
    for side in ("src", "tgt"):
        if state[f"{side}_vocab_size"] > getattr(config, f"{side}_vocab_size"):
            raise UserError(
                f"the {side} tokenizer has {state[f'{side}_vocab_size']} tokens but the model's "
                f"{side}_vocab_size is {getattr(config, f'{side}_vocab_size')}: pass "
                f"--set {side}_vocab_size={state[f'{side}_vocab_size']}"
            )
    source_tok, target_tok = tokenizers(state)
    splits, dropped = {}, {}
    for name in dataset:
        sources, targets = list(dataset[name]["source"]), list(dataset[name]["target"])
        src_ids, tgt_ids = encode_texts(source_tok, sources), encode_texts(target_tok, targets)
        keep = [
            i
            for i in range(len(sources))
            if len(src_ids[i]) + 1 <= config.max_src_len and len(tgt_ids[i]) + 1 <= config.max_tgt_len
        ]
        dropped[name] = len(sources) - len(keep)
        if dropped[name]:
            print(
                f"translation: left out {dropped[name]} of {len(sources)} {name} pairs longer than "
                f"max_src_len={config.max_src_len} / max_tgt_len={config.max_tgt_len} tokens",
                file=sys.stderr,
            )
        arrays = make_arrays([src_ids[i] for i in keep], [tgt_ids[i] for i in keep])
        splits[name] = Split(arrays, [sources[i] for i in keep], [targets[i] for i in keep], state)
    state = {**state, "dropped": dropped}
    for split in splits.values():
        split.state = state
    return splits, state


def checkpoint_files(state: dict) -> dict:
    """tokenizer.json (both tokenizers, each a Hugging Face tokenizer.json) and preprocessing.json without them."""
    tokenizer = {
        "format": "zoo-translation-tokenizers/1",
        "source": json.loads(state["tokenizers"]["source"]),
        "target": json.loads(state["tokenizers"]["target"]),
    }
    return {
        TOKENIZER_FILE: tokenizer,
        "preprocessing.json": {k: v for k, v in state.items() if k != "tokenizers"},
    }


def load_state(checkpoint: dict) -> dict:
    """The state saved by checkpoint_files: preprocessing.json plus the tokenizers of tokenizer.json."""
    for name in ("preprocessing.json", TOKENIZER_FILE):
        if name not in checkpoint["files"]:
            raise UserError(
                f"checkpoint {checkpoint['folder']} lacks {name}: a translation model cannot read or "
                "write text without it; use the checkpoint folder tools/train.py wrote, complete"
            )
    state = read_json(checkpoint, "preprocessing.json")
    tokenizer = read_json(checkpoint, TOKENIZER_FILE)
    state["tokenizers"] = {side: json.dumps(tokenizer[side]) for side in ("source", "target")}
    return state


# ---- metrics and decoding ---------------------------------------------------------------------------


def metrics(outputs: dict, batch: dict) -> dict[str, float]:
    """Teacher-forced token accuracy and loss (mean cross-entropy per target token) over tgt_mask."""
    logits, target, mask = outputs["logits"], batch["tgt_out"], batch["tgt_mask"]
    logp = np.take_along_axis(log_softmax(logits), target[..., None], axis=-1)[..., 0]  # (N, T)
    count = max(int(mask.sum()), 1)
    return {
        "token_accuracy": float(((np.argmax(logits, -1) == target) & mask).sum() / count),
        "loss": float(-(logp * mask).sum() / count),
    }


def stepper(spec, model) -> decoding.Stepper:
    """The twin's encode / decode_step bound to `model`, for shared/decoding.py."""
    return decoding.bind(model, framework_of(model), spec.impl(framework_of(model)))


def decode(
    spec,
    model,
    config,
    src: np.ndarray,
    src_mask: np.ndarray,
    beam_size: int | None = None,
    max_len: int | None = None,
    alpha: float | None = None,
) -> list[decoding.Hypothesis]:
    """The best hypothesis per source: greedy when beam_size is 1, else beam search."""
    if beam_size is None:
        beam_size = config.beam_size if config.decoding == "beam" else 1
    max_len = config.max_tgt_len if max_len is None else max_len
    alpha = config.length_penalty if alpha is None else alpha
    step = stepper(spec, model)
    if beam_size == 1:
        return decoding.greedy(step, src, src_mask, bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len)
    beams = decoding.beam_search(
        step, src, src_mask, bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len, beam_size=beam_size, alpha=alpha
    )
    return [hyps[0] for hyps in beams]


def evaluate(spec, model, arrays: Split, config, batch_size: int = 256) -> dict[str, float]:
    """Corpus BLEU (sacrebleu, 0-100) and exact match of decoded translations against the reference texts,
    plus teacher-forced token accuracy and loss."""
    import sacrebleu

    if not isinstance(arrays, Split):
        raise UserError(
            "translation evaluate() needs a split from shared.tasks.translation.prepare "
            "(it carries the texts and the tokenizers)"
        )
    _, target_tok = tokenizers(arrays.state)
    outputs: dict[str, list] = {"logits": []}
    hypotheses: list[str] = []
    for batch in BatchIterator(dict(arrays), batch_size, shuffle=False, drop_last=False):
        outputs["logits"].append(spec.forward(model, batch, training=False)["logits"])
        best = decode(spec, model, config, batch["src"], batch["src_mask"])
        hypotheses += [decode_ids(target_tok, h.tokens) for h in best]
    if not hypotheses:
        raise UserError("the split to evaluate holds no pairs (all longer than the length limits?)")
    width = max(x.shape[1] for x in outputs["logits"])
    logits = np.concatenate([np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0))) for x in outputs["logits"]])
    result = metrics({"logits": logits}, arrays)
    exact = np.mean([h == r for h, r in zip(hypotheses, arrays.targets)])
    bleu = sacrebleu.corpus_bleu(hypotheses, [arrays.targets]).score
    return {"bleu": float(bleu), "exact_match": float(exact), **result}


# ---- prediction and attention pictures --------------------------------------------------------------


def encode_sources(texts: list[str], config, state: dict) -> dict[str, np.ndarray]:
    """User sentences -> src / src_mask; an empty or over-long source is a UserError naming it."""
    source_tok, _ = tokenizers(state)
    rows = []
    for text in texts:
        if not clean(text):
            raise UserError("an empty source sentence was given: pass at least one word to translate")
        ids = encode_texts(source_tok, [clean(text)])[0]
        if len(ids) + 1 > config.max_src_len:
            raise UserError(
                f"source {clean(text)[:60]!r} is {len(ids) + 1} tokens (EOS included); this model "
                f"reads at most max_src_len={config.max_src_len}: shorten or split it"
            )
        rows.append(ids)
    arrays = make_arrays(rows, [[] for _ in rows])
    return {"src": arrays["src"], "src_mask": arrays["src_mask"]}


def attention_pictures(
    spec, model, config, state: dict, texts: list[str], folder: Path, beam_size: int = 1
) -> list[Path]:
    """One attention heatmap PNG per source sentence: target tokens (rows) over source tokens (columns)."""
    source_tok, target_tok = tokenizers(state)
    batch = encode_sources(texts, config, state)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, hyp in enumerate(
        decode(spec, model, config, batch["src"], batch["src_mask"], beam_size=beam_size)
    ):
        if hyp.attention is None:
            continue
        length = int(batch["src_mask"][i].sum())
        src_tokens = tokens_of(source_tok, batch["src"][i, :length])
        tgt_tokens = tokens_of(target_tok, hyp.tokens) + ([EOS] if hyp.finished else [])
        title = f"{texts[i]} -> {decode_ids(target_tok, hyp.tokens)}"
        paths.append(
            attention_heatmap(
                hyp.attention[:, :length], src_tokens, tgt_tokens, folder / f"attention_{i:02d}.png", title
            )
        )
    return paths


def after_training(spec, model, splits: dict, config, out: Path, state=None, count: int = 4) -> list[Path]:
    """Attention heatmaps of the first `count` test sentences, in <run>/attention/ (shared/train/run.py
    calls it after training; the tokenizers travel in the split, so `state` is not needed)."""
    test = splits.get("test")
    if not isinstance(test, Split) or not test.sources:
        return []
    return attention_pictures(spec, model, config, test.state, test.sources[:count], Path(out) / "attention")


def predict_options(options: dict, config, extra: tuple[str, ...] = ()) -> tuple[int, int, int, float]:
    """(beam, nbest, max_len, length_penalty) from key=value options, checked; `extra` names other options
    the caller handles itself (tools/predict.py: heatmaps, top_k)."""
    known = {"beam", "nbest", "max_len", "length_penalty", *extra}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"unknown option(s) {', '.join(unknown)}; translation knows "
            f"{', '.join(sorted(known - {'top_k'}))}"
        )
    try:
        beam = int(options.get("beam", 1))
        nbest = int(options.get("nbest", 1))
        max_len = int(options.get("max_len", config.max_tgt_len))
        alpha = float(options.get("length_penalty", config.length_penalty))
    except (TypeError, ValueError) as err:
        raise UserError(
            f"bad option value ({err}): beam, nbest and max_len take integers, length_penalty a number"
        ) from None
    if beam < 1 or nbest < 1 or max_len < 1 or nbest > beam:
        raise UserError(
            f"need beam >= 1, 1 <= nbest <= beam and max_len >= 1; found beam={beam}, nbest={nbest}, "
            f"max_len={max_len}"
        )
    return beam, nbest, max_len, alpha


def translate(
    step: decoding.Stepper, batch: dict, beam: int, max_len: int, alpha: float
) -> list[list[decoding.Hypothesis]]:
    """Hypotheses per source of an encode_sources batch, best first: greedy (one) when beam is 1."""
    if beam == 1:
        return [
            [h]
            for h in decoding.greedy(
                step, batch["src"], batch["src_mask"], bos_id=BOS_ID, eos_id=EOS_ID, max_len=max_len
            )
        ]
    return decoding.beam_search(
        step,
        batch["src"],
        batch["src_mask"],
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        max_len=max_len,
        beam_size=beam,
        alpha=alpha,
    )


def decoding_method(beam: int, alpha: float) -> str:
    return "greedy" if beam == 1 else f"beam {beam}, length penalty {alpha:g}"


def hypothesis_result(hyp: decoding.Hypothesis, target_tok) -> dict:
    """One hypothesis as tools/predict.py reports it: the text, its log-probability, whether EOS ended it."""
    return {
        "translation": decode_ids(target_tok, hyp.tokens),
        "log_prob": float(hyp.score),
        "finished": hyp.finished,
    }


def predict(spec, model, config, state: dict, inputs: list[str], options: dict) -> None:
    """Print each sentence's translation with its log-probability.

    Options (tools/predict.py --opt key=value): beam=K (beam search, K hypotheses; 1 = greedy),
    nbest=N (print the N best beam hypotheses), max_len=T, length_penalty=alpha, heatmaps=FOLDER
    (an attention PNG per sentence).
    """
    beam, nbest, max_len, alpha = predict_options(options, config, extra=("heatmaps", "top_k"))
    _, target_tok = tokenizers(state)
    batch = encode_sources(inputs, config, state)
    results = translate(stepper(spec, model), batch, beam, max_len, alpha)
    method = decoding_method(beam, alpha)
    for i, (text, hyps) in enumerate(zip(inputs, results)):
        unknown_count = int((batch["src"][i] == UNK_ID).sum())
        note = f", {unknown_count} unknown source token(s)" if unknown_count else ""
        for rank, hyp in enumerate(hyps[:nbest]):
            result = hypothesis_result(hyp, target_tok)
            ended = "" if result["finished"] else f", stopped at max_len={max_len}"
            label = f"{rank + 1}. " if nbest > 1 else ""
            print(
                f"{text} -> {label}{result['translation']}    "
                f"(log-prob {result['log_prob']:.4f}, {method}{ended}{note})"
            )
    if options.get("heatmaps"):
        for path in attention_pictures(spec, model, config, state, inputs, Path(options["heatmaps"]), beam):
            print(f"attention heatmap: {path}")
