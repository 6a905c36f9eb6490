"""shared/data/dna.py and shared/tasks/multilabel.py: FASTA and label tables, one-hot policies, the embedded
`motifs` generator, hub converters through local parquet files, and one-line CLI errors. No framework."""

import gzip

import numpy as np
import pytest

from shared.data import dna, load
from shared.errors import UserError
from shared.tasks import multilabel
from tests.conftest import ROOT, assert_one_line_error, run_tool
from zoo import registry

FASTA = ">seq1 first record\r\nACGTN\r\nacgt\r\n\r\n>seq2\nGGCC\nAATT\n"


def config(**overrides):
    return registry.get("bio/danq").config(**overrides)


# ------------------------------------------------------------------------------------------------ FASTA


def test_fasta_plain_and_gzip_read_the_same(tmp_path):
    plain, packed = tmp_path / "a.fa", tmp_path / "b.fasta.gz"
    plain.write_text(FASTA)
    packed.write_bytes(gzip.compress(FASTA.encode()))
    expected = [("seq1", "ACGTNACGT"), ("seq2", "GGCCAATT")]  # CRLF, blank line, soft-masked case
    assert dna.read_fasta(plain) == expected
    assert dna.read_fasta(packed) == expected
    gz_named_plain = tmp_path / "plain.fa.gz"  # compression is read from the bytes, not the name
    gz_named_plain.write_text(FASTA)
    assert dna.read_fasta(gz_named_plain) == expected


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "holds no records"),
        ("\n\n", "holds no records"),
        ("ACGT\n>seq1\nACGT\n", "before the first '>' header"),
        (">seq1\nACGT\n>seq1\nACGT\n", "record 'seq1' appears twice"),
        (">seq1\n>seq2\nACGT\n", "record 'seq1' has no sequence"),
        (">\nACGT\n", "header without an id"),
    ],
)
def test_bad_fasta_names_the_problem(tmp_path, text, needle):
    path = tmp_path / "bad.fa"
    path.write_text(text)
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        dna.read_fasta(path)


def test_label_table_tsv_and_csv(tmp_path):
    (tmp_path / "l.tsv").write_text("id\tctcf\tgata\nseq1\t1\t0\nseq2\t1\t1\n")
    (tmp_path / "l.csv").write_text("id,ctcf,gata\r\nseq1,1,0\r\nseq2,1,1\r\n")
    for name in ("l.tsv", "l.csv"):
        assert dna.read_label_table(tmp_path / name) == (["ctcf", "gata"], {"seq1": [0], "seq2": [0, 1]})
    (tmp_path / "bad.tsv").write_text("id\tctcf\nseq1\t2\n")
    with pytest.raises(UserError, match="record 'seq1'.*0 or 1"):
        dna.read_label_table(tmp_path / "bad.tsv")
    (tmp_path / "short.tsv").write_text("id\tctcf\tgata\nseq1\t1\n")
    with pytest.raises(UserError, match="record 'seq1'.*2 columns, expected 3"):
        dna.read_label_table(tmp_path / "short.tsv")


# --------------------------------------------------------------------------------------------- one-hot


def test_one_hot_bases_n_and_case():
    x = dna.one_hot(["ACGTn"], ["r"], 5)
    np.testing.assert_array_equal(x[0, :4], np.eye(4))
    np.testing.assert_array_equal(x[0, 4], np.zeros(4))
    np.testing.assert_array_equal(dna.one_hot(["N"], ["r"], 1, n_encoding="uniform")[0, 0], np.full(4, 0.25))


