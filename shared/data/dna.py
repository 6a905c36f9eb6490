"""DNA sequences: FASTA and label-table readers, one-hot encoding, the embedded `motifs` generator, and
hub converters (Genomic Benchmarks, Nucleotide Transformer downstream tasks). numpy + `datasets` only.

Every loader returns a DatasetDict with train / validation / test splits and the columns
    id        str
    sequence  str, upper case, any length (the task crops or pads with the config's length_policy)
    labels    list of positive label indices, a Sequence(ClassLabel) whose names are the label names
One-hot encoding (A, C, G, T channels, in that order) happens in shared/tasks/multilabel.py, with the
config's policies for N, IUPAC ambiguity codes and length; every error names the record.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from shared.data import store
from shared.data.catalog import register, register_hub
from shared.data.hub import load_hub, mirror_files
from shared.errors import UserError

ALPHABET = "ACGT"
# IUPAC ambiguity codes -> the bases they allow (N allows all four).
IUPAC = {
    "R": "AG",
    "Y": "CT",
    "S": "CG",
    "W": "AT",
    "K": "GT",
    "M": "AC",
    "B": "CGT",
    "D": "AGT",
    "H": "ACT",
    "V": "ACG",
    "N": "ACGT",
}
N_ENCODINGS = ("zeros", "uniform")  # N as all zeros, or 0.25 in each channel
AMBIGUOUS_POLICIES = ("error", "as_n", "fractional")  # R, Y, ...: refuse, read as N, or 1/k per allowed base
LENGTH_POLICIES = ("error", "center", "start")  # unequal lengths: refuse, or crop/pad (with N) around the
#                                                 centre or from the start (padding then goes at the end)


# ---------------------------------------------------------------------------------------------- reading


def _read_text(path: str | Path) -> str:
    """A plain or gzip file (told apart by its first bytes, not its name) as text."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise UserError(f"{path} looks gzip-compressed but cannot be decompressed ({err})") from None
    return raw.decode("utf-8", errors="replace")


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """(id, sequence) per record. Ids are the header's first word; sequences are upper-cased (soft-masked
    lower case is kept as bases), line breaks of any style and blank lines are ignored."""
    records: list[tuple[str, str]] = []
    header, chunks, seen = None, [], set()

    def close():
        sequence = "".join(chunks).upper()
        if not sequence:
            raise UserError(f"FASTA {path}: record {header!r} has no sequence lines")
        records.append((header, sequence))

    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            if header is not None:
                close()
            words = line[1:].split()
            if not words:
                raise UserError(f"FASTA {path} line {number}: a '>' header without an id")
            header, chunks = words[0], []
            if header in seen:
                raise UserError(f"FASTA {path}: record {header!r} appears twice; ids must be unique")
            seen.add(header)
        elif header is None:
            raise UserError(f"FASTA {path} line {number}: sequence text before the first '>' header")
        else:
            chunks.append("".join(line.split()))
    if header is None:
        raise UserError(f"FASTA {path} holds no records (expected lines starting with '>')")
    close()
    return records


def read_label_table(path: str | Path) -> tuple[list[str], dict[str, list[int]]]:
    """A TSV or CSV table: a header 'id<TAB>label_a<TAB>label_b...' then one row of 0/1 per sequence.
    Returns (label names, {id: positive label indices})."""
    lines = [line for line in _read_text(path).splitlines() if line.strip()]
    if len(lines) < 2:
        raise UserError(f"label table {path} needs a header row and at least one sequence row")
    sep = "\t" if "\t" in lines[0] else ","
    header = [h.strip() for h in lines[0].split(sep)]
    names = header[1:]
    if not names:
        raise UserError(
            f"label table {path}: the header {lines[0]!r} names no label column after the id column"
        )
    table: dict[str, list[int]] = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split(sep)]
        record = cells[0]
        if len(cells) != len(header):
            raise UserError(
                f"label table {path} line {number} (record {record!r}): {len(cells)} columns, "
                f"expected {len(header)}"
            )
        if record in table:
            raise UserError(f"label table {path}: record {record!r} appears twice")
        bad = [c for c in cells[1:] if c not in ("0", "1")]
        if bad:
            raise UserError(
                f"label table {path} line {number} (record {record!r}): labels must be 0 or 1, "
                f"found {bad[0]!r}"
            )
        table[record] = [i for i, c in enumerate(cells[1:]) if c == "1"]
    return names, table


