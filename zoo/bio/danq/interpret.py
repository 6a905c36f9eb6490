"""What a biologist would look at in a trained DanQ, from a checkpoint, in either framework:

    python -m zoo.bio.danq.interpret runs/danq-torch --fw keras [--out FOLDER] [--top 10]

1. Filters as motifs: each first-layer filter's position probability matrix, built from the input windows
   that activate it above half its maximum (the method of the DanQ and Basset papers); sequence logos
   (filters.png) and MEME format (filters.meme).
2. Filter influence: how much the validation loss rises when the filter is knocked out (weights and bias
   zeroed, so its activation is 0). The strongest filters are the most influential.
3. On the embedded `motifs` data: every filter is compared with the planted PWMs (mean column-wise Pearson
   correlation at the best offset, either strand); the report counts how many of the strongest filters
   match a planted motif and how many planted motifs are found (filter_matches.csv, summary.json).
4. In-silico mutagenesis maps of a few test sequences, planted sites shaded (ism_<id>.png).
Everything but the forward passes is numpy on canonical weights, so both twins give the same report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from shared import hub, plots, tasks
from shared.cli import Parser, check_fw, main_wrapper
from shared.data import dna
from shared.data import load as load_data
from shared.data.dna import ALPHABET, save_motifs
from shared.models import load_model
from shared.tasks.multilabel import binary_cross_entropy


def conv_activations(weights: dict, sequences: np.ndarray) -> np.ndarray:
    """First-layer ReLU activations (N, L - k + 1, F) from canonical weights conv.weight (F, 4, k)."""
    kernel, bias = weights["conv.weight"], weights["conv.bias"]
    width = kernel.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(sequences, width, axis=1)  # (N, L - k + 1, 4, k)
    return np.maximum(np.einsum("npck,fck->npf", windows, kernel, optimize=True) + bias, 0.0)


def filter_pwms(weights: dict, sequences: np.ndarray, fraction: float = 0.5, pseudocount: float = 0.05):
    """Per filter: the position probability matrix (k, 4) of the windows activating it above `fraction`
    of its maximum over `sequences`, and how many windows that was. Returns ((F, k, 4), (F,))."""
    activations = conv_activations(weights, sequences)  # (N, P, F)
    width = weights["conv.weight"].shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(sequences, width, axis=1)  # (N, P, 4, k)
    counts = np.zeros((activations.shape[-1], width, 4))
    sites = np.zeros(activations.shape[-1], np.int64)
    for f in range(activations.shape[-1]):
        peak = activations[..., f].max()
        if peak <= 0:
            continue
        n, p = np.nonzero(activations[..., f] > fraction * peak)
        counts[f] = windows[n, p].sum(axis=0).T  # (k, 4)
        sites[f] = len(n)
    counts += pseudocount
    return counts / counts.sum(axis=-1, keepdims=True), sites


def column_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Pearson correlation of matching columns of two (w, 4) matrices (0 for a flat column)."""
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.where(norms > 1e-9, (a * b).sum(axis=1) / np.maximum(norms, 1e-9), 0.0)))


def motif_similarity(filter_pwm: np.ndarray, motif: np.ndarray, min_overlap: float = 0.75):
    """Best (correlation, offset of the motif in the filter, strand) over offsets with at least
    `min_overlap` of the shorter matrix overlapping, and over both strands of the motif."""
    best = (-1.0, 0, "+")
    for strand, candidate in (("+", motif), ("-", motif[::-1, ::-1])):  # reverse complement: flip both axes
        shortest = min(len(filter_pwm), len(candidate))
        need = max(1, int(np.ceil(min_overlap * shortest)))
        for offset in range(-(len(candidate) - need), len(filter_pwm) - need + 1):
            lo, hi = max(0, offset), min(len(filter_pwm), offset + len(candidate))
            if hi - lo < need:
                continue
            r = column_correlation(filter_pwm[lo:hi], candidate[lo - offset : hi - offset])
            if r > best[0]:
                best = (r, offset, strand)
    return best


