"""Exact resume: snapshots are atomic, verified and pickle-free; a session restored from one continues
bit for bit; a run killed with SIGKILL mid-epoch and resumed ends with the uninterrupted run's weights;
a worker killed under --max-restarts 1 finishes; bad --resume requests are one-line errors."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.data.iterator import BatchIterator
from shared.errors import UserError
from shared.recipe import config_to_dict
from shared.train import snapshot
from tests.conftest import ROOT, assert_one_line_error, run_tool, smoke_set_flags, wait_for
from zoo import registry

SPEC = registry.get("vision/cnn")
SMOKE = smoke_set_flags(SPEC)


def recipe(batch_size: int, snapshot_every: int) -> list[str]:
    return [
        *SMOKE,
        "--data",
        "digits",
        "--epochs",
        "2",
        "--batch-size",
        str(batch_size),
        "--threads",
        "1",
        "--no-progress",
        "--snapshot-every",
        str(snapshot_every),
        "--deterministic",
    ]


# The CI recipe: 2 epochs of 11 steps of 128 digits, a snapshot every 4 steps: 4, 8, 12, 16, 20 (12 and 16
# are in the 2nd epoch, mid-epoch). The slow restart test keeps 2 epochs of 44 steps (snapshots every 7).
RECIPE, STEPS_PER_EPOCH, SNAPSHOT_EVERY = recipe(128, 4), 11, 4
LONG_RECIPE, LONG_STEPS_PER_EPOCH = recipe(32, 7), 44
ENV = {"OMP_NUM_THREADS": "1"}


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# Snapshot files.


def test_snapshots_are_atomic_verified_and_replace_each_other(tmp_path):
    first = snapshot.write(tmp_path, {"w": np.arange(3.0), "count": np.array(7)}, {"step": 7, "epoch": 0})
    (tmp_path / "snapshots" / ".step-00000014.tmp-killed").mkdir()  # a writer killed mid-write
    second = snapshot.write(tmp_path, {"w": np.ones(3)}, {"step": 14, "epoch": 0})
    assert snapshot.latest(tmp_path) == second and not first.exists()
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == ["latest.json", "step-00000014"]
    arrays, state = snapshot.read(tmp_path)
    assert state["step"] == 14 and np.array_equal(arrays["w"], np.ones(3))
    again = snapshot.write(tmp_path, {"w": np.zeros(3)}, {"step": 14, "epoch": 1})  # an epoch end on step 14
    assert again != second and snapshot.read(tmp_path)[1]["epoch"] == 1
    assert {p.suffix for p in again.iterdir()} == {".safetensors", ".json"}
    zero_d = snapshot.write(tmp_path, {"count": np.array(7)}, {"step": 15})
    assert snapshot.read(tmp_path)[0]["count"].shape == () and zero_d.exists()


def test_damaged_snapshots_are_refused(tmp_path):
    assert snapshot.latest(tmp_path) is None
    with pytest.raises(UserError, match="holds no snapshots/latest.json"):
        snapshot.read(tmp_path)
    folder = snapshot.write(tmp_path, {"w": np.arange(4.0)}, {"step": 3})
    data = bytearray((folder / "state.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "state.safetensors").write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match its manifest"):
        snapshot.read(tmp_path)
    (tmp_path / "snapshots" / "latest.json").write_text("{trunc")
    with pytest.raises(UserError, match="latest.json is corrupted"):
        snapshot.read(tmp_path)
    (tmp_path / "snapshots" / "latest.json").write_text(json.dumps({"folder": "../elsewhere", "step": 3}))
    with pytest.raises(UserError, match="not a snapshot folder"):
        snapshot.read(tmp_path)


# A session restored from a capture continues exactly (in process, both frameworks). DanQ, because its
# dropout draws from the generators a snapshot must carry (torch's global RNG; Keras' SeedGenerator variables).

DROPOUT_SPEC = registry.get("bio/danq")


class Killed(Exception):
    pass


INIT: dict[str, dict] = {}


def run_session(fw: str, stop_at: int | None = None, resume_from=None, spec=DROPOUT_SPEC):
    """Train a smoke model for 2 epochs of 4 steps on fixed random data; stop_at: capture the state after
    that step and stop (as a kill would); resume_from: (arrays, json, step, epoch, batch) to continue from."""
    trainer = importlib.import_module(f"shared.train.{fw}_trainer")
    resumer = importlib.import_module(f"shared.train.{fw}_resume")
    config = spec.config(**{**spec.smoke_config, "epochs": 2, "batch_size": 16})
    iterator = BatchIterator(spec.example_batch(config, 64, seed=3), 16, seed=config.seed)
    session = trainer.Session(spec, config, trainer.setup(0, None, config.seed), total_steps=8)
    # The same start for every session: Keras' initialisers do not repeat within one process after
    # keras.utils.set_random_seed (separate processes do), so the canonical init is set explicitly.
    spec.set_weights(session.model, INIT.setdefault(f"{spec.name}-{fw}", spec.get_weights(session.model)))
    epoch, batch, captured = 0, 0, {}
    if resume_from is not None:
        arrays, state, session.step, epoch, batch = resume_from
        resumer.restore(session, arrays, state)

    def on_step(step, loss, lr):
        if session.step == stop_at:
            captured["state"] = resumer.capture(session)
            captured["draws"] = draws()
            raise Killed

    try:
        for e in range(epoch, 2):
            session.train_epoch(iterator, e, batch if e == epoch else 0, on_step, progress=False)
    except Killed:
        return captured
    return {"weights": spec.get_weights(session.model), "draws": draws(), "session": session}


def draws() -> list:
    """The next numbers of every host generator (the data order never reads them; torch's dropout does)."""
    import random

    import torch

    return [torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]]


