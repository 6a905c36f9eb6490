"""tools/bench.py: one tiny CPU run measures the plain loop, the trainer and the ratio in both frameworks
(Keras in a child process on its PyTorch backend) and writes its JSON; --write-docs renders a result
file into its own block of docs/PERFORMANCE.md and leaves the other blocks alone; usage errors are one
line. tools/gpu_check.sh dry-runs on the CPU with TensorFlow hidden (slow)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ROOT, assert_one_line_error, run_tool

LOADTEST_BLOCK = "<!-- performance:start -->\nfigures of tools/loadtest.py\n<!-- performance:end -->"


def test_a_tiny_cpu_run_measures_plain_loop_and_trainer_in_both_frameworks(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_tool("tools/bench.py", "recsys/mf", "--smoke", "--keras-backend", "torch", "--steps", "2",
                    "--repeats", "1", "--warmup", "1", "--threads", "1", "--json", str(out),
                    env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["tool"] == "tools/bench.py" and data["command"].startswith("python tools/bench.py recsys/mf")
    assert data["omp_wait_policy"] == "PASSIVE" and data["threads"] == 1 and "torch" in data["versions"]
    rows = {r["framework"]: r for r in data["results"]}
    assert set(rows) == {"torch", "keras"} and data["other"] == []
    assert rows["torch"]["backend"] == "torch" and rows["keras"]["backend"] == "torch"  # Keras' backend
    for row in rows.values():
        assert row["examples_per_s"] > 0 and row["trainer"]["examples_per_s"] > 0
        ratio = row["trainer"]["examples_per_s"] / row["examples_per_s"]
        assert row["trainer_over_plain"] == round(ratio, 3)
        assert row["peer"]["name"] is None and row["peer"]["why"]  # no matrix-factorisation peer
        assert row["trainer"]["host_input_examples_per_s"] > 0  # the host's side of the input, alone
    assert "keras (torch) / torch trainer, fp32" in proc.stdout

    docs = tmp_path / "PERFORMANCE.md"
    docs.write_text(f"# Performance\n\n{LOADTEST_BLOCK}\n")
    rendered = run_tool("tools/bench.py", "--write-docs", str(out), "--docs", str(docs))
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    text = docs.read_text()
    assert LOADTEST_BLOCK in text and "## Training throughput" in text
    block = text[text.index("<!-- training-throughput:start -->") :]
    assert data["command"] in block and data["date"] in block and "OMP_WAIT_POLICY=PASSIVE" in block
    keras_line = next(line for line in block.splitlines() if line.startswith("| recsys/mf | smoke | keras"))
    cells = [c.strip() for c in keras_line.strip("|").split("|")]
    assert cells[3] == "torch" and cells[9] == f"{rows['keras']['trainer_over_plain']:.2f}"
    keras_over_torch = rows["keras"]["trainer"]["examples_per_s"] / rows["torch"]["trainer"]["examples_per_s"]
    assert cells[13] == f"{keras_over_torch:.2f}"
    assert "; host input alone " in cells[14] and cells[14].endswith(" ex/s"), cells[14]
    again = run_tool("tools/bench.py", "--write-docs", str(out), "--docs", str(docs))
    assert again.returncode == 0 and docs.read_text() == text  # the block is replaced, not appended


@pytest.mark.parametrize(
    "args,needle",
    [
        (["vision/cnn", "--precision", "fp8"], "--precision must list"),
        (["vision/cnn", "--keras-backend", "mxnet"], "--keras-backend must list"),
        (["zoo/nlp/seq2seq", "--preset", "resnet18-224"], "--preset resnet18-224 is a config of"),
        (["vision/cnn", "--set", "nope=1"], "nope"),
        (["vision/cnn", "--write-docs", "x.json"], "--write-docs reads result files"),
    ],
)
def test_usage_errors_are_one_line_and_write_nothing(args, needle, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_tool("tools/bench.py", *args, "--json", str(out))
    assert_one_line_error(proc, needle)
    assert not out.exists()


@pytest.mark.slow
def test_gpu_check_dry_runs_on_the_cpu_with_tensorflow_hidden(tmp_path):
    """ALLOW_CPU=1 tools/gpu_check.sh: every section on tiny sizes (torch.compile left out), TensorFlow
    unimportable as on the GPU machine; the twins pass and every bench file renders."""
    import subprocess

    hidden = tmp_path / "hide_tf"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text('import sys\nsys.modules["tensorflow"] = None\n')
    out = tmp_path / "out"
    env = {**os.environ, "ALLOW_CPU": "1", "OUT": str(out), "PYTHONPATH": str(hidden), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(ROOT / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:]
    sections = json.loads((out / "sections.json").read_text())
    assert [s["section"] for s in sections] == ["twins", "literal-torch", "literal-keras", "resnet18-torch",
                                                "resnet18-torch-cl", "resnet18-keras-jax", "small",
                                                "resnet18-keras-torch"]  # fmt: skip
    twins = json.loads((out / "twins.json").read_text())["rows"]
    assert twins and all(r["passed"] for r in twins)
    small = json.loads((out / "bench-small.json").read_text())
    for fw in ("torch", "keras"):
        assert {r["model"] for r in small["results"] if r["framework"] == fw} >= {
            "vision/cnn",
            "nlp/seq2seq",
        }, fw
    assert not any(s.get("timed_out") for s in sections), sections
    for name in ("bench-resnet18-torch", "bench-resnet18-torch-cl", "bench-resnet18-keras-jax",
                 "bench-resnet18-keras-torch", "bench-small"):  # fmt: skip
        assert json.loads((out / f"{name}.json").read_text())["results"], name
    literal = {r["command"]: r for r in json.loads((out / "literal.json").read_text())}
    torch_run = literal["python tools/train.py zoo/nlp/seq2seq --fw torch --gpus 0"]
    assert torch_run["rc"] == 0 and torch_run["steps"] > 0
    assert "rc" in literal["python tools/train.py zoo/nlp/seq2seq --fw keras --gpus 0"]
    docs = tmp_path / "PERFORMANCE.md"
    rendered = run_tool("tools/bench.py", "--write-docs", *sorted(str(p) for p in out.glob("bench-*.json")),
                        "--docs", str(docs))  # fmt: skip
    assert (
        rendered.returncode == 0 and "| vision/cnn | resnet18-224 image_size=32 | torch |" in docs.read_text()
    )
