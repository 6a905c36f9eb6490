"""Trained parity (shared/parity/, tools/crosscheck.py --train): a short lockstep run of every model,
the search for the first divergence, and the reports written into the cards and the top README."""

import json

import pytest

from shared.crosscheck import no_dropout
from shared.parity import engine, report, verdict
from tests.conftest import assert_one_line_error, run_tool
from tests.test_trainer_parity import closed_formula
from zoo import registry

SHORT_STEPS, SHORT_EARLY_STEPS = 16, 8  # float32 steps; float64 steps before them (the CLI's default: 20)


def failures(result: dict) -> str:
    failed = [
        f"{c['name']}: {c['max_error']:.3e} > {c['tolerance']:.2g} ({c['detail']})"
        for c in result["checks"]
        if not c["passed"]
    ]
    return "\n".join(failed + [json.dumps(result["first_divergence"], default=str)[:2000]])


@pytest.mark.parametrize("name", registry.list_models())
def test_short_parity(name, frameworks):
    """A few dozen steps of the smoke recipe, dropout off: the twins stay in lockstep, so one seed's final
    metrics are comparable (with dropout, one seed's metrics differ by the dropout masks' luck)."""
    spec = registry.get(name)
    config = no_dropout(spec, spec.config(**spec.smoke_config))
    result = engine.run_parity(
        spec, config, steps=SHORT_STEPS, seeds=1, smoke=True, early_steps=SHORT_EARLY_STEPS
    )
    assert result["passed"], failures(result)
    records = result["runs"][0]["records"]
    assert [r["step"] for r in records] == list(range(SHORT_STEPS))
    # Both optimizers held the schedule's rate (torch's param group, Keras' variable), and the schedule is
    # its formula, written out in tests/test_trainer_parity.py (not read back from lr_at).
    for r in records:
        expected = closed_formula(config, r["step"], SHORT_STEPS)
        assert r["lr_torch"] == pytest.approx(expected, rel=1e-12)
        assert r["lr_keras"] == pytest.approx(expected, rel=1e-7)  # a float32 variable
    assert all(r["grad_norm_torch"] > 0 and r["grad_norm_keras"] > 0 for r in records)
    assert len(result["early_runs"][0]["records"]) == SHORT_EARLY_STEPS
    assert set(result["metrics"]) >= {spec.task_module.PRIMARY_METRIC}


