"""Attention maps of a trained Transformer as PNGs, in either framework: for each sentence, every layer and
head of the encoder's self-attention, the decoder's causal self-attention and its cross-attention.

    python -m zoo.nlp.transformer.attention runs/transformer-torch --fw keras --out runs/attention \\
        "three hundred and twelve" "ninety-seven thousand and one"

The sentence is translated greedily; the decoder is then read with [BOS] + that translation as its input,
which are the very attention patterns that produced each token. Framework-free: each twin's
attention_maps() returns numpy arrays (L, B, H, T_query, T_key).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared import tasks
from shared.cli import Parser, check_fw, main_wrapper
from shared.frameworks import framework_of
from shared.models import load_model
from shared.tasks import translation as task

KINDS = {  # name -> (title, rows label, columns label)
    "encoder_self": ("encoder self-attention", "source token (query)", "source token (key)"),
    "decoder_self": ("decoder causal self-attention", "decoder input (query)", "decoder input (key)"),
    "cross": ("decoder cross-attention", "decoder input (query)", "source token (key)"),
}


def sentence_batch(spec, model, config, state: dict, texts: list[str]) -> tuple[dict, list]:
    """The sources and their greedy translations as one batch (tgt_in = [BOS] + translation)."""
    batch = task.encode_sources(texts, config, state)
    hypotheses = task.decode(spec, model, config, batch["src"], batch["src_mask"], beam_size=1)
    sources = [
        src[mask][:-1].tolist() for src, mask in zip(batch["src"], batch["src_mask"])
    ]  # EOS is re-added
    targets = [h.tokens[: config.max_tgt_len - 1] for h in hypotheses]  # [BOS] + these fit max_tgt_len
    arrays = task.make_arrays(sources, targets)
    return arrays, hypotheses


def grid(
    maps: np.ndarray,
    row_tokens: list[str],
    col_tokens: list[str],
    path: Path,
    title: str,
    labels: tuple[str, str],
) -> Path:
    """maps (L, H, T_query, T_key) -> one PNG: a row of heads per layer, tokens on the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_layers, num_heads = maps.shape[:2]
    cell = max(1.8, 0.28 * max(len(row_tokens), len(col_tokens)))
    fig, axes = plt.subplots(
        num_layers, num_heads, figsize=(cell * num_heads + 1.5, cell * num_layers + 1.0), squeeze=False
    )
    for layer in range(num_layers):
        for head in range(num_heads):
            ax = axes[layer, head]
            ax.imshow(maps[layer, head], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(len(col_tokens)), col_tokens, rotation=90, fontsize=6)
            ax.set_yticks(range(len(row_tokens)), row_tokens, fontsize=6)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=7)
    fig.supylabel(labels[0], fontsize=8)
    fig.supxlabel(labels[1], fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_attention_maps(
    spec, model, config, state: dict, texts: list[str], folder: str | Path
) -> list[Path]:
    """Three PNGs per sentence (encoder_self, decoder_self, cross) in `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source_tok, target_tok = task.tokenizers(state)
    batch, hypotheses = sentence_batch(spec, model, config, state, texts)
    maps = spec.impl(framework_of(model)).attention_maps(model, batch)  # {kind: (L, B, H, Tq, Tk)}
    paths = []
    for i, (text, hyp) in enumerate(zip(texts, hypotheses)):
        src_len, tgt_len = int(batch["src_mask"][i].sum()), int(batch["tgt_mask"][i].sum())
        src_tokens = task.tokens_of(source_tok, batch["src"][i, :src_len])
        tgt_tokens = task.tokens_of(target_tok, batch["tgt_in"][i, :tgt_len])
        axes = {
            "encoder_self": (src_tokens, src_tokens),
            "decoder_self": (tgt_tokens, tgt_tokens),
            "cross": (tgt_tokens, src_tokens),
        }
        for kind, (title, *labels) in KINDS.items():
            rows, cols = axes[kind]
            sentence = f"{text} -> {task.decode_ids(target_tok, hyp.tokens)}"
            paths.append(
                grid(
                    maps[kind][:, i, :, : len(rows), : len(cols)],
                    rows,
                    cols,
                    folder / f"attention_{i:02d}_{kind}.png",
                    f"{title}\n{sentence}",
                    tuple(labels),
                )
            )
    return paths


def main(argv=None) -> int:
    parser = Parser(prog="python -m zoo.nlp.transformer.attention", description=__doc__)
    parser.add_argument("checkpoint", help="run folder or checkpoint folder of nlp/transformer")
    parser.add_argument("sentences", nargs="+", help="source sentences")
    parser.add_argument("--fw", required=True, help="keras or torch")
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    args = parser.parse_args(argv)
    spec, config, model, ckpt = load_model(args.checkpoint, check_fw(args.fw))
    if spec.name != "nlp/transformer":
        parser.error(f"{args.checkpoint} holds {spec.name}, not nlp/transformer")
    for path in write_attention_maps(
        spec, model, config, tasks.load_state(spec, ckpt), args.sentences, args.out
    ):
        print(path)
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