def test_iupac_policies():
    with pytest.raises(
        UserError, match=r"sequence 'chr1:5-9' has the IUPAC code 'R' at position 3.*ambiguous_bases"
    ):
        dna.one_hot(["ACRT"], ["chr1:5-9"], 4)
    np.testing.assert_array_equal(
        dna.one_hot(["R"], ["r"], 1, ambiguous="fractional")[0, 0], [0.5, 0, 0.5, 0]
    )
    np.testing.assert_array_equal(dna.one_hot(["Y"], ["r"], 1, ambiguous="as_n")[0, 0], np.zeros(4))
    np.testing.assert_array_equal(dna.one_hot(["Y"], ["r"], 1, "uniform", "as_n")[0, 0], np.full(4, 0.25))
    for bad in ("AC-T", "ACXT", "ACéT"):  # gaps, non-nucleotides and non-ASCII are never accepted
        with pytest.raises(UserError, match="sequence 'r' has .* at position 3, which is not a nucleotide"):
            dna.one_hot([bad], ["r"], 4, ambiguous="fractional")


def test_length_policies():
    with pytest.raises(UserError, match="sequence 'short' has 3 bases; the model reads 5.*length_policy"):
        dna.one_hot(["ACG"], ["short"], 5)
    assert dna.fit_length("ACG", 5, "center", "r") == "NACGN"
    assert dna.fit_length("ACG", 6, "center", "r") == "NACGNN"
    assert dna.fit_length("ACG", 5, "start", "r") == "ACGNN"
    assert dna.fit_length("AACCGGT", 3, "center", "r") == "CCG"
    assert dna.fit_length("AACCGGT", 3, "start", "r") == "AAC"


def test_danq_config_offers_exactly_the_policies_the_data_layer_implements():
    """zoo/bio/danq/config.py keeps its own lists (it imports nothing from shared/, so the folder lifts out);
    they must name what shared/data/dna.py implements."""
    from zoo.bio.danq import config

    assert config.N_ENCODINGS == dna.N_ENCODINGS
    assert config.AMBIGUOUS_POLICIES == dna.AMBIGUOUS_POLICIES
    assert config.LENGTH_POLICIES == dna.LENGTH_POLICIES


def test_reverse_complement():
    forward = dna.one_hot(["AACGN"], ["r"], 5)
    np.testing.assert_array_equal(dna.reverse_complement(forward), dna.one_hot(["NCGTT"], ["r"], 5))


# ------------------------------------------------------------------------------------------------ motifs


def test_motifs_are_deterministic_and_labels_are_the_planted_sites():
    small = {"num_train": 40, "num_validation": 10, "num_test": 10, "sequence_length": 80}
    a, b, c = load("motifs", **small), load("motifs", **small), load("motifs", **small, seed=1)
    assert a["train"]["sequence"] == b["train"]["sequence"] and a["train"]["labels"] == b["train"]["labels"]
    assert a["train"]["sequence"] != c["train"]["sequence"]
    assert a["train"].features["labels"].feature.names == [f"motif{i}" for i in range(5)]
    names, pwms = dna.planted_motifs()
    agreement = []
    for row in a["train"]:
        assert row["labels"] == sorted(set(row["site_motif"]))
        for m, start, strand in zip(row["site_motif"], row["site_start"], row["site_strand"]):
            site = dna.one_hot([row["sequence"][start : start + len(pwms[m])]], ["s"], len(pwms[m]))
            site = dna.reverse_complement(site)[0] if strand == "-" else site[0]
            agreement.append(float((site * pwms[m]).sum(axis=1).mean()))  # P(planted base) under the PWM
    assert (
        len(agreement) > 20 and np.mean(agreement) > 0.6
    )  # sites are drawn from their PWMs (0.25 if random)
    label_sets = {len(r) for r in a["train"]["labels"]}
    assert max(label_sets) >= 2 and 0 in label_sets  # several labels per sequence, and none


def test_motifs_label_rates_and_soft_masking():
    data = load("motifs", num_train=2000, num_validation=10, num_test=10)["train"]
    rates = multilabel.multi_hot(data["labels"], 5).mean(axis=0)
    assert np.all((rates > 0.25) & (rates < 0.35)), rates
    assert any(s != s.upper() for s in data["sequence"]) and any("N" in s for s in data["sequence"])


def test_save_motifs_writes_meme(tmp_path):
    names, pwms = dna.planted_motifs(num_motifs=2)
    meme, _ = dna.save_motifs(tmp_path, names, pwms)
    text = meme.read_text()
    assert "MOTIF motif0" in text and "MOTIF motif1" in text and f"w= {len(pwms[0])}" in text