def write_fasta(path: str | Path, records: list[tuple[str, str]], width: int = 80) -> Path:
    path = Path(path)
    lines = []
    for record, sequence in records:
        lines.append(f">{record}")
        lines += [sequence[i : i + width] for i in range(0, len(sequence), width)]
    text = "\n".join(lines) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())
    return path


def write_label_table(path: str | Path, names: list[str], table: dict[str, list[int]]) -> Path:
    rows = ["\t".join(["id", *names])]
    rows += [
        "\t".join([record, *("1" if i in set(pos) else "0" for i in range(len(names)))])
        for record, pos in table.items()
    ]
    Path(path).write_text("\n".join(rows) + "\n")
    return Path(path)


# -------------------------------------------------------------------------------------------- encoding


def _tables(n_encoding: str, ambiguous: str) -> tuple[np.ndarray, np.ndarray]:
    """(256, 4) float32 channel values per byte, and (256,) codes: 0 base/N, 1 ambiguity code, 2 invalid."""
    values, kind = np.zeros((256, 4), np.float32), np.full(256, 2, np.int8)
    for i, base in enumerate(ALPHABET):
        values[ord(base), i], kind[ord(base)] = 1.0, 0
    for code, allowed in IUPAC.items():
        as_n = code == "N" or ambiguous == "as_n"
        if as_n and n_encoding == "uniform":
            values[ord(code)] = 0.25
        elif not as_n:
            values[ord(code), [ALPHABET.index(b) for b in allowed]] = 1.0 / len(allowed)
        kind[ord(code)] = 0 if code == "N" or ambiguous != "error" else 1
    return values, kind


def fit_length(sequence: str, length: int, policy: str, record: str) -> str:
    """Crop or pad (with N) to `length` under `policy`; 'error' refuses any other length."""
    if len(sequence) == length:
        return sequence
    if policy == "error":
        raise UserError(
            f"sequence {record!r} has {len(sequence)} bases; the model reads {length}: pass "
            f"--set length_policy=center (or start) to crop/pad, or --set sequence_length={len(sequence)}"
        )
    extra = len(sequence) - length
    if extra > 0:
        start = extra // 2 if policy == "center" else 0
        return sequence[start : start + length]
    left = -extra // 2 if policy == "center" else 0
    return "N" * left + sequence + "N" * (-extra - left)


def one_hot(
    sequences: list[str],
    ids: list[str],
    length: int,
    n_encoding: str = "zeros",
    ambiguous: str = "error",
    length_policy: str = "error",
) -> np.ndarray:
    """Strings -> (num_sequences, length, 4) float32 in A, C, G, T order. Errors name the record."""
    values, kind = _tables(n_encoding, ambiguous)
    out = np.zeros((len(sequences), length, 4), np.float32)
    for row, (record, sequence) in enumerate(zip(ids, sequences)):
        sequence = sequence.upper()
        codes = np.frombuffer(sequence.encode("ascii", "replace"), np.uint8)
        bad = np.flatnonzero(kind[codes])
        if bad.size:
            position, char = int(bad[0]), sequence[bad[0]]
            if kind[codes[bad[0]]] == 1:
                raise UserError(
                    f"sequence {record!r} has the IUPAC code {char!r} at position {position + 1}: "
                    "pass --set ambiguous_bases=as_n or fractional to accept ambiguity codes"
                )
            raise UserError(
                f"sequence {record!r} has {char!r} at position {position + 1}, which is not a "
                "nucleotide (A, C, G, T, N or an IUPAC code)"
            )
        codes = np.frombuffer(fit_length(sequence, length, length_policy, record).encode("ascii"), np.uint8)
        out[row] = values[codes]  # (length, 4)
    return out


def reverse_complement(one_hot_batch: np.ndarray) -> np.ndarray:
    """(..., L, 4) -> reversed positions, complemented channels (A<->T, C<->G is channel order reversed)."""
    return np.ascontiguousarray(one_hot_batch[..., ::-1, ::-1])


# -------------------------------------------------------------------------------------------- datasets


def to_dataset_dict(
    splits: dict[str, dict[str, list]], label_names: list[str], extra_features: dict | None = None
):
    """{split: {'id', 'sequence', 'labels' (positive indices)[, extra columns]}} -> DatasetDict."""
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "sequence": datasets.Value("string"),
            "labels": datasets.Sequence(datasets.ClassLabel(names=list(label_names))),
            **(extra_features or {}),
        }
    )
    return datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(columns, features=features) for name, columns in splits.items()}
    )