def seed_states(session) -> list[np.ndarray]:
    """The Keras twin's SeedGenerator states (its dropout layers' generators)."""
    return [np.asarray(v) for v in session.model.variables if "seed_generator" in v.path]


def resume_differs(fw: str) -> list[str]:
    """Train whole, stop after step 6 (epoch 1, after its 2nd batch), resume: the weights that differ."""
    whole = run_session(fw)
    stopped = run_session(fw, stop_at=6)
    arrays, state = stopped["state"]
    resumed = run_session(fw, resume_from=(arrays, state, 6, 1, 2))
    return [n for n, v in whole["weights"].items() if not np.array_equal(v, resumed["weights"][n])], (
        whole,
        stopped,
        resumed,
    )


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_a_restored_session_continues_bit_for_bit(fw, frameworks):
    """Weights, optimizer state and the dropout generators come back: the resumed run's weights are bitwise
    the uninterrupted run's (DanQ drops 20% and 50% of its units, so a lost generator state shows)."""
    assert DROPOUT_SPEC.config(**DROPOUT_SPEC.smoke_config).lstm_dropout > 0
    differ, (whole, stopped, resumed) = resume_differs(fw)
    assert not differ, differ
    if fw == "torch":  # torch's, numpy's and Python's generators continue where the capture left them
        arrays, state = stopped["state"]
        importlib.import_module("shared.train.torch_resume").restore(resumed["session"], arrays, state)
        assert draws() == stopped["draws"]
    else:  # Keras keeps dropout RNG in SeedGenerator variables: they moved, and the resumed run's match
        ours, theirs = seed_states(resumed["session"]), seed_states(whole["session"])
        assert ours and len(ours) == len(theirs)
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_a_resume_that_loses_the_dropout_generators_is_caught(fw, frameworks, monkeypatch):
    """The check above can fail: a restore that leaves the dropout generators as a fresh session has them
    (torch: the global RNG; Keras: the SeedGenerator variables) continues to other weights."""
    resumer = importlib.import_module(f"shared.train.{fw}_resume")
    restore = resumer.restore
    if fw == "torch":
        import torch

        def forgetful(session, arrays, state):
            fresh = torch.get_rng_state()
            restore(session, arrays, state)
            torch.set_rng_state(fresh)

    else:

        def forgetful(session, arrays, state):
            fresh = [np.asarray(v) for v in session.model.variables if "seed_generator" in v.path]
            restore(session, arrays, state)
            for v, value in zip([v for v in session.model.variables if "seed_generator" in v.path], fresh):
                v.assign(value)

    monkeypatch.setattr(resumer, "restore", forgetful)
    differ, _ = resume_differs(fw)
    assert differ