def test_an_injected_gradient_bug_is_found_at_its_step_and_layer(frameworks):
    """A Keras gradient scaled from step 5 on: both the float64 and the float32 run part at step 5, and the
    float64 probe at identical weights names that tensor alone."""
    spec = registry.get("vision/cnn")
    config = spec.config(**spec.smoke_config, optimizer="sgd")  # any optimizer: the bug is in a gradient
    bug = engine.Injection(step=5, tensor="layer2.0.conv1.weight", scale=1.5)
    result = engine.run_parity(spec, config, steps=7, seeds=1, smoke=True, early_steps=7, inject=bug)
    for run in result["early_runs"] + result["runs"]:
        found = run["first_divergence"]
        assert (found["parted_at"], found["step"], found["layer"]) == (5, 5, bug.tensor), found
        assert [name for name, _ in found["beyond"]] == [bug.tensor]  # the only tensor that differs
    assert not result["passed"]
    assert not next(c for c in result["checks"] if c["name"] == "float64_gradients_where_runs_part")["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.list_models())
def test_full_parity(name, frameworks):
    """The recipe's whole run on the model's own data, 3 seeds (what tools/parity_all.py puts in the cards)."""
    spec = registry.get(name)
    result = engine.run_parity(spec, spec.config(), seeds=3)
    assert result["passed"], failures(result)


def record(step, parted=False, probe=None):
    out = {
        "step": step,
        "loss_torch": 1.0,
        "loss_keras": 1.0 + (1e-3 if parted else 1e-7),
        "grad_error": 1e-6,
        "grad_error_at": "w",
    }
    return out | ({"probe": probe} if probe else {})


def probe(step, layer=None):
    return {
        "step": step,
        "forward_differs": False,
        "loss_error": 1e-7,
        "gradient_error": 0.1 if layer else 1e-6,
        "beyond": [[layer, 0.1]] if layer else [],
        "layer": layer,
        "parameter_error": 2e-6,
        "parameter_error_at": "w",
    }


def test_first_divergence_is_the_first_probe_that_differs():
    assert verdict.first_divergence([record(0), record(1)], "float32") is None
    records = [
        record(0),
        record(1),
        record(2, True, probe(2)),
        record(3, True, probe(3, "b")),
        record(4, True, probe(4, "b")),
    ]
    found = verdict.first_divergence(records, "float32")
    assert (found["parted_at"], found["step"], found["layer"]) == (2, 3, "b")
    assert not verdict.probe_check([None, found]).passed
    quiet = verdict.first_divergence([record(0, True, probe(0)), record(1, True, probe(1))], "float32")
    assert quiet["step"] is None and "update" in quiet["cause"]
    assert verdict.probe_check([quiet]).passed


def test_curve_band_and_metric_tolerance():
    losses = [2.0 - 0.01 * i for i in range(100)]
    same = [{"loss_torch": v, "loss_keras": v} for v in losses]
    assert verdict.curve_band(same)[0] == 0.0
    higher = [{"loss_torch": v, "loss_keras": 1.1 * v} for v in losses]
    assert verdict.curve_band(higher)[0] == pytest.approx(0.1 / 1.1)
    runs = [
        {"test": {"torch": {"accuracy": t}, "keras": {"accuracy": k}}}
        for t, k in ((0.90, 0.91), (0.94, 0.93), (0.92, 0.92))
    ]
    m = verdict.metric_summary(runs)["accuracy"]
    assert m["torch"]["mean"] == pytest.approx(0.92) and m["torch"]["std"] == pytest.approx(0.02)
    pooled = ((0.02**2 + 0.01**2) / 2) ** 0.5  # keras values have std 0.01
    assert m["tolerance"] == pytest.approx(verdict.METRIC_SPREAD * pooled)  # larger than 1% of 0.92
    assert verdict.metric_summary(runs[:1])["accuracy"]["tolerance"] is None  # one seed: reported, not judged
    same = [{"test": {"torch": {"accuracy": 0.9}, "keras": {"accuracy": 0.9}}}] * 2
    assert verdict.metric_summary(same)["accuracy"]["tolerance"] == pytest.approx(verdict.METRIC_FLOOR * 0.9)


def fake_report(model: str, accuracy: float = 0.9) -> dict:
    checks = [
        {
            "name": "early_loss_first_20_steps_float64",
            "max_error": 3e-9,
            "tolerance": 1e-7,
            "passed": True,
            "detail": "dropout off",
        }
    ]
    metrics = {
        "accuracy": {
            "torch": {"mean": accuracy, "std": 0.0, "values": [accuracy]},
            "keras": {"mean": accuracy + 0.002, "std": 0.0, "values": [accuracy + 0.002]},
            "difference": 0.002,
            "tolerance": 0.009,
        }
    }
    return {
        "model": model,
        "data": "digits",
        "smoke": True,
        "steps": 24,
        "steps_per_epoch": 44,
        "seeds": [0],
        "config": {"batch_size": 32, "optimizer": "adamw", "lr": 0.002, "schedule": "cosine"},
        "primary_metric": "accuracy",
        "passed": True,
        "checks": checks,
        "metrics": metrics,
        "tolerances": {"early_steps": 20},
        "first_divergence": None,
        "tier1": {
            "passed": True,
            "count": 15,
            "failed": [],
            "max_error": 8e-5,
            "max_error_check": "gradients",
        },
        "runs": [
            {
                "train_seconds": {"torch": 1.0, "keras": 9.0},
                "records": [{"loss_torch": 2.0, "loss_keras": 2.0 + 1e-6}],
            }
        ],
        "threads": 1,
        "versions": {"torch": "2", "keras": "3"},
        "command": "python tools/crosscheck.py zoo/vision/cnn --train",
        "created": "2026-01-02T03:04:05+00:00",
        "machine": "cpu",
        "git_commit": "abc",
    }


def test_card_section_is_replaced_in_place(tmp_path):
    card = report.card_path("vision/cnn", tmp_path)
    card.parent.mkdir(parents=True)
    card.write_text("# ResNet\n\n## Parity (tier 1)\nhand-written\n\n## License\nApache-2.0\n")
    report.update_card(fake_report("vision/cnn", 0.8), tmp_path)
    first = card.read_text()
    assert first.startswith(
        "# ResNet\n\n## Parity (tier 1)\nhand-written\n\n## License\nApache-2.0\n\n"
        f"{report.CARD_HEADING}\n\n{report.CARD_START}\n"
    )
    report.update_card(fake_report("vision/cnn", 0.9), tmp_path)
    text = card.read_text()
    assert text.count(report.CARD_HEADING) == 1 and len(text) == len(first) and "| 0.8000 ±" not in text
    assert "| early_loss_first_20_steps_float64 | 3.00e-09 | 1e-07 | PASS |" in text
    assert report.read_summary(card)["torch_mean"] == 0.9


def test_summary_table_between_markers(tmp_path):
    for model in ("nlp/seq2seq", "vision/cnn"):
        report.card_path(model, tmp_path).parent.mkdir(parents=True)
    report.update_card(fake_report("vision/cnn"), tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# Zoo\n\nintro\n")
    report.update_summary(readme, tmp_path, models=["nlp/seq2seq", "vision/cnn"])
    text = readme.read_text()
    assert text.startswith("# Zoo\n\nintro\n\n## Parity\n\n" + report.TABLE_START)
    assert (
        "| vision/cnn | digits (smoke) | 24 × 1 | accuracy | 0.9000 ± 0.0000 | 0.9020 ± 0.0000 | +0.0020 "
        "| 8.0e-05 | PASS | 2026-01-02 |" in text
    )
    assert "| nlp/seq2seq |" in text and "not run" in text
    readme.write_text(text + "\n## After\nkept\n")
    report.update_card(fake_report("nlp/seq2seq", 0.5), tmp_path)
    report.update_summary(readme, tmp_path, models=["nlp/seq2seq", "vision/cnn"])
    again = readme.read_text()
    assert (
        again.count(report.TABLE_START) == 1 and "not run" not in again and again.endswith("## After\nkept\n")
    )


def test_train_options_without_train_are_a_usage_error():
    proc = run_tool("tools/crosscheck.py", "zoo/vision/cnn", "--steps", "5")
    assert_one_line_error(proc, "--train")


def test_tier1_summary_takes_the_worst_agreement_check():
    """A check that passes by showing a difference (error above its tolerance) is not an agreement error."""
    from shared.crosscheck import Check

    checks = [
        Check("forward", 3e-7, 1e-5, True, ""),
        Check("strands_differ", 2e-2, 1e-4, True, "must differ"),
        Check("round_trip", 0.0, 0.0, True, "bitwise"),
    ]
    summary = verdict.tier1_summary(checks)
    assert (summary["max_error"], summary["max_error_check"], summary["passed"]) == (3e-7, "forward", True)
    failed = verdict.tier1_summary(checks + [Check("gradients", 5e-3, 1e-6, False, "")])
    assert (
        failed["max_error_check"] == "gradients"
        and failed["failed"] == ["gradients"]
        and not failed["passed"]
    )
