"""nlp/seq2seq: the GRU gate map, masking, teacher forcing vs step-by-step decoding, and the CLIs' bad input."""

import numpy as np
import pytest

from shared import checkpoint
from shared.crosscheck import check_forward, check_gradients, no_dropout
from shared.crosscheck_decoding import decoding_checks
from shared.errors import UserError
from shared.models import load_model
from shared.recipe import config_to_dict
from shared.tasks import translation as task
from tests.conftest import assert_one_line_error, run_tool
from zoo import registry

SPEC = registry.get("nlp/seq2seq")
SMALL = {
    "src_vocab_size": 40,
    "tgt_vocab_size": 50,
    "embedding_dim": 8,
    "hidden_size": 12,
    "attention_dim": 10,
}


def twins(config, seed=0):
    """A torch twin and a Keras twin holding the same weights."""
    import keras
    import torch

    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    torch_model, keras_model = SPEC.build("torch", config), SPEC.build("keras", config)
    SPEC.set_weights(keras_model, SPEC.get_weights(torch_model))
    return torch_model, keras_model


def test_keras_gru_computes_torch_gru_after_the_gate_reorder(frameworks):
    """The weight map's GRU transforms, checked on the frameworks' own bidirectional GRUs over padded input."""
    keras, torch = frameworks
    from zoo.nlp.seq2seq.weights import GRU_BIAS, GRU_KERNEL

    torch.manual_seed(0)
    reference = torch.nn.GRU(3, 4, batch_first=True, bidirectional=True)
    layer = keras.layers.Bidirectional(
        keras.layers.GRU(4, return_sequences=True, return_state=True, reset_after=True)
    )
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    mask = np.array([[True] * 5, [True] * 3 + [False] * 2])
    layer(x, mask=mask)
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    for cell, suffix in ((layer.forward_layer.cell, ""), (layer.backward_layer.cell, "_reverse")):
        cell.kernel.assign(GRU_KERNEL.from_canonical([state[f"weight_ih_l0{suffix}"]])[0])
        cell.recurrent_kernel.assign(GRU_KERNEL.from_canonical([state[f"weight_hh_l0{suffix}"]])[0])
        cell.bias.assign(
            GRU_BIAS.from_canonical([state[f"bias_ih_l0{suffix}"], state[f"bias_hh_l0{suffix}"]])[0]
        )
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.tensor([5, 3]), batch_first=True
    )
    with torch.no_grad():
        out, final = reference(packed)
    out = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)[0].numpy()  # (B, 5, 2H)
    k_out, k_forward, k_backward = (np.asarray(keras.ops.convert_to_numpy(t)) for t in layer(x, mask=mask))
    np.testing.assert_allclose(k_out[mask], out[mask], atol=1e-6)
    np.testing.assert_allclose(
        np.concatenate([k_forward, k_backward], -1), torch.cat([final[0], final[1]], -1).numpy(), atol=1e-6
    )


def test_gru_transforms_round_trip_bitwise():
    from zoo.nlp.seq2seq.weights import GRU_BIAS, GRU_KERNEL

    rng = np.random.default_rng(1)
    kernel, bias = rng.normal(size=(7, 12)).astype(np.float32), rng.normal(size=(2, 12)).astype(np.float32)
    assert np.array_equal(GRU_KERNEL.from_canonical(GRU_KERNEL.to_canonical([kernel]))[0], kernel)
    assert np.array_equal(GRU_BIAS.from_canonical(GRU_BIAS.to_canonical([bias]))[0], bias)
    weight_ih = GRU_KERNEL.to_canonical([kernel])[0]  # (3H, in): torch's r block first, Keras' z block first
    assert np.array_equal(weight_ih[:4], kernel[:, 4:8].T) and np.array_equal(weight_ih[4:8], kernel[:, :4].T)


@pytest.mark.parametrize(
    "overrides",
    [
        {"bidirectional": False, "encoder_layers": 2, "decoder_layers": 2},
        {"bidirectional": True, "encoder_layers": 2, "decoder_layers": 1},
    ],
)
def test_other_shapes_match_across_frameworks(frameworks, overrides):
    config = SPEC.config(**SMALL, **overrides)
    torch_model, keras_model = twins(config)
    checks = check_forward(SPEC, config, torch_model, keras_model, "torch_to_keras", batch_sizes=(3,))
    quiet = no_dropout(SPEC, config)
    checks += check_gradients(SPEC, quiet)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]


def test_decoding_is_identical_in_both_twins(frameworks):
    checks = decoding_checks(SPEC, SPEC.config(**SMALL), sources=4, beam_size=3)
    assert [c.name for c in checks] == ["greedy_decoding_identical", "beam_decoding_identical"]
    assert all(c.passed for c in checks), checks


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, frameworks):
    """An untrained checkpoint (tokenizers trained on a few numbers): enough for the bad-input paths."""
    from shared.data import load

    config = SPEC.config(**SMALL, max_src_len=24)
    _, state = task.prepare(
        load("numbers-en-fr", train_size=200, validation_size=5, test_size=5, max_number=999), config
    )
    torch_model, _ = twins(config)
    folder = tmp_path_factory.mktemp("s2s") / "checkpoint"
    checkpoint.save(
        folder,
        model_name=SPEC.name,
        config=config_to_dict(config),
        weights=SPEC.get_weights(torch_model),
        meta={"framework": "torch"},
        extra_files=task.checkpoint_files(state),
    )
    return folder


def test_predict_prints_identical_translations_in_both_frameworks(small_checkpoint, capsys):
    from shared.tasks import load_state

    printed = {}
    for fw in ("torch", "keras"):
        spec, config, model, ckpt = load_model(small_checkpoint, fw)
        state = load_state(spec, ckpt)
        task.predict(
            spec, model, config, state, ["three hundred and twelve", "çà ☃"], {"beam": "3", "nbest": "2"}
        )
        printed[fw] = capsys.readouterr().out
    assert printed["torch"] == printed["keras"] and printed["torch"].count("\n") == 4
    assert "unknown source token" in printed["torch"]
    with pytest.raises(UserError, match="unknown option"):
        task.predict(spec, model, config, state, ["twelve"], {"beams": "3"})
    with pytest.raises(UserError, match="nbest <= beam"):
        task.predict(spec, model, config, state, ["twelve"], {"beam": "2", "nbest": "3"})


@pytest.mark.slow
def test_predict_cli_errors_are_one_line(small_checkpoint, tmp_path):
    too_long = " ".join(["seven"] * 30)
    proc = run_tool("tools/predict.py", str(small_checkpoint), "--fw", "keras", "   ")
    assert_one_line_error(proc, "empty source")
    proc = run_tool("tools/predict.py", str(small_checkpoint), "--fw", "torch", too_long)
    assert_one_line_error(proc, "max_src_len=24")
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in small_checkpoint.iterdir():
        if path.name != "tokenizer.json":
            (broken / path.name).write_bytes(path.read_bytes())
    proc = run_tool("tools/predict.py", str(broken), "--fw", "torch", "twelve")
    assert_one_line_error(proc, "tokenizer.json")
