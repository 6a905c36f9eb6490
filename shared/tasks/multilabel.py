"""Multi-label sequence classification (bio/danq): batches {sequence (B, L, 4) float32 one-hot in A, C, G, T
order, labels (B, K) float32 0/1}, outputs {logits (B, K)}, one independent sigmoid per label.

Metrics: AUROC and AUPRC per label and their means over labels (scikit-learn); a label with only one
class in a split has no AUROC and is left out of the means. The model's Config supplies
sequence_length, num_labels and the encoding policies n_encoding, ambiguous_bases and length_policy
(see shared/data/dna.py).
"""

from __future__ import annotations

import numpy as np

from shared.data import dna
from shared.errors import UserError
from shared.tasks import check_keys

PRIMARY_METRIC = "auroc"
HIGHER_IS_BETTER = True
METRICS = ("auroc", "auprc", "loss")  # plus auroc_<k>, auprc_<k> per label when there are few labels
PER_LABEL_LIMIT = 16  # per-label metrics are reported up to this many labels (DeepSEA has 919)


def example_batch(config, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    bases = rng.integers(0, 4, size=(batch_size, config.sequence_length))
    return {
        "sequence": np.eye(4, dtype=np.float32)[bases],  # (B, L, 4)
        "labels": (rng.random((batch_size, config.num_labels)) < 0.5).astype(np.float32),  # (B, K)
    }


def check_batch(config, batch: dict) -> None:
    check_keys(batch, {"sequence": ("f", 3)})
    found = tuple(batch["sequence"].shape[1:])
    if found != (config.sequence_length, 4):
        raise ValueError(
            f"batch['sequence'] has shape (B, {found[0]}, {found[1]}); the model expects "
            f"(B, {config.sequence_length}, 4) one-hot A, C, G, T"
        )


def encode(ids: list[str], sequences: list[str], config) -> np.ndarray:
    """Strings -> (N, sequence_length, 4) float32 with the config's N, ambiguity and length policies."""
    return dna.one_hot(
        sequences,
        ids,
        config.sequence_length,
        config.n_encoding,
        config.ambiguous_bases,
        config.length_policy,
    )


def multi_hot(positives: list[list[int]], num_labels: int) -> np.ndarray:
    out = np.zeros((len(positives), num_labels), np.float32)
    for row, labels in enumerate(positives):
        out[row, list(labels)] = 1.0
    return out


def prepare(dataset, config, state: dict | None = None):
    """DatasetDict(id, sequence, labels as positive indices) -> {split: {sequence, labels}} numpy arrays."""
    names = list(next(iter(dataset.values())).features["labels"].feature.names)
    if state is not None and names != state["label_names"]:
        raise UserError(
            f"the data's labels {names[:5]} differ from the checkpoint's {state['label_names'][:5]}"
        )
    if len(names) != config.num_labels:
        raise UserError(
            f"the data has {len(names)} label(s) ({', '.join(names[:5])}) but the model is configured "
            f"for num_labels={config.num_labels}: pass --set num_labels={len(names)}"
        )
    lengths = sorted({len(s) for split in dataset.values() for s in split["sequence"]})
    if state is None:
        state = {
            "kind": "dna_one_hot",
            "alphabet": dna.ALPHABET,
            "label_names": names,
            "sequence_length": config.sequence_length,
            "n_encoding": config.n_encoding,
            "ambiguous_bases": config.ambiguous_bases,
            "length_policy": config.length_policy,
            "raw_lengths": [lengths[0], lengths[-1]],
        }
    splits = {}
    for name, split in dataset.items():
        columns = split.to_dict()
        splits[name] = {
            "sequence": encode(columns["id"], columns["sequence"], config),
            "labels": multi_hot(columns["labels"], len(names)),
        }
    return splits, state


def binary_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    x, y = np.asarray(logits, np.float64), np.asarray(labels, np.float64)
    return float(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def per_label_scores(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AUROC per label, AUPRC per label); NaN where a label has a single class in this split."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    auroc, auprc = np.full(labels.shape[1], np.nan), np.full(labels.shape[1], np.nan)
    for k in range(labels.shape[1]):
        if 0 < labels[:, k].sum() < len(labels):
            auroc[k] = roc_auc_score(labels[:, k], logits[:, k])
            auprc[k] = average_precision_score(labels[:, k], logits[:, k])
    return auroc, auprc


def metrics(outputs: dict, batch: dict) -> dict[str, float]:
    logits, labels = np.asarray(outputs["logits"], np.float64), np.asarray(batch["labels"])
    auroc, auprc = per_label_scores(logits, labels)
    defined = ~np.isnan(auroc)
    result = {
        "auroc": float(auroc[defined].mean()) if defined.any() else float("nan"),
        "auprc": float(auprc[defined].mean()) if defined.any() else float("nan"),
        "loss": binary_cross_entropy(logits, labels),
    }
    if labels.shape[1] <= PER_LABEL_LIMIT and labels.shape[1] > 1:
        result.update({f"auroc_{k}": float(v) for k, v in enumerate(auroc)})
        result.update({f"auprc_{k}": float(v) for k, v in enumerate(auprc)})
    return result


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Each label's probability (float64) from the model's logits."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))


def prediction_row(record: str, probabilities: np.ndarray, label_names: list[str]) -> dict:
    """One sequence's prediction as tools/predict.py prints it: the record id and each label's probability."""
    return {"id": record, "probabilities": {name: float(p) for name, p in zip(label_names, probabilities)}}


def predict(spec, model, config, state: dict, inputs: list[str], options: dict) -> None:
    """FASTA files -> one TSV row per record: id and the probability of each label.
    Options: out=<path> writes the table there instead of printing it."""
    records, seen = [], set()
    for path in inputs:
        for record, sequence in dna.read_fasta(path):
            if record in seen:
                raise UserError(f"record {record!r} appears in more than one input FASTA; ids must be unique")
            seen.add(record)
            records.append((record, sequence))
    ids = [r for r, _ in records]
    x = encode(ids, [s for _, s in records], config)  # (N, L, 4)
    logits = np.concatenate(
        [
            spec.forward(model, {"sequence": x[i : i + config.eval_batch_size]})["logits"]
            for i in range(0, len(x), config.eval_batch_size)
        ]
    )
    rows = [prediction_row(record, p, state["label_names"]) for record, p in zip(ids, sigmoid(logits))]
    lines = ["\t".join(["id", *state["label_names"]])]
    lines += ["\t".join([row["id"], *(f"{p:.4f}" for p in row["probabilities"].values())]) for row in rows]
    if options.get("out"):
        with open(options["out"], "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {len(ids)} prediction(s) for {len(state['label_names'])} label(s) to {options['out']}")
    else:
        print("\n".join(lines))