def carve_validation(columns: dict[str, list], fraction: float = 0.1, seed: int = 1234):
    """A fixed seeded share of a training split becomes the validation split: (train, validation)."""
    count = len(columns["id"])
    order = np.random.default_rng(seed).permutation(count)
    cut = max(1, int(round(count * fraction)))

    def pick(index):
        return {k: [v[i] for i in sorted(index)] for k, v in columns.items()}

    return pick(order[cut:]), pick(order[:cut])


FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fa.gz", ".fasta.gz", ".fna.gz")
LABEL_FILES = ("labels.tsv", "labels.csv", "labels.tsv.gz", "labels.csv.gz")


@register("fasta")
def fasta_folder(folder: str):
    """A folder of train/validation/test FASTA files (.fa/.fasta/.fna, optionally .gz) and one labels.tsv
    naming every record: `--data fasta:/path/to/folder`. Without validation.*, 10% of train is held out."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"fasta:{folder}: no such folder; it should hold train.fa, test.fa and labels.tsv")
    found = {}
    for split in ("train", "validation", "test"):
        candidates = [
            root / f"{split}{suffix}" for suffix in FASTA_SUFFIXES if (root / f"{split}{suffix}").is_file()
        ]
        if candidates:
            found[split] = candidates[0]
    for required in ("train", "test"):
        if required not in found:
            raise UserError(f"fasta:{folder} lacks {required}.fa (or .fasta/.fna, optionally .gz)")
    label_file = next((root / n for n in LABEL_FILES if (root / n).is_file()), None)
    if label_file is None:
        raise UserError(
            f"fasta:{folder} lacks labels.tsv (header 'id<TAB>label...' and one 0/1 row per record)"
        )
    names, table = read_label_table(label_file)
    splits, named = {}, set()
    for split, path in found.items():
        records = read_fasta(path)
        for record, _ in records:
            if record in named:
                raise UserError(f"record {record!r} appears in more than one FASTA file of {folder}")
            if record not in table:
                raise UserError(f"record {record!r} of {path} has no row in {label_file}")
            named.add(record)
        splits[split] = {
            "id": [r for r, _ in records],
            "sequence": [s for _, s in records],
            "labels": [table[r] for r, _ in records],
        }
    missing = [record for record in table if record not in named]
    if missing:
        raise UserError(
            f"{label_file} names {len(missing)} sequence(s) that no FASTA file holds, first {missing[0]!r}"
        )
    if "validation" not in splits:
        splits["train"], splits["validation"] = carve_validation(splits["train"])
    return to_dataset_dict(splits, names)


# ------------------------------------------------------------------------------ embedded planted motifs


def planted_motifs(num_motifs: int = 5, seed: int = 0, min_width: int = 10, max_width: int = 14):
    """Transcription-factor-like position weight matrices, deterministic by seed: (names, [(w, 4) arrays]).
    Each position favours one base with probability 0.8-0.99; the rest is spread at random."""
    rng = np.random.default_rng([seed, 1])
    names, pwms = [], []
    for m in range(num_motifs):
        width = int(rng.integers(min_width, max_width + 1))
        pwm = np.zeros((width, 4))
        for j, base in enumerate(rng.integers(0, 4, size=width)):
            strength = rng.uniform(0.8, 0.99)
            pwm[j, [b for b in range(4) if b != base]] = rng.dirichlet(np.ones(3)) * (1.0 - strength)
            pwm[j, base] = strength
        names.append(f"motif{m}")
        pwms.append(pwm)
    return names, pwms


LETTERS = np.frombuffer(ALPHABET.encode(), np.uint8)


def _sample_split(count: int, length: int, pwms: list, rate: float, gc: float, rng, prefix: str):
    """Background sequences with planted motif instances; a label is on when its motif was planted."""
    background = np.array([1 - gc, gc, gc, 1 - gc]) / 2
    codes = rng.choice(4, size=(count, length), p=background)  # (N, L) base indices
    present = rng.random((count, len(pwms))) < rate  # (N, K)
    minus = rng.random((count, len(pwms))) < 0.5  # (N, K) instance on the reverse strand
    starts = rng.integers(
        0, length - max(len(p) for p in pwms) + 1, size=(count, len(pwms), 50)
    )  # candidates
    # One draw per PWM column for every (sequence, motif): (N, w) base indices per motif.
    instances = [
        (rng.random((count, len(p)))[..., None] > np.cumsum(p, axis=1)).sum(-1).clip(0, 3) for p in pwms
    ]
    masked, gapped = rng.random(count) < 0.2, rng.random(count) < 0.05  # soft-masked stretch, N run
    decorations = rng.integers(0, length - 20, size=(count, 2)), rng.integers(1, 11, size=count)
    columns = {"id": [], "sequence": [], "labels": [], "site_motif": [], "site_start": [], "site_strand": []}
    for i in range(count):
        occupied = np.zeros(length, bool)
        sites = []
        for m in np.flatnonzero(present[i]):
            width = len(pwms[m])
            start = next(
                (int(s) for s in starts[i, m] if not occupied[s : s + width].any()), None
            )  # no overlaps
            if start is None:
                continue  # no room left: the motif (and its label) is left out
            bases = instances[m][i]
            codes[i, start : start + width] = 3 - bases[::-1] if minus[i, m] else bases
            occupied[start : start + width] = True
            sites.append((int(m), start, "-" if minus[i, m] else "+"))
        text = LETTERS[codes[i]]  # (L,) ASCII codes
        if masked[i]:  # lower case, as in repeat-masked genomes
            a = decorations[0][i, 0]
            text[a : a + 20] += ord("a") - ord("A")
        a = decorations[0][i, 1]
        if gapped[i] and not occupied[a : a + 10].any():  # a short run of N (assembly gap) beside the sites
            text[a : a + decorations[1][i]] = ord("N")
        columns["id"].append(f"{prefix}{i}")
        columns["sequence"].append(text.tobytes().decode("ascii"))
        columns["labels"].append(sorted({m for m, _, _ in sites}))
        columns["site_motif"].append([m for m, _, _ in sites])
        columns["site_start"].append([s for _, s, _ in sites])
        columns["site_strand"].append([d for _, _, d in sites])
    return columns


@register("motifs")
@store.cached("motifs")
def motifs(
    num_train: int = 24000,
    num_validation: int = 1000,
    num_test: int = 1000,
    sequence_length: int = 200,
    num_motifs: int = 5,
    rate: float = 0.3,
    gc: float = 0.42,
    seed: int = 0,
):
    """Random background (GC fraction `gc`) with planted instances of `num_motifs` PWMs, each present in a
    sequence with probability `rate` on either strand: several labels per sequence. The planted sites are
    columns (site_motif, site_start 0-based, site_strand); the PWMs are planted_motifs(num_motifs, seed)."""
    import datasets

    names, pwms = planted_motifs(num_motifs, seed)
    rng = np.random.default_rng([seed, 2])
    splits = {
        split: _sample_split(count, sequence_length, pwms, rate, gc, rng, f"{split}_")
        for split, count in (("train", num_train), ("validation", num_validation), ("test", num_test))
    }
    sites = {
        "site_motif": datasets.Sequence(datasets.Value("int32")),
        "site_start": datasets.Sequence(datasets.Value("int32")),
        "site_strand": datasets.Sequence(datasets.Value("string")),
    }
    return to_dataset_dict(splits, names, sites)


def save_motifs(folder: str | Path, names: list[str], pwms: list[np.ndarray]) -> list[Path]:
    """PWMs as MEME minimal motif format (for Tomtom and friends) and JSON."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meme = [
        "MEME version 4",
        "",
        f"ALPHABET= {ALPHABET}",
        "",
        "strands: + -",
        "",
        "Background letter frequencies",
        "A 0.25 C 0.25 G 0.25 T 0.25",
        "",
    ]
    for name, pwm in zip(names, pwms):
        meme += [f"MOTIF {name}", f"letter-probability matrix: alength= 4 w= {len(pwm)}"]
        meme += [" ".join(f"{p:.4f}" for p in row) for row in pwm] + [""]
    (folder / "motifs.meme").write_text("\n".join(meme))
    (folder / "motifs.json").write_text(
        json.dumps({n: np.round(p, 6).tolist() for n, p in zip(names, pwms)}, indent=1)
    )
    return [folder / "motifs.meme", folder / "motifs.json"]


