"""bio/danq: the LSTM bias design, reverse-complement averaging, checks that can fail, FASTA prediction in
both twins, and interpretation against planted motifs. Tier 1 on the default config runs in test_tier1.py."""

import dataclasses
import json

import numpy as np
import pytest

from shared import checkpoint
from shared.crosscheck import check_forward, run_tier1
from shared.data import dna, load
from shared.errors import UserError
from shared.models import load_model
from shared.recipe import config_to_dict
from tests.conftest import ROOT, assert_one_line_error, run_tool
from zoo import registry
from zoo.bio.danq import interpret
from zoo.bio.danq.config import PAPER

SMALL = {
    "sequence_length": 48,
    "conv_filters": 6,
    "conv_kernel": 7,
    "pool_size": 5,
    "lstm_units": 5,
    "dense_units": 7,
    "num_labels": 3,
}


@pytest.fixture(scope="module")
def spec():
    return registry.get("bio/danq")


def test_torch_bias_hh_is_frozen_at_zero(spec, frameworks):
    from shared.train import torch_trainer

    _, torch = frameworks
    config = spec.config(**SMALL, conv_dropout=0.0, lstm_dropout=0.0)
    model = spec.build("torch", config)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"bilstm.bias_hh_l0", "bilstm.bias_hh_l0_reverse"}
    before = spec.get_weights(model)
    assert not before["bilstm.bias_hh_l0"].any() and not before["bilstm.bias_hh_l0_reverse"].any()
    units = config.lstm_units  # forget-gate bias starts at 1 (Keras' unit_forget_bias), other gates at 0
    np.testing.assert_array_equal(before["bilstm.bias_ih_l0"][units : 2 * units], 1.0)
    optimizer = torch_trainer.make_optimizer(model, config)
    assert (
        sum(p.numel() for g in optimizer.param_groups for p in g["params"])
        == sum(p.numel() for p in model.parameters()) - 2 * 4 * units
    )
    from shared.data.torch_data import to_tensors

    torch_trainer.train_step(
        spec.impl("torch"), model, optimizer, to_tensors(spec.example_batch(config, 4)), config
    )
    after = spec.get_weights(model)
    assert not after["bilstm.bias_hh_l0"].any()
    assert np.abs(after["bilstm.bias_ih_l0"] - before["bilstm.bias_ih_l0"]).max() > 0


def test_a_torch_lstm_with_both_biases_loads_into_keras_as_their_sum(spec, frameworks):
    config = spec.config(**SMALL)
    torch_model, keras_model = spec.build("torch", config), spec.build("keras", config)
    weights = spec.get_weights(torch_model)
    rng = np.random.default_rng(0)
    for name in ("bilstm.bias_hh_l0", "bilstm.bias_hh_l0_reverse"):  # as a torch LSTM trained elsewhere has
        weights[name] = rng.normal(size=weights[name].shape).astype(np.float32)
    spec.set_weights(torch_model, weights)
    spec.set_weights(keras_model, weights)
    batch = spec.example_batch(config, 3, seed=5)
    np.testing.assert_allclose(
        spec.forward(keras_model, batch)["logits"], spec.forward(torch_model, batch)["logits"], atol=1e-5
    )
    exported = spec.get_weights(keras_model)
    np.testing.assert_allclose(
        exported["bilstm.bias_ih_l0"], weights["bilstm.bias_ih_l0"] + weights["bilstm.bias_hh_l0"], atol=1e-6
    )
    assert not exported["bilstm.bias_hh_l0"].any()


@pytest.mark.slow
def test_tier1_passes_on_a_non_default_config(spec, frameworks):
    config = spec.config(
        **SMALL,
        rc_average=False,
        lstm_unit_forget_bias=False,
        n_encoding="uniform",
        optimizer="adam",
        grad_clip_norm=0.5,
        label_smoothing=0.1,
    )
    failed = [
        f"{c.name}: {c.max_error:.2e} ({c.detail})" for c in run_tier1(spec, config, (2,)) if not c.passed
    ]
    assert not failed, failed