# ------------------------------------------------------------------------------------------ FASTA folder


def export(folder, data, names, drop_label=None, extra_label=None):
    folder.mkdir()
    table = {}
    for split in ("train", "test"):
        dna.write_fasta(folder / f"{split}.fa.gz", list(zip(data[split]["id"], data[split]["sequence"])))
        table.update(zip(data[split]["id"], data[split]["labels"]))
    if drop_label:
        table.pop(drop_label)
    if extra_label:
        table[extra_label] = [0]
    dna.write_label_table(folder / "labels.tsv", names, table)
    return folder


def test_fasta_folder_round_trip(tmp_path):
    data = load("motifs", num_train=50, num_validation=5, num_test=20, sequence_length=60)
    names = data["train"].features["labels"].feature.names
    loaded = load(f"fasta:{export(tmp_path / 'set', data, names)}")
    assert set(loaded) == {"train", "validation", "test"}
    assert loaded["test"]["sequence"] == [s.upper() for s in data["test"]["sequence"]]
    assert loaded["test"]["labels"] == data["test"]["labels"]
    assert len(loaded["train"]) + len(loaded["validation"]) == 50 and len(loaded["validation"]) == 5
    assert loaded["train"].features["labels"].feature.names == names


def test_fasta_folder_label_mismatches(tmp_path):
    data = load("motifs", num_train=20, num_validation=5, num_test=5, sequence_length=60)
    names = data["train"].features["labels"].feature.names
    with pytest.raises(UserError, match="names 1 sequence.*first 'chr9:100-160'"):
        load(f"fasta:{export(tmp_path / 'a', data, names, extra_label='chr9:100-160')}")
    with pytest.raises(UserError, match="record 'test_3' of .*test.fa.gz has no row"):
        load(f"fasta:{export(tmp_path / 'b', data, names, drop_label='test_3')}")
    with pytest.raises(UserError, match="no such folder"):
        load(f"fasta:{tmp_path / 'missing'}")


# ------------------------------------------------------------------------------------------------- hub


def write_parquet(path, columns):
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_parquet(path)


def test_genomic_benchmarks_from_a_local_mirror(tmp_path, monkeypatch):
    repo = tmp_path / "katarinagresova" / "Genomic_Benchmarks_human_nontata_promoters"
    write_parquet(
        repo / "train-00000-of-00001.parquet", {"seq": ["acgt" * 5, "TTTT" * 5] * 10, "label": [1, 0] * 10}
    )
    write_parquet(repo / "test-00000-of-00001.parquet", {"seq": ["GGGG" * 5, "ACGT" * 5], "label": [0, 1]})
    monkeypatch.setenv("ZOO_HUB_MIRROR", str(tmp_path))
    for name in (
        "genomic-benchmarks:human_nontata_promoters",
        "hub:katarinagresova/Genomic_Benchmarks_human_nontata_promoters",
    ):
        data = load(name)
        assert {k: len(v) for k, v in data.items()} == {"train": 18, "validation": 2, "test": 2}
        assert data["train"].features["labels"].feature.names == ["human_nontata_promoters"]
        assert data["test"]["labels"] == [[], [0]] and data["test"]["sequence"][1] == "ACGT" * 5
    with pytest.raises(UserError, match="no pinned revision is known.*@main"):
        load("genomic-benchmarks:human_enhancers_cohn")
    with pytest.raises(UserError, match="unknown Genomic Benchmarks set 'nope'"):
        load("genomic-benchmarks:nope")