# ------------------------------------------------------------------------------------------------ hub

# Revisions known to hold the schema these converters read (seen on the hub; "@<sha>" overrides).
HUB_REVISIONS = {
    "katarinagresova/Genomic_Benchmarks_human_nontata_promoters": "e0003669df0a180c8570ebe091ed91f20fa080ec",
    "InstaDeepAI/nucleotide_transformer_downstream_tasks_revised": "851f9946252e90c665cdb3cc3eedb78f1f26197c",
}
GENOMIC_BENCHMARKS = (
    "human_nontata_promoters",
    "human_enhancers_cohn",
    "human_enhancers_ensembl",
    "human_ocr_ensembl",
    "human_ensembl_regulatory",
    "demo_coding_vs_intergenomic_seqs",
    "demo_human_or_worm",
    "drosophila_enhancers_stark",
    "dummy_mouse_enhancers_ensembl",
)
NT_REPOS = (
    "InstaDeepAI/nucleotide_transformer_downstream_tasks",
    "InstaDeepAI/nucleotide_transformer_downstream_tasks_revised",
)


def _revision(repo: str, asked: str) -> str:
    if asked:
        return asked
    if HUB_REVISIONS.get(repo):
        return HUB_REVISIONS[repo]
    raise UserError(
        f"no pinned revision is known for {repo}: append @<commit sha> (or @main to accept "
        "whatever the hub serves today)"
    )


