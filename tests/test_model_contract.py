"""What every model of the zoo promises, checked for each one from data in its spec.py: bad configs are
refused in one line (through the library and the training CLI), and, for the translation models,
step-by-step decoding computes teacher forcing while padding and future tokens change nothing."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from shared.errors import UserError
from tests.conftest import assert_one_line_error, run_tool
from zoo import registry

SPECS = [registry.get(name) for name in registry.list_models()]
BAD = [(spec.name, overrides, message) for spec in SPECS for overrides, message in spec.bad_configs]
TRANSLATION = [spec.name for spec in SPECS if spec.task == "translation"]


def test_every_model_lists_bad_configs():
    assert all(spec.bad_configs for spec in SPECS), [s.name for s in SPECS if not s.bad_configs]


@pytest.mark.parametrize("name,overrides,message", BAD, ids=[f"{n}-{'-'.join(o)}" for n, o, _ in BAD])
def test_a_bad_config_is_refused_in_one_line(name, overrides, message):
    with pytest.raises(UserError, match=message) as refused:
        registry.get(name).config(**overrides)
    assert "\n" not in str(refused.value)


def set_flag(key: str, value) -> list[str]:
    text = json.dumps(list(value)) if isinstance(value, tuple | list) else str(value)
    return ["--set", f"{key}={text}"]


@pytest.mark.parametrize("name", [spec.name for spec in SPECS])
def test_the_training_cli_refuses_a_bad_config_before_writing(name, tmp_path):
    overrides, message = registry.get(name).bad_configs[0]
    flags = [arg for key, value in overrides.items() for arg in set_flag(key, value)]
    out = tmp_path / "run"
    proc = run_tool("tools/train.py", f"zoo/{name}", "--fw", "torch", *flags, "--out", str(out), timeout=300)
    line = assert_one_line_error(proc)
    assert re.search(message, line), line
    assert not out.exists()


def quiet_config(spec):
    """The smoke config with every dropout at 0 (decoding runs in eval mode; training mode would differ)."""
    config = spec.config(**spec.smoke_config)
    zero = {
        f.name: 0.0 for f in dataclasses.fields(config) if "dropout" in f.name and f.type in (float, "float")
    }
    return spec.config(**{**spec.smoke_config, **zero})


@pytest.mark.parametrize("name", TRANSLATION)
def test_step_by_step_decoding_equals_teacher_forcing(name, frameworks):
    """encode + decode_step (what greedy and beam search run) computes what call() computes in training."""
    spec = registry.get(name)
    task = spec.task_module
    config = quiet_config(spec)
    batch = spec.example_batch(config, batch_size=3, seed=5)
    batch["tgt_mask"][:] = True  # the decoder reads every position, as during decoding
    for model in spec.build_twins(config):
        step, forced = task.stepper(spec, model), spec.forward(model, batch)
        memory, state = step.encode(batch["src"], batch["src_mask"])
        for t in range(batch["tgt_in"].shape[1]):
            logits, state, attention = step.step(memory, state, batch["tgt_in"][:, t])
            np.testing.assert_allclose(logits, forced["logits"][:, t], atol=1e-5, err_msg=f"step {t}")
            if attention is not None:
                if "attention" in forced:  # (B, T, S): the weights each step read
                    np.testing.assert_allclose(attention, forced["attention"][:, t], atol=1e-6)
                np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
                assert np.all(attention[~batch["src_mask"]] == 0.0)  # no attention on padding


@pytest.mark.parametrize("name", TRANSLATION)
def test_padding_and_future_tokens_change_nothing(name, frameworks):
    """Three more padded source positions holding a real word id, and new target tokens from position t
    on, leave the logits of the real positions before t unchanged in both twins; later ones do change."""
    spec = registry.get(name)
    config = quiet_config(spec)
    batch = spec.example_batch(config, batch_size=3, seed=2)
    changed = dict(batch)
    changed["src"] = np.pad(batch["src"], ((0, 0), (0, 3)), constant_values=7)
    changed["src_mask"] = np.pad(batch["src_mask"], ((0, 0), (0, 3)), constant_values=False)
    changed["src"][~changed["src_mask"]] = 7  # a word id where padding was
    t = 3
    changed["tgt_in"] = batch["tgt_in"].copy()
    changed["tgt_in"][:, t:] = (batch["tgt_in"][:, t:] + 5) % config.tgt_vocab_size
    real = batch["tgt_mask"].copy()
    real[:, t:] = False
    for model in spec.build_twins(config):
        before, after = spec.forward(model, batch)["logits"], spec.forward(model, changed)["logits"]
        np.testing.assert_allclose(after[real], before[real], atol=1e-5)
        assert np.abs(after[:, t:] - before[:, t:]).max() > 1e-3  # the check can fail
