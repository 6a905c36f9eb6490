"""nlp/transformer: masks, the fused in-projection map, torch.nn.Transformer and keras-hub compatibility, step
decoding against teacher forcing, attention maps, label smoothing and the schedule, bad input, and the Keras
twin on the PyTorch backend."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from shared.crosscheck import run_tier1
from shared.tasks import translation as task
from tests.conftest import ROOT
from zoo import registry

SPEC = registry.get("nlp/transformer")
SMALL = {
    "src_vocab_size": 30,
    "tgt_vocab_size": 40,
    "d_model": 16,
    "num_heads": 4,
    "num_encoder_layers": 2,
    "num_decoder_layers": 2,
    "ffn_dim": 24,
    "max_src_len": 12,
    "max_tgt_len": 10,
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


def assert_all_pass(checks):
    failed = [f"{c.name}: {c.max_error:.3e} > {c.tolerance:.0e} ({c.detail})" for c in checks if not c.passed]
    assert not failed, "\n".join(failed)


@pytest.mark.slow  # about a minute of CPU each (tier 1 plus both decoding searches in both twins)
@pytest.mark.parametrize(
    "overrides",
    [
        {"norm_first": True, "positions": "learned", "tie_output_projection": False, "activation": "gelu"},
        {"num_heads": 1, "num_encoder_layers": 1, "num_decoder_layers": 3, "dropout": 0.0},
    ],
    ids=["pre-ln-learned-untied-gelu", "one-head-asymmetric-no-dropout"],
)
def test_tier1_other_configurations(overrides, frameworks):
    assert_all_pass(run_tier1(SPEC, SPEC.config(**{**SMALL, **overrides}), batch_sizes=(1, 3)))


def test_fused_in_projection_is_query_key_value_stacked():
    """torch's in_proj_weight is [Wq; Wk; Wv], each (out, in); Keras' kernels are (in, heads, head_dim)."""
    from zoo.nlp.transformer.weights import fused_in_bias, fused_in_projection, output_projection

    config = SPEC.config(**SMALL)
    e, h, d = config.d_model, config.num_heads, config.head_dim
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(e, h, d)).astype(np.float32) for _ in range(3))
    (fused,) = fused_in_projection(config).to_canonical([q, k, v])
    x = rng.normal(size=(e,)).astype(np.float32)
    # Head 2's query from the fused torch weight equals Keras' einsum "i,ihd->hd" at head 2.
    np.testing.assert_allclose(
        (fused @ x)[2 * d : 3 * d], np.einsum("i,ihd->hd", x, q)[2], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        (fused @ x)[2 * e : 3 * e], np.einsum("i,ihd->hd", x, v).reshape(-1), rtol=1e-5, atol=1e-6
    )
    back = fused_in_projection(config).from_canonical([fused])
    assert all(np.array_equal(a, b) for a, b in zip(back, (q, k, v)))
    biases = [rng.normal(size=(h, d)).astype(np.float32) for _ in range(3)]
    (bias,) = fused_in_bias(config).to_canonical(biases)
    assert bias.shape == (3 * e,) and np.array_equal(bias[e : 2 * e], biases[1].reshape(-1))
    out = rng.normal(size=(h, d, e)).astype(np.float32)
    (weight,) = output_projection(config).to_canonical([out])
    heads = rng.normal(size=(h, d)).astype(np.float32)
    np.testing.assert_allclose(
        weight @ heads.reshape(-1), np.einsum("hd,hde->e", heads, out), rtol=1e-5, atol=1e-5
    )


def test_torch_twin_loads_torch_nn_transformer_and_computes_the_same(frameworks):
    """The encoder and decoder of a batch_first, pre-LN nn.Transformer load by name and give its outputs."""
    _, torch = frameworks
    config = SPEC.config(**SMALL, norm_first=True, dropout=0.0)
    torch.manual_seed(0)
    reference = torch.nn.Transformer(
        config.d_model,
        config.num_heads,
        config.num_encoder_layers,
        config.num_decoder_layers,
        config.ffn_dim,
        dropout=0.0,
        batch_first=True,
        norm_first=True,
        layer_norm_eps=config.layer_norm_epsilon,
    ).eval()
    model = SPEC.build("torch", config).eval()
    state = reference.state_dict()
    for part in ("encoder", "decoder"):
        getattr(model, part).load_state_dict(
            {k[len(part) + 1 :]: v for k, v in state.items() if k.startswith(part)}
        )
    batch = SPEC.example_batch(config, batch_size=3, seed=1)
    src_mask, tgt_mask = torch.from_numpy(batch["src_mask"]), torch.from_numpy(batch["tgt_mask"])
    x_src = torch.randn(*batch["src"].shape, config.d_model)
    x_tgt = torch.randn(*batch["tgt_in"].shape, config.d_model)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(x_tgt.shape[1], dtype=torch.bool)
    with torch.no_grad():
        expected = reference(
            x_src,
            x_tgt,
            tgt_mask=causal,
            src_key_padding_mask=~src_mask,
            tgt_key_padding_mask=~tgt_mask,
            memory_key_padding_mask=~src_mask,
        )
        memory, _ = model.encoder(x_src, src_mask)
        found, _ = model.decoder(x_tgt, memory, tgt_mask, src_mask)
    np.testing.assert_allclose(found.numpy(), expected.numpy(), atol=2e-5)


def test_attention_maps_agree_and_are_masked(frameworks):
    config = SPEC.config(**SMALL)
    batch = SPEC.example_batch(config, batch_size=3, seed=4)
    maps = [
        SPEC.impl(fw).attention_maps(model, batch) for fw, model in zip(("torch", "keras"), twins(config))
    ]
    for kind in ("encoder_self", "decoder_self", "cross"):
        assert maps[0][kind].shape == maps[1][kind].shape
        np.testing.assert_allclose(maps[1][kind], maps[0][kind], atol=1e-5)
    t_map = maps[0]
    s, t = batch["src"].shape[1], batch["tgt_in"].shape[1]
    assert t_map["cross"].shape == (config.num_decoder_layers, 3, config.num_heads, t, s)
    np.testing.assert_allclose(t_map["cross"].sum(-1), 1.0, atol=1e-5)
    future = np.triu(np.ones((t, t), bool), 1)  # (T, T) True where key j > query i
    assert np.all(t_map["decoder_self"][..., future] == 0.0)
    padded_keys = ~batch["src_mask"][None, :, None, None, :]  # (1, B, 1, 1, S)
    for kind in ("encoder_self", "cross"):
        assert np.all(np.where(padded_keys, t_map[kind], 0.0) == 0.0)


KERAS_HUB_NAMES = {  # keras_impl layer -> keras_hub.layers.TransformerEncoder / TransformerDecoder sublayer
    "encoder": {
        "self_attn": "self_attention_layer",
        "norm1": "self_attention_layer_norm",
        "linear1": "feedforward_intermediate_dense",
        "linear2": "feedforward_output_dense",
        "norm2": "feedforward_layer_norm",
    },
    "decoder": {
        "self_attn": "self_attention",
        "norm1": "self_attention_layer_norm",
        "multihead_attn": "cross_attention",
        "norm2": "cross_attention_layer_norm",
        "linear1": "feedforward_intermediate_dense",
        "linear2": "feedforward_output_dense",
        "norm3": "feedforward_layer_norm",
    },
}


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-ln", "pre-ln"])
def test_keras_layers_compute_what_keras_hub_computes(norm_first, frameworks):
    """The Keras twin's EncoderLayer / DecoderLayer, given keras-hub's weights, give keras-hub's outputs."""
    keras, _ = frameworks
    import keras_hub

    config = SPEC.config(**SMALL, norm_first=norm_first, activation="gelu")
    model = SPEC.build("keras", config)
    batch = SPEC.example_batch(config, batch_size=3, seed=5)
    x = keras.random.normal((3, batch["tgt_in"].shape[1], config.d_model), seed=1)
    memory = keras.random.normal((3, batch["src"].shape[1], config.d_model), seed=2)
    options = dict(
        intermediate_dim=config.ffn_dim,
        num_heads=config.num_heads,
        dropout=config.dropout,
        activation=config.activation,
        layer_norm_epsilon=config.layer_norm_epsilon,
        normalize_first=norm_first,
    )
    encoder, decoder = (
        keras_hub.layers.TransformerEncoder(**options),
        keras_hub.layers.TransformerDecoder(**options),
    )
    src_mask, tgt_mask = batch["src_mask"], batch["tgt_mask"]
    expected = [
        encoder(memory, padding_mask=src_mask, training=False),
        decoder(
            x,
            memory,
            decoder_padding_mask=tgt_mask,
            encoder_padding_mask=src_mask,
            use_causal_mask=True,
            training=False,
        ),
    ]
    for part, reference in (("encoder", encoder), ("decoder", decoder)):
        ours = getattr(model, part).layers[0]
        for name, hub_name in KERAS_HUB_NAMES[part].items():
            source = {
                v.path.split(f"/{hub_name}/", 1)[1]: v for v in reference.weights if f"/{hub_name}/" in v.path
            }
            target = [v for v in ours.weights if f"/{name}/" in v.path]
            assert len(target) == len(source) > 0, (part, name)
            for v in target:
                v.assign(source[v.path.split(f"/{name}/", 1)[1]])
    found = [
        model.encoder.layers[0](memory, keras.ops.convert_to_tensor(src_mask))[0],
        model.decoder.layers[0](
            x, memory, keras.ops.convert_to_tensor(tgt_mask), keras.ops.convert_to_tensor(src_mask)
        )[0],
    ]
    for f, e in zip(found, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(f), keras.ops.convert_to_numpy(e), atol=1e-5)


