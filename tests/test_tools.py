"""Tools and flags with no other test: `tools/hub.py show`, `tools/crosscheck.py --train --seeds/--steps`,
tools/parity_all.py's commands and README table, tools/bench_perception.py."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from shared import hub
from tests.conftest import ROOT, assert_one_line_error, run_tool
from tests.test_hub import make_checkpoint
from tests.test_parity import fake_report


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))


def test_hub_show_prints_a_version_and_a_model(tmp_path, cache):
    ckpt = make_checkpoint(tmp_path / "run" / "checkpoint")
    store = str(tmp_path / "store")
    hub.push(ckpt, store)
    env = {"ZOO_CACHE": str(tmp_path / "cache")}
    version = run_tool("tools/hub.py", "show", f"{store}/vision-cnn/v1", env=env)
    assert version.returncode == 0, version.stderr
    shown = json.loads(version.stdout)
    assert (shown["name"], shown["version"], shown["url"]) == ("vision-cnn", "v1", f"{store}/vision-cnn/v1")
    weights = ckpt / "weights.safetensors"
    assert shown["files"]["weights.safetensors"]["size"] == weights.stat().st_size
    assert shown["files"]["weights.safetensors"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    model = run_tool("tools/hub.py", "show", f"{store}/vision-cnn", env=env)
    assert model.returncode == 0, model.stderr
    assert list(json.loads(model.stdout)["versions"]) == ["v1"]
    missing = run_tool("tools/hub.py", "show", f"{store}/nlp-seq2seq", env=env)
    assert_one_line_error(missing, "has no model 'nlp-seq2seq'", "vision-cnn")


def test_crosscheck_train_runs_the_asked_seeds_and_steps(tmp_path):
    """--train --smoke --seeds 2 --steps 5 on the smallest model: 2 seeds of 5 lockstep steps, each with its
    float64 early window, judged and written to --out."""
    out = tmp_path / "parity"
    proc = run_tool(
        "tools/crosscheck.py",
        "zoo/recsys/mf",
        "--train",
        "--smoke",
        "--seeds",
        "2",
        "--steps",
        "5",
        "--threads",
        "1",
        "--out",
        str(out),
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "parity.json").read_text())
    assert result["seeds"] == [0, 1] and result["steps"] == 5 and result["passed"]
    assert [len(r["records"]) for r in result["runs"]] == [5, 5]
    assert [len(r["records"]) for r in result["early_runs"]] == [5, 5]
    assert "final_rmse" in {c["name"] for c in result["checks"]}  # 2 seeds: the final metric is judged
    assert (out / "parity.md").is_file()


def test_parity_all_runs_each_model_and_tabulates_the_cards(tmp_path, monkeypatch, capsys):
    """Each model's crosscheck command carries the flags; the outcome of each process is printed; the
    README table is rebuilt from the cards (here a temporary checkout's)."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import parity_all

    from shared.parity import report

    commands = []
    codes = {"zoo/vision/cnn": 0, "zoo/recsys/mf": 1, "zoo/nlp/seq2seq": 3}

    def fake_run(command, cwd):
        commands.append(command)
        model = command[2]
        if codes[model] == 0:  # what crosscheck --update-card writes
            report.update_card(fake_report(model.removeprefix("zoo/")), tmp_path)
        return subprocess.CompletedProcess(command, codes[model])

    for name in ("vision/cnn", "recsys/mf", "nlp/seq2seq"):
        report.card_path(name, tmp_path).parent.mkdir(parents=True)
    (tmp_path / "README.md").write_text("# Zoo\n")
    monkeypatch.setattr(parity_all.subprocess, "run", fake_run)
    update = report.update_summary
    monkeypatch.setattr(report, "update_summary", lambda models: update(root=tmp_path, models=models))
    models = "vision/cnn,recsys/mf,nlp/seq2seq"
    code = parity_all.main(["--models", models, "--smoke", "--steps", "7", "--seeds", "2", "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 1
    assert [c[2] for c in commands] == ["zoo/vision/cnn", "zoo/recsys/mf", "zoo/nlp/seq2seq"]
    for c in commands:
        flags = " ".join(c[3:])
        assert "--train --update-card --seeds 2" in flags and "--steps 7" in flags and "--threads 1" in flags
        assert c[-1] == "--smoke" and f"--out runs/parity/{c[2][4:].replace('/', '-')}" in flags
    assert "PASS  vision/cnn" in printed and "FAIL  recsys/mf" in printed
    assert "ERROR (exit 3); its card keeps the previous row nlp/seq2seq" in printed
    table = (tmp_path / "README.md").read_text()
    assert "| vision/cnn | digits (smoke) | 24 × 1 | accuracy |" in table
    assert "| recsys/mf |" in table and "not run" in table


def test_parity_all_refuses_bad_counts():
    assert_one_line_error(
        run_tool("tools/parity_all.py", "--seeds", "0", "--table-only"), "--seeds and --steps"
    )


def test_bench_perception_prints_one_figure_per_framework_and_batch_size():
    proc = run_tool(
        "tools/bench_perception.py",
        "--batch-sizes",
        "1,2",
        "--warmup",
        "1",
        "--seconds",
        "0",
        "--min-batches",
        "2",
        "--threads",
        "1",
        "--set",
        "image_height=32",
        "--set",
        "image_width=64",
        "--json",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(f["framework"], f["batch_size"]) for f in figures] == [
        (fw, bs) for fw in ("keras", "torch") for bs in (1, 2)
    ]
    for f in figures:
        assert f["model"] == "driving/perception" and f["image"] == "32x64" and f["threads"] == 1
        assert f["batches_timed"] >= 2 and f["frames_per_second"] == pytest.approx(
            f["batch_size"] / f["ms_per_batch"] * 1000
        )
