"""tools/summary.py: the side-by-side print of `make train`, and --record writing the card and README."""

import json

from tests.conftest import assert_one_line_error, run_tool


def fake_run(folder, model, fw, rmse, other_rmse=None):
    (folder / "checkpoint").mkdir(parents=True)
    result = {
        "model": model,
        "framework": fw,
        "data": "planted-ratings",
        "test": {"loss": 0.1, "rmse": rmse, "mae": rmse - 0.05},
        "steps": 120,
        "train_seconds": 12.3,
        "epoch_seconds": [6.0, 6.3],
        "checkpoint": str(folder / "checkpoint"),
        "curves": str(folder / "curves.png"),
        "tensorboard": str(folder / "tensorboard"),
    }
    (folder / "result.json").write_text(json.dumps(result))
    (folder / "checkpoint" / "config.json").write_text(json.dumps({"model": model, "config": {"epochs": 2}}))
    if other_rmse is not None:
        other = "keras" if fw == "torch" else "torch"
        cross = {"framework": other, "metrics": {"loss": 0.1, "rmse": other_rmse}}
        (folder / f"evaluated-in-{other}.json").write_text(json.dumps(cross))
    return folder


def test_record_writes_card_block_and_readme_table(tmp_path):
    root = tmp_path / "checkout"
    (root / "zoo" / "recsys" / "mf").mkdir(parents=True)
    (root / "README.md").write_text("# Zoo\n\nintro\n")
    (root / "zoo" / "recsys" / "mf" / "README.md").write_text("# MF\n\nhand-written text\n")
    torch_run = fake_run(tmp_path / "mf-torch", "recsys/mf", "torch", 0.2693, other_rmse=0.2694)
    keras_run = fake_run(tmp_path / "mf-keras", "recsys/mf", "keras", 0.2701)

    printed = run_tool("tools/summary.py", str(torch_run), str(keras_run))
    assert printed.returncode == 0, printed.stderr
    assert "rmse 0.2693" in printed.stdout and "rmse 0.2701" in printed.stdout

    for _ in range(2):  # recording again replaces the block instead of adding one
        proc = run_tool("tools/summary.py", str(torch_run), str(keras_run), "--record", "--root", str(root))
        assert proc.returncode == 0, proc.stderr
    card = (root / "zoo" / "recsys" / "mf" / "README.md").read_text()
    assert card.startswith("# MF\n\nhand-written text") and card.count("<!-- results:start -->") == 1
    assert "| torch | planted-ratings | 2 | 120 | 12 | rmse 0.2693, mae 0.2193 | keras: rmse 0.2694 |" in card
    assert "| keras | planted-ratings | 2 | 120 | 12 | rmse 0.2701, mae 0.2201 | not run |" in card
    readme = (root / "README.md").read_text()
    assert readme.count("<!-- results-table:start -->") == 1
    assert "| [recsys/mf](zoo/recsys/mf) | planted-ratings | rmse | 0.2693 | 0.2701 |" in readme
    assert "| [vision/cnn](zoo/vision/cnn) | mnist-5k | accuracy | not recorded | not recorded |" in readme


def test_record_refuses_runs_of_two_models_and_missing_results(tmp_path):
    a = fake_run(tmp_path / "a", "recsys/mf", "torch", 0.27)
    b = fake_run(tmp_path / "b", "recsys/neumf", "torch", 0.27)
    proc = run_tool("tools/summary.py", str(a), str(b), "--record", "--root", str(tmp_path))
    assert_one_line_error(proc, "one model")
    proc = run_tool("tools/summary.py", str(tmp_path))
    assert_one_line_error(proc, "no result.json")