# Bad --resume requests, refused before anything is touched.


def fake_run(folder: Path, **changes) -> Path:
    """A run folder holding one snapshot of a vision/cnn torch run, as run.py writes its state.json."""
    config = SPEC.config(**SPEC.smoke_config)
    state = {
        "model": "vision/cnn",
        "framework": "torch",
        "world_size": 1,
        "precision": "fp32",
        "config": json.loads(json.dumps(config_to_dict(config))),
        "data": "digits",
        "data_kwargs": {},
        "step": 7,
        "epoch": 0,
        "batch": 7,
        **changes,
    }
    folder.mkdir(parents=True)
    (folder / "steps.csv").write_text("step,loss,lr\n")
    snapshot.write(folder, {"model.conv1.weight": np.zeros((8, 1, 3, 3), np.float32)}, state)
    return folder


@pytest.mark.parametrize(
    "change,args,needles",
    [
        ({}, ["zoo/nlp/seq2seq", "--fw", "torch"], ["run of model 'vision/cnn'", "'nlp/seq2seq'"]),
        ({}, ["zoo/vision/cnn", "--fw", "keras"], ["run of framework 'torch'", "'keras'", "--fw"]),
        ({}, ["zoo/vision/cnn", "--fw", "torch", "--cpu-replicas", "2"], ["world_size 1", "asks for 2"]),
        ({}, ["zoo/vision/cnn", "--fw", "torch", "--lr", "0.5"], ["trained with lr=", "same settings"]),
        ({}, ["zoo/vision/cnn", "--fw", "torch", "--precision", "bf16"], ["precision 'fp32'", "--precision"]),
        (
            {"data": "mnist-5k"},
            ["zoo/vision/cnn", "--fw", "torch", "--data", "digits"],
            ["trained on mnist-5k"],
        ),
        ({}, ["zoo/vision/cnn", "--fw", "torch", "--out", "elsewhere"], ["drop --out elsewhere"]),
    ],
)
def test_bad_resume_requests_are_one_line_errors_and_touch_nothing(change, args, needles, tmp_path):
    run = fake_run(tmp_path / "run", **change)
    before = folder_digest(run)
    assert_one_line_error(run_tool("tools/train.py", *args, "--resume", str(run), env=ENV), *needles)
    assert folder_digest(run) == before


def test_corrupted_missing_and_finished_snapshots_are_refused(tmp_path):
    run = fake_run(tmp_path / "run")
    latest = snapshot.latest(run)
    data = bytearray((latest / "state.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (latest / "state.safetensors").write_bytes(bytes(data))
    before = folder_digest(run)
    proc = run_tool("tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--resume", str(run), env=ENV)
    assert_one_line_error(proc, "does not match its manifest", "cannot be resumed")
    assert folder_digest(run) == before
    proc = run_tool(
        "tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--resume", str(tmp_path / "nothing")
    )
    assert_one_line_error(proc, "no such run folder")
    finished = fake_run(tmp_path / "finished")
    (finished / "result.json").write_text("{}")
    proc = run_tool("tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--resume", str(finished), env=ENV)
    assert_one_line_error(proc, "that run finished")


# Real processes, killed.


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(c) for c in (task / "children").read_text().split()]
    return kids


def start(fw: str, out: Path, *extra: str, steps=RECIPE, paced: bool = False) -> subprocess.Popen:
    """tools/train.py in the background; paced: through tests/fixtures/paced_train.py (a pause after each
    logged step, so that a kill lands between chosen steps; the numbers are the same)."""
    env = {**os.environ, **ENV, "TF_CPP_MIN_LOG_LEVEL": "3", "ZOO_TEST_STEP_PAUSE": "0.25"}
    script = "tests/fixtures/paced_train.py" if paced else "tools/train.py"
    command = [sys.executable, script, "zoo/vision/cnn", "--fw", fw, *steps, "--out", str(out), *extra]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_mid_epoch(
    proc: subprocess.Popen, out: Path, snapshot_step: int, then: int = 2, timeout: float = 240
) -> int:
    """Wait (at most `timeout` seconds) until a snapshot at or past `snapshot_step` exists and `then` more
    steps were logged after it (work a kill throws away); returns the snapshot's step."""

    def reached():
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-3000:]}"
        try:
            step = json.loads((out / "snapshots" / "latest.json").read_text())["step"]
            logged = len((out / "steps.csv").read_text().splitlines()) - 1
        except (OSError, ValueError, KeyError):
            return None
        return step if step >= snapshot_step and logged >= step + then else None

    step = wait_for(reached, timeout, f"a snapshot at step {snapshot_step} in {out}")
    assert not (out / "result.json").exists()
    return step