def filter_influence(spec, model, weights: dict, arrays: dict, batch_size: int) -> np.ndarray:
    """Rise of the mean binary cross-entropy on `arrays` when each filter is knocked out, (F,)."""

    def loss(w):
        spec.set_weights(model, w)
        logits = np.concatenate(
            [
                spec.forward(model, {"sequence": arrays["sequence"][i : i + batch_size]})["logits"]
                for i in range(0, len(arrays["sequence"]), batch_size)
            ]
        )
        return binary_cross_entropy(logits, arrays["labels"])

    reference = loss(weights)
    rises = []
    for f in range(weights["conv.weight"].shape[0]):
        knocked = dict(
            weights,
            **{"conv.weight": weights["conv.weight"].copy(), "conv.bias": weights["conv.bias"].copy()},
        )
        knocked["conv.weight"][f], knocked["conv.bias"][f] = 0.0, 0.0
        rises.append(loss(knocked) - reference)
    spec.set_weights(model, weights)
    return np.asarray(rises)


def mutagenesis(spec, model, sequence: np.ndarray, label: int, batch_size: int) -> np.ndarray:
    """(L, 4) change of one label's logit when each position is set to each base (0 at the reference)."""
    length = len(sequence)
    mutants = np.repeat(sequence[None], length * 4, axis=0)  # (L * 4, L, 4)
    for position in range(length):
        mutants[position * 4 : position * 4 + 4, position] = np.eye(4, dtype=sequence.dtype)
    batch = np.concatenate([sequence[None], mutants])
    logits = np.concatenate(
        [
            spec.forward(model, {"sequence": batch[i : i + batch_size]})["logits"][:, label]
            for i in range(0, len(batch), batch_size)
        ]
    )
    delta = (logits[1:] - logits[0]).reshape(length, 4)
    delta[sequence.sum(axis=1) == 0] = 0.0  # N positions: no reference to compare with
    return np.where(sequence > 0.5, 0.0, delta)


def match_filters(
    pwms: np.ndarray,
    influence: np.ndarray,
    sites: np.ndarray,
    names: list[str],
    planted: list[np.ndarray],
    top: int,
    threshold: float,
) -> dict:
    """Every filter's best planted match, ranked by influence; counts over the `top` strongest filters."""
    rows = []
    for f in np.argsort(-influence):
        row = {"filter": int(f), "influence": float(influence[f]), "sites": int(sites[f])}
        if planted:
            scores = [motif_similarity(pwms[f], m) for m in planted]
            best = int(np.argmax([s[0] for s in scores]))
            row.update(
                {
                    "motif": names[best],
                    "correlation": round(scores[best][0], 4),
                    "offset": scores[best][1],
                    "strand": scores[best][2],
                }
            )
        rows.append(row)
    strongest = rows[:top]
    summary = {"filters": len(rows), "top": len(strongest), "threshold": threshold}
    if planted:
        matched = [r for r in strongest if r["correlation"] >= threshold]
        found = sorted({r["motif"] for r in matched})
        # Per planted motif: the best correlation of any filter, and the influence rank (1 = strongest) of the
        # first filter matching it; redundant copies of one motif share its influence, so ranks can be low.
        summary.update(
            {
                "top_filters_matching": len(matched),
                "planted_motifs": len(planted),
                "planted_motifs_found": len(found),
                "found": found,
                "best_correlation": {
                    n: max((r["correlation"] for r in rows if r["motif"] == n), default=None) for n in names
                },
                "rank_of_first_match": {
                    n: next(
                        (
                            i + 1
                            for i, r in enumerate(rows)
                            if r["motif"] == n and r["correlation"] >= threshold
                        ),
                        None,
                    )
                    for n in names
                },
            }
        )
    return {"rows": rows, "summary": summary}