def test_reverse_complement_checks_pass(spec, frameworks):
    checks = spec.extra_checks(spec, spec.config(**SMALL))
    assert {c.name for c in checks} >= {
        "rc_average_is_mean_of_strands_torch",
        "rc_average_strand_invariant_keras",
        "forward_torch_to_keras_rc_average_False_b2",
    }
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_a_reverse_without_complement_is_caught(spec, frameworks, monkeypatch):
    import keras

    import zoo.bio.danq.keras_impl as keras_impl

    monkeypatch.setattr(
        keras_impl, "reverse_complement", lambda x: keras.ops.flip(x, axis=1)
    )  # forgets A<->T
    failed = {c.name for c in spec.extra_checks(spec, spec.config(**SMALL)) if not c.passed}
    assert {"rc_average_is_mean_of_strands_keras", "rc_average_strand_invariant_keras"} <= failed
    assert not any(name.endswith("_torch") for name in failed)


def test_a_wrong_gate_order_is_caught(spec, frameworks, monkeypatch):
    import zoo.bio.danq.weights as weights
    from weightmap import Transform

    def swap_f_g(a):  # (4H, F): gate blocks i, f, g, o -> i, g, f, o
        i, f, g, o = np.split(a, 4)
        return np.concatenate([i, g, f, o])

    original = weights.weight_map
    wrong = Transform(
        "wrong_gates", lambda arrays: [swap_f_g(arrays[0].T)], lambda arrays: [swap_f_g(arrays[0]).T]
    )

    def broken(config):
        return [
            dataclasses.replace(r, transform=wrong) if r.canonical == ("bilstm.weight_ih_l0",) else r
            for r in original(config)
        ]

    monkeypatch.setattr(weights, "weight_map", broken)
    config = spec.config(**SMALL)
    checks = check_forward(
        spec, config, spec.build("torch", config), spec.build("keras", config), "t2k", (2,)
    )
    assert not checks[0].passed


def test_paper_sizes(spec, frameworks):
    config = spec.config(**PAPER)
    assert config.pooled_length == 75  # (1000 - 26 + 1) // 13
    model = spec.build("torch", config)
    assert model.dense.in_features == 75 * 640 and model.classifier.out_features == 919


# ------------------------------------------------------------------------------------------------ predict


def save_untrained(spec, fw, config, folder):
    model = spec.build(fw, config)
    state = {"kind": "dna_one_hot", "label_names": [f"motif{i}" for i in range(config.num_labels)]}
    checkpoint.save(
        folder,
        model_name=spec.name,
        config=config_to_dict(config),
        weights=spec.get_weights(model),
        meta={"framework": fw, "data": "motifs"},
        extra_files={"preprocessing.json": state},
    )
    return state


def test_predict_fasta_in_both_twins(spec, frameworks, tmp_path, capsys):
    config = spec.config(**SMALL, length_policy="center", ambiguous_bases="as_n")
    state = save_untrained(spec, "torch", config, tmp_path / "ckpt")
    fasta = tmp_path / "query.fa"
    fasta.write_text(">a\n" + "ACGT" * 12 + "\n>b soft-masked, IUPAC, shorter\n" + "acgtRYN" * 5 + "\n")
    tables = {}
    for fw in ("torch", "keras"):
        _, loaded_config, model, ckpt = load_model(tmp_path / "ckpt", fw)
        spec.task_module.predict(
            spec, model, loaded_config, state, [str(fasta)], {"out": str(tmp_path / f"{fw}.tsv")}
        )
        rows = (tmp_path / f"{fw}.tsv").read_text().splitlines()
        assert rows[0] == "id\tmotif0\tmotif1\tmotif2" and [r.split("\t")[0] for r in rows[1:]] == ["a", "b"]
        tables[fw] = np.array([[float(v) for v in r.split("\t")[1:]] for r in rows[1:]])
    np.testing.assert_allclose(tables["keras"], tables["torch"], atol=2e-4)
    assert np.all((tables["torch"] > 0) & (tables["torch"] < 1))
    strict = spec.config(**SMALL, ambiguous_bases="as_n")  # length_policy "error"
    with pytest.raises(UserError, match="sequence 'b' has 35 bases; the model reads 48"):
        spec.task_module.predict(spec, model, strict, state, [str(fasta)], {})