def test_nucleotide_transformer_tasks_from_a_local_mirror(tmp_path, monkeypatch):
    repo = tmp_path / "InstaDeepAI" / "nucleotide_transformer_downstream_tasks_revised"
    for task, labels in (("promoter_all", [0, 1, 1, 0]), ("enhancers_types", [0, 1, 2, 1])):
        for split in ("train", "test"):
            rows = len(labels) * (5 if split == "train" else 1)
            write_parquet(
                repo / task / f"{split}.parquet",
                {
                    "sequence": ["ACGTAC"] * rows,
                    "name": [f"{task}_{split}_{i}" for i in range(rows)],
                    "label": (labels * 5)[:rows],
                    "task": [task] * rows,
                },
            )
    monkeypatch.setenv("ZOO_HUB_MIRROR", str(tmp_path))
    binary = load("nt:promoter_all")
    assert binary["train"].features["labels"].feature.names == ["promoter_all"]
    assert binary["test"]["labels"] == [[], [0], [0], []] and binary["test"]["id"][0] == "promoter_all_test_0"
    three = load("nt:enhancers_types")  # three classes become three one-vs-rest labels
    assert three["train"].features["labels"].feature.names == ["class0", "class1", "class2"]
    assert three["test"]["labels"] == [[0], [1], [2], [1]]
    with pytest.raises(UserError, match="no task 'splice_sites_all'; it has enhancers_types, promoter_all"):
        load("nt:splice_sites_all")


# ------------------------------------------------------------------------------------------------- task


def test_prepare_checks_labels_and_lengths():
    data = load("motifs", num_train=20, num_validation=5, num_test=5, sequence_length=60)
    splits, state = multilabel.prepare(data, config(sequence_length=60))
    assert splits["train"]["sequence"].shape == (20, 60, 4) and splits["train"]["labels"].shape == (20, 5)
    assert state["label_names"] == [f"motif{i}" for i in range(5)]
    with pytest.raises(UserError, match="pass --set num_labels=5"):
        multilabel.prepare(data, config(sequence_length=60, num_labels=3))
    with pytest.raises(UserError, match="sequence 'train_0' has 60 bases; the model reads 80"):
        multilabel.prepare(data, config(sequence_length=80))
    cropped, _ = multilabel.prepare(data, config(sequence_length=50, length_policy="center"))
    assert cropped["test"]["sequence"].shape == (5, 50, 4)


def test_metrics_auroc_auprc_per_label_and_mean():
    labels = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 0], [0, 0, 0]], np.float32)
    perfect = np.where(labels > 0, 3.0, -3.0)
    result = multilabel.metrics({"logits": perfect}, {"labels": labels})
    assert result["auroc"] == 1.0 and result["auprc"] == 1.0
    assert np.isnan(result["auroc_1"])  # a label with one class has no AUROC and stays out of the means
    inverted = multilabel.metrics({"logits": -perfect}, {"labels": labels})
    assert inverted["auroc"] == 0.0 and inverted["loss"] > result["loss"]


def test_check_batch_names_the_shape():
    with pytest.raises(ValueError, match=r"\(B, 50, 4\); the model expects \(B, 200, 4\)"):
        multilabel.check_batch(config(), {"sequence": np.zeros((2, 50, 4), np.float32)})


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("", "holds no records"),
        (
            ">chr2:10-210\n" + "ACGY" * 50 + "\n",
            "sequence 'chr2:10-210' has the IUPAC code 'Y' at position 4",
        ),
        (">chr3:1-150\n" + "ACGT" * 37 + "AC\n", "sequence 'chr3:1-150' has 150 bases; the model reads 200"),
    ],
)
def test_train_cli_bad_fasta_is_one_line_exit_2(tmp_path, bad, needle):
    good = load("motifs", num_train=20, num_validation=5, num_test=5)
    names = good["train"].features["labels"].feature.names
    folder = export(tmp_path / "set", good, names)
    (folder / "test.fa.gz").unlink()
    (folder / "test.fa").write_text(bad)
    records = dna.read_fasta(folder / "test.fa") if bad else []
    table = {r: [0] for r, _ in records}
    table.update({r: lab for r, lab in zip(good["train"]["id"], good["train"]["labels"])})
    dna.write_label_table(folder / "labels.tsv", names, table)
    proc = run_tool(
        "tools/train.py",
        "zoo/bio/danq",
        "--fw",
        "torch",
        "--data",
        f"fasta:{folder}",
        "--out",
        str(tmp_path / "run"),
        cwd=ROOT,
        timeout=300,
    )
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "run").exists()