def interpret(
    path: str,
    fw: str,
    out: str | None = None,
    top: int = 10,
    threshold: float = 0.75,
    examples: int = 4,
    max_sequences: int = 2000,
    threads: int | None = None,
) -> dict:
    import importlib

    ckpt = hub.load(path)
    importlib.import_module(f"shared.train.{fw}_trainer").setup(0, threads, 0)
    spec, config, model, ckpt = load_model(ckpt["folder"], fw)
    out = Path(out or Path(ckpt["folder"]).parent / f"interpret-{fw}")
    out.mkdir(parents=True, exist_ok=True)
    data, kwargs = ckpt["meta"].get("data") or spec.dataset, ckpt["meta"].get("data_kwargs", {})
    raw = load_data(data, **kwargs)
    splits, _ = spec.task_module.prepare(raw, config, tasks.load_state(spec, ckpt))
    validation = {k: v[:max_sequences] for k, v in splits["validation"].items()}
    weights = spec.get_weights(model)

    pwms, sites = filter_pwms(weights, validation["sequence"])
    influence = filter_influence(spec, model, weights, validation, config.eval_batch_size)
    names, planted = [], []
    if data == "motifs":
        names, planted = dna.planted_motifs(kwargs.get("num_motifs", 5), kwargs.get("seed", 0))
        save_motifs(out / "planted", names, planted)
    report = match_filters(pwms, influence, sites, names, planted, top, threshold)
    save_motifs(out / "filters", [f"filter{f}" for f in range(len(pwms))], list(pwms))

    panels, titles = [], []
    for r in report["rows"][:top]:
        panels.append(pwms[r["filter"]])
        titles.append(f"filter {r['filter']}: knock-out +{r['influence']:.3f} loss, {r['sites']} sites")
        if planted:
            motif = planted[names.index(r["motif"])]
            motif = motif[::-1, ::-1] if r["strand"] == "-" else motif
            aligned = np.full_like(pwms[r["filter"]], 0.25)  # the planted PWM placed at its best offset
            lo, hi = max(0, r["offset"]), min(len(aligned), r["offset"] + len(motif))
            aligned[lo:hi] = motif[lo - r["offset"] : hi - r["offset"]]
            panels.append(aligned)
            titles.append(f"planted {r['motif']} ({r['strand']} strand): r = {r['correlation']:.2f}")
    plots.sequence_logos(panels, titles, out / "filters.png", columns=2 if planted else 3)

    test = raw["test"]
    shown = []
    for i in range(len(test)):
        if len(shown) == examples:
            break
        record = test[i]
        label = record["site_motif"][0] if record.get("site_motif") else (record["labels"] or [None])[0]
        if label is None:
            continue
        sequence = splits["test"]["sequence"][i]
        delta = mutagenesis(spec, model, sequence, label, config.eval_batch_size)
        marks = [
            (s, s + len(planted[m]), f"{names[m]} {d}")
            for m, s, d in zip(
                record.get("site_motif", []), record.get("site_start", []), record.get("site_strand", [])
            )
        ]
        text = "".join(
            ALPHABET[c] if sequence[p].sum() > 0 else "N" for p, c in enumerate(sequence.argmax(1))
        )
        label_name = tasks.load_state(spec, ckpt)["label_names"][label]
        plots.mutagenesis_map(
            delta,
            text,
            out / f"ism_{record['id']}.png",
            f"{record['id']}: in-silico mutagenesis of the {label_name} logit ({fw})",
            marks,
        )
        shown.append(record["id"])

    with open(out / "filter_matches.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(report["rows"][0]))
        writer.writeheader()
        writer.writerows(report["rows"])
    summary = {
        **report["summary"],
        "framework": fw,
        "checkpoint": str(ckpt["folder"]),
        "data": data,
        "mutagenesis": shown,
        "out": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> int:

    parser = Parser(prog="python -m zoo.bio.danq.interpret", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="run folder or checkpoint folder of a bio/danq model")
    parser.add_argument("--fw", required=True, help="keras or torch")
    parser.add_argument("--out", help="output folder (default: interpret-<fw> beside the checkpoint)")
    parser.add_argument(
        "--top", type=int, default=10, help="how many of the strongest filters to show and count"
    )
    parser.add_argument("--threshold", type=float, default=0.75, help="correlation that counts as a match")
    parser.add_argument("--examples", type=int, default=4, help="test sequences to mutate in silico")
    parser.add_argument("--threads", type=int, help="CPU threads")
    args = parser.parse_args(argv)
    summary = interpret(
        args.checkpoint,
        check_fw(args.fw),
        args.out,
        args.top,
        args.threshold,
        args.examples,
        threads=args.threads,
    )
    if "planted_motifs" in summary:
        print(
            f"{summary['top_filters_matching']}/{summary['top']} of the most influential filters match a planted "
            f"motif (r >= {summary['threshold']}); planted motifs found: {summary['planted_motifs_found']}/"
            f"{summary['planted_motifs']} ({', '.join(summary['found'])})"
        )
    print(f"logos, MEME files, mutagenesis maps and summary.json in {summary['out']}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