def test_label_smoothing_is_the_papers_over_real_tokens(frameworks):
    """loss = mean over real target tokens of -sum_v q(v) log p(v), q = (1 - e) one-hot + e / V, in both twins."""
    keras, torch = frameworks
    from shared.metrics import log_softmax
    from zoo.nlp.transformer import keras_impl, torch_impl

    config = SPEC.config(**SMALL, label_smoothing=0.1)
    batch = SPEC.example_batch(config, batch_size=4, seed=6)
    logits = (
        np.random.default_rng(0)
        .normal(size=(*batch["tgt_out"].shape, config.tgt_vocab_size))
        .astype(np.float32)
    )
    logp = log_softmax(logits)
    q = np.full(logp.shape, 0.1 / config.tgt_vocab_size)
    np.put_along_axis(q, batch["tgt_out"][..., None], 0.9 + 0.1 / config.tgt_vocab_size, axis=-1)
    per_token = -(q * logp).sum(-1)
    expected = per_token[batch["tgt_mask"]].mean()
    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    k = {k: keras.ops.convert_to_tensor(v) for k, v in batch.items()}
    found_torch = float(torch_impl.compute_loss({"logits": torch.from_numpy(logits)}, t, config))
    found_keras = float(
        keras.ops.convert_to_numpy(
            keras_impl.compute_loss({"logits": keras.ops.convert_to_tensor(logits)}, k, config)
        )
    )
    assert found_torch == pytest.approx(expected, rel=1e-5)
    assert found_keras == pytest.approx(expected, rel=1e-5)