def _class_columns(raw, sequence_column: str, label_column: str, positive_name: str):
    """A single-label hub dataset -> our columns. Two classes become one label (class 1, named
    `positive_name`); more classes become one label per class (one-vs-rest)."""
    feature = raw["train"].features[label_column]
    values = sorted({int(v) for split in raw.values() for v in split[label_column]})
    if len(values) <= 2:
        names, positives = [positive_name], lambda v: [0] if v == 1 else []
    else:
        names = list(feature.names) if hasattr(feature, "names") else [f"class{v}" for v in values]
        positives = lambda v: [v]  # noqa: E731
    splits = {}
    for split, data in raw.items():
        rows = data.to_dict()
        prefix = f"{split}_"
        splits[split] = {
            "id": [str(n) for n in rows.get("name", [])] or [f"{prefix}{i}" for i in range(len(data))],
            "sequence": [s.upper() for s in rows[sequence_column]],
            "labels": [positives(int(v)) for v in rows[label_column]],
        }
    if "validation" not in splits:
        splits["train"], splits["validation"] = carve_validation(splits["train"])
    return to_dataset_dict(splits, names)


def _genomic_benchmark(raw, name: str):
    return _class_columns(raw, "seq", "label", name)


for _name in GENOMIC_BENCHMARKS:
    register_hub(f"katarinagresova/Genomic_Benchmarks_{_name}")(
        lambda raw, n=_name: _genomic_benchmark(raw, n)
    )


@register("genomic-benchmarks")
def genomic_benchmarks(name: str):
    """`--data genomic-benchmarks:human_nontata_promoters[@sha]`: a Genomic Benchmarks set (seq, label)."""
    name, _, asked = name.partition("@")
    if name not in GENOMIC_BENCHMARKS:
        raise UserError(
            f"unknown Genomic Benchmarks set {name!r}: expected one of {', '.join(GENOMIC_BENCHMARKS)}"
        )
    repo = f"katarinagresova/Genomic_Benchmarks_{name}"
    return _genomic_benchmark(load_hub(repo, _revision(repo, asked)), name)


def _nt_task(raw, task: str):
    tasks = sorted({t for split in raw.values() for t in split.unique("task")})
    if task not in tasks:
        raise UserError(f"the Nucleotide Transformer data has no task {task!r}; it has {', '.join(tasks)}")
    raw = raw.filter(lambda t: t == task, input_columns="task")
    return _class_columns(raw, "sequence", "label", task)


@register("nt")
def nucleotide_transformer(task: str):
    """`--data nt:promoter_all[@sha]` (revised benchmark) or `nt:original/promoter_all@sha` (the first
    release): one task of the Nucleotide Transformer downstream tasks (sequence, name, label, task)."""
    import datasets

    task, _, asked = task.partition("@")
    original, _, task = task.rpartition("/")
    repo = NT_REPOS[0] if original == "original" else NT_REPOS[1]
    revision = _revision(repo, asked)
    files = mirror_files(repo)
    try:
        if files is not None:
            raw = datasets.load_dataset("parquet", data_files=files)
        else:  # only this task's folder of parquet files, not all eighteen
            raw = datasets.load_dataset(repo, revision=revision, data_dir=task)
    except (OSError, ValueError, ConnectionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"could not load {repo}@{revision} task {task} ({first}); check the network or set "
            "ZOO_HUB_MIRROR to a folder of its parquet files"
        ) from None
    return _nt_task(raw, task)