@pytest.mark.slow
def test_predict_cli_bad_record_is_one_line_exit_2(spec, frameworks, tmp_path):
    save_untrained(spec, "torch", spec.config(**SMALL), tmp_path / "ckpt")
    (tmp_path / "bad.fa").write_text(">ok\n" + "A" * 48 + "\n>chr7:55-103\n" + "ACGTW" + "A" * 43 + "\n")
    proc = run_tool(
        "tools/predict.py", str(tmp_path / "ckpt"), "--fw", "torch", str(tmp_path / "bad.fa"), cwd=ROOT
    )
    assert_one_line_error(proc, "sequence 'chr7:55-103' has the IUPAC code 'W' at position 5")


# ------------------------------------------------------------------------------------------ interpretation


def test_a_filter_built_from_a_planted_pwm_is_matched_to_it(tmp_path):
    names, planted = dna.planted_motifs()
    width, offset = 19, 3
    kernel = np.zeros((2, 4, width), np.float32)  # filter 0: motif0's log-odds at offset 3; filter 1: noise
    kernel[0, :, offset : offset + len(planted[0])] = np.log(planted[0] / 0.25).T
    kernel[1] = np.random.default_rng(0).normal(size=(4, width))
    weights = {"conv.weight": kernel, "conv.bias": np.array([-8.0, 0.0], np.float32)}
    data = load("motifs", num_train=10, num_validation=400, num_test=10)["validation"]
    sequences = dna.one_hot(data["sequence"], data["id"], 200)
    pwms, sites = interpret.filter_pwms(weights, sequences)
    assert pwms.shape == (2, width, 4) and sites[0] > 20  # plus-strand instances near the strongest
    r, found_offset, strand = interpret.motif_similarity(pwms[0], planted[0])
    assert r > 0.9 and found_offset == offset and strand == "+"
    r_minus, _, strand_minus = interpret.motif_similarity(pwms[0][::-1, ::-1], planted[0])
    assert r_minus > 0.9 and strand_minus == "-"
    assert interpret.motif_similarity(pwms[1], planted[0])[0] < 0.6
    report = interpret.match_filters(pwms, np.array([0.5, 0.1]), sites, names, planted, top=1, threshold=0.75)
    assert report["summary"]["top_filters_matching"] == 1 and report["summary"]["found"] == ["motif0"]
    assert (
        report["summary"]["rank_of_first_match"]["motif0"] == 1
        and report["summary"]["best_correlation"]["motif0"] > 0.9
    )

    from shared import plots

    plots.sequence_logos([pwms[0], planted[0]], ["filter 0", "motif0"], tmp_path / "logos.png")
    delta = np.random.default_rng(1).normal(size=(30, 4))
    plots.mutagenesis_map(delta, "ACGTN" * 6, tmp_path / "ism.png", "test", [(3, 13, "motif0 +")])
    assert (tmp_path / "logos.png").stat().st_size > 5000 and (tmp_path / "ism.png").stat().st_size > 5000


def test_mutagenesis_is_zero_at_the_reference_and_the_same_in_both_twins(spec, frameworks):
    config = spec.config(**SMALL)
    torch_model, keras_model = spec.build("torch", config), spec.build("keras", config)
    spec.set_weights(keras_model, spec.get_weights(torch_model))
    sequence = spec.example_batch(config, 1, seed=3)["sequence"][0]
    maps = [interpret.mutagenesis(spec, m, sequence, 1, 64) for m in (torch_model, keras_model)]
    assert maps[0].shape == (48, 4) and not maps[0][sequence > 0.5].any() and np.abs(maps[0]).max() > 0
    np.testing.assert_allclose(maps[1], maps[0], atol=1e-5)


@pytest.mark.slow
def test_interpret_cli_on_a_smoke_trained_checkpoint(spec, frameworks, tmp_path):
    from shared.train.run import train

    data = dict(spec.smoke_data)
    train(
        spec,
        spec.config(**spec.smoke_config),
        "torch",
        data="motifs",
        data_kwargs=data,
        out=tmp_path / "run",
        threads=1,
        progress=False,
    )
    summary = interpret.interpret(str(tmp_path / "run"), "keras", str(tmp_path / "out"), top=3, examples=1)
    assert summary["top"] == 3 and summary["planted_motifs"] == 5 and len(summary["mutagenesis"]) == 1
    for name in (
        "filters.png",
        "filters/motifs.meme",
        "planted/motifs.meme",
        "filter_matches.csv",
        "summary.json",
    ):
        assert (tmp_path / "out" / name).is_file(), name
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["framework"] == "keras"