def assert_steps_logged_once(out: Path, steps: int) -> None:
    rows = (out / "steps.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(steps))


def final_weights(run: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(run / "checkpoint" / "weights.safetensors"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(fw, tmp_path):
    """CPU, fp32, --deterministic: SIGKILL after a mid-epoch snapshot, then --resume: the final weights are
    bitwise those of an uninterrupted run (torch and Keras alike), every step is logged once, and the test
    metrics are equal."""
    whole = start(fw, tmp_path / "whole")
    killed = start(fw, tmp_path / "killed", paced=True)  # both at once: the machine has 2 cores
    step = wait_mid_epoch(killed, tmp_path / "killed", snapshot_step=3 * SNAPSHOT_EVERY)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert 0 < step % STEPS_PER_EPOCH and not (tmp_path / "killed" / "checkpoint").exists()
    logged = len((tmp_path / "killed" / "steps.csv").read_text().splitlines()) - 1
    assert logged > step  # the kill threw work away
    _, stderr = whole.communicate(timeout=300)
    assert whole.returncode == 0, stderr[-3000:]
    proc = run_tool(
        "tools/train.py",
        "zoo/vision/cnn",
        "--fw",
        fw,
        "--resume",
        str(tmp_path / "killed"),
        "--threads",
        "1",
        "--no-progress",
        "--snapshot-every",
        str(SNAPSHOT_EVERY),
        "--deterministic",
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = final_weights(tmp_path / "whole"), final_weights(tmp_path / "killed")
    assert sorted(a) == sorted(b)
    assert all(np.array_equal(a[k], b[k]) for k in a), max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    assert_steps_logged_once(tmp_path / "killed", 2 * STEPS_PER_EPOCH)
    results = [json.loads((tmp_path / r / "result.json").read_text())["test"] for r in ("whole", "killed")]
    assert results[0] == results[1]


@pytest.mark.slow
@pytest.mark.parametrize("fw,extra", [("torch", ["--cpu-replicas", "2"]), ("keras", [])])
def test_a_worker_killed_once_under_max_restarts_finishes(fw, extra, tmp_path):
    """torch: torchrun's elastic agent restarts the 2 workers; Keras: tools/train.py's supervisor restarts
    its process. Either way the run resumes from its last snapshot and logs every step once."""
    out = tmp_path / "run"
    proc = start(fw, out, "--max-restarts", "1", *extra, steps=LONG_RECIPE)
    wait_mid_epoch(proc, out, snapshot_step=14, then=3, timeout=1800)
    workers = children(proc.pid)  # torch: torchrun's workers; Keras: the supervised process
    assert len(workers) == (2 if fw == "torch" else 1)
    os.kill(workers[-1], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stderr[-3000:]
    assert json.loads((out / "result.json").read_text())["steps"] == 2 * LONG_STEPS_PER_EPOCH
    assert_steps_logged_once(out, 2 * LONG_STEPS_PER_EPOCH)
    if fw == "keras":
        assert "restarting from the last snapshot (1/1)" in stderr