def test_recipe_is_warmup_then_inverse_square_root():
    from shared.train.schedule import lr_at

    config = SPEC.config()
    assert (config.schedule, config.optimizer, config.adam_beta2, config.adam_epsilon) == (
        "inverse_sqrt",
        "adam",
        0.98,
        1e-9,
    )
    assert config.label_smoothing == 0.1
    w = config.warmup_steps
    assert lr_at(config, w // 2 - 1, 10**6) == pytest.approx(config.lr * 0.5)  # linear warm-up
    assert lr_at(config, w - 1, 10**6) == pytest.approx(config.lr)  # the peak
    assert lr_at(config, 4 * w - 1, 10**6) == pytest.approx(config.lr / 2)  # then lr * sqrt(w / step)


def test_a_source_longer_than_the_positions_is_refused(frameworks):
    config = SPEC.config(**{**SMALL, "max_src_len": 5, "positions": "learned"})
    batch = SPEC.example_batch(SPEC.config(**SMALL), batch_size=2, seed=0)  # a 8-token source
    for model in twins(config):  # config.py raises ValueError (standard library only)
        with pytest.raises(ValueError, match="max_src_len=5"):
            SPEC.forward(model, batch)
    config = SPEC.config(**{**SMALL, "max_tgt_len": 4})
    for model in twins(config):
        with pytest.raises(ValueError, match="max_tgt_len=4"):
            SPEC.forward(model, batch)


def test_attention_pngs_are_written(frameworks, tmp_path):
    from shared.data import load
    from zoo.nlp.transformer.attention import write_attention_maps

    config = SPEC.config(**{**SMALL, "src_vocab_size": 64, "tgt_vocab_size": 64})
    _, state = task.prepare(
        load("numbers-en-fr", train_size=200, validation_size=5, test_size=5, max_number=999), config
    )
    for fw, model in zip(("torch", "keras"), twins(config)):
        paths = write_attention_maps(SPEC, model, config, state, ["three hundred and twelve"], tmp_path / fw)
        assert [p.name for p in paths] == [
            f"attention_00_{k}.png" for k in ("encoder_self", "decoder_self", "cross")
        ]
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


KERAS_ON_TORCH = """
import json, os, sys
sys.path.insert(0, {root!r})
import keras
assert keras.backend.backend() == "torch", keras.backend.backend()
from shared.crosscheck import run_tier1
from zoo import registry
spec = registry.get("nlp/transformer")
# grad_clip_norm=0: shared/crosscheck.py hands Keras numpy gradients, which Keras' global-norm clipping
# cannot scale on this backend (the TensorFlow-backend tier 1 covers clipping).
config = spec.config(**{{**json.loads({overrides!r}), "grad_clip_norm": 0.0}})
checks = run_tier1(spec, config, batch_sizes=(1, 3))
print(json.dumps([c.as_dict() for c in checks]))
"""


@pytest.mark.slow  # a fresh interpreter per configuration: about a minute of CPU each
@pytest.mark.parametrize(
    "overrides",
    [{}, {"norm_first": True, "positions": "learned", "tie_output_projection": False}],
    ids=["post-ln", "pre-ln-learned-untied"],
)
def test_keras_twin_on_the_pytorch_backend(overrides):
    """KERAS_BACKEND=torch: the Keras twin passes tier 1 (forward both ways, gradients, steps, decoding)."""
    code = KERAS_ON_TORCH.format(root=str(ROOT), overrides=json.dumps({**SMALL, **overrides}))
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    checks = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {c["name"] for c in checks}
    assert {
        "forward_torch_to_keras_b3",
        "forward_keras_to_torch_b3",
        "gradients",
        "greedy_decoding_identical",
        "beam_decoding_identical",
    } <= names
    failed = [f"{c['name']}: {c['max_error']:.3e} ({c['detail']})" for c in checks if not c["passed"]]
    assert not failed, "\n".join(failed)
    assert max(c["max_error"] for c in checks if c["name"].startswith("forward")) <= 1e-5
    assert math.isfinite(max(c["max_error"] for c in checks))
