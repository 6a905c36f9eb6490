"""Issue 16: the CLIs tried as a careless or hostile user would. Nothing lost, nothing leaked, one clear line.

Each probe reproduces one failure the issue lists (data loss, leaks, tracebacks instead of one-line
errors) and checks the promise that replaced it: exit status 2, one line that names the problem and the
fix, and nothing written. Concurrent pushes are raced for real (separate processes released together)
against a local folder and S3 through moto's server; `make test` races each store 3 times, the slow test
20 times.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from shared import checkpoint, hub
from shared.errors import UserError
from shared.models import check_weights_fit, get_spec, load_model
from shared.recipe import config_to_dict
from tests.conftest import ROOT, assert_one_line_error, run_tool
from tests.test_hub import make_checkpoint, s3, s3_server, tree  # noqa: F401  (fixtures)

PREPROCESSING = {"kind": "image_standardize", "class_names": None, "mean": [0.5], "std": [0.25]}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints"


def write_cnn(folder: Path, data: str = "digits", **overrides) -> Path:
    """A vision/cnn checkpoint with the torch twin's initial weights (tiny: base_width 4, 8x8 images)."""
    spec = get_spec("vision/cnn")
    config = spec.config(base_width=4, image_size=8, **overrides)
    model = spec.build("torch", config)
    return checkpoint.save(
        folder,
        model_name=spec.name,
        config=config_to_dict(config),
        weights=spec.get_weights(model),
        meta={"framework": "torch", "data": data, "metrics": {"test": {"accuracy": 0.1}}},
        extra_files={"preprocessing.json": PREPROCESSING},
    )


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    return write_cnn(tmp_path_factory.mktemp("cnn") / "checkpoint")


@pytest.fixture
def ckpt(cnn, tmp_path) -> Path:
    """A private copy of the cnn checkpoint, free to damage."""
    return Path(shutil.copytree(cnn, tmp_path / "ckpt"))


def reseal(folder: Path) -> None:
    """Rewrite manifest.json so that it matches the folder's files again, as a forger would."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {
        p.name: {"sha256": checkpoint.sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.name != "manifest.json" and not p.is_symlink() and p.is_file()
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))


def first_line_is_the_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """The error is the first thing printed, and the only line of stderr."""
    assert_one_line_error(proc, *needles)
    assert proc.stderr.splitlines()[0].startswith("error: "), proc.stderr[:2000]


def poisoned_frameworks(tmp_path: Path) -> dict:
    """An environment in which importing torch, TensorFlow or Keras fails loudly: an error reported under it
    was found before any framework was set up."""
    poison = tmp_path / "poison"
    for name in ("torch", "tensorflow", "keras"):
        (poison / name).mkdir(parents=True, exist_ok=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} was imported')\n")
    return {"PYTHONPATH": str(poison)}


# ---------------------------------------------------------------- 1. --overwrite replaces only a run

TRAIN = [
    "tools/train.py",
    "zoo/vision/cnn",
    "--fw",
    "torch",
    "--set",
    "base_width=4",
    "--set",
    "image_size=8",
]


@pytest.mark.parametrize("overwrite", [True, False])
def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, overwrite):
    thesis = tmp_path / "thesis"
    (thesis / "figures").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("\\documentclass{book}")
    (thesis / "figures" / "plot.pdf").write_bytes(b"%PDF-1.4")
    before = tree(thesis)
    args = [*TRAIN, "--out", str(thesis), *(["--overwrite"] if overwrite else [])]
    line = assert_one_line_error(run_tool(*args, env=poisoned_frameworks(tmp_path)), "not a training run")
    assert tree(thesis) == before
    if not overwrite:
        assert "--overwrite" not in line  # the fix offered is another --out, never deleting the folder


def test_overwrite_replaces_a_recognisable_run_only(tmp_path):
    from shared.train.request import MARKER, RunSettings, check_request

    spec = get_spec("vision/cnn")
    config = spec.config(base_width=4, image_size=8)

    def check(folder: Path, overwrite: bool):
        check_request(spec, config, RunSettings("torch", folder, "digits", overwrite=overwrite))

    started = tmp_path / "started"  # a run killed early: only its marker and some logs
    started.mkdir()
    (started / MARKER).write_text(json.dumps({"model": "vision/cnn", "framework": "torch", "started": "now"}))
    (started / "steps.csv").write_text("step,loss,lr\n")
    finished = tmp_path / "finished"  # a run written before the marker existed
    finished.mkdir()
    (finished / "result.json").write_text(
        json.dumps({"model": "vision/cnn", "framework": "keras", "run": "x"})
    )
    for run in (started, finished):
        check(run, overwrite=True)
        with pytest.raises(UserError, match="exists and is not empty: pass another --out, --overwrite"):
            check(run, overwrite=False)
    link = tmp_path / "link"  # rmtree cannot replace a link: the folder itself must be named
    link.symlink_to(started)
    with pytest.raises(UserError, match="is a symbolic link"):
        check(link, overwrite=True)
    impostor = tmp_path / "impostor"  # a result.json of something else
    impostor.mkdir()
    (impostor / "result.json").write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(UserError, match="not a training run"):
        check(impostor, overwrite=True)


# ---------------------------------------------------------------- 8. --out checked before any setup


def read_only_folder(tmp_path: Path) -> Path | None:
    """A folder this process cannot write in: a chmod 555 one unless we are root (root writes anyway), or a
    read-only mount such as /proc/sys in a container."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    return next((Path(p) for p in ("/proc/sys", "/sys/kernel") if not os.access(p, os.W_OK)), None)


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only"])
def test_out_is_checked_before_any_setup(tmp_path, case):
    if case == "read-only":
        folder = read_only_folder(tmp_path)
        if folder is None:
            pytest.skip("no read-only folder here (running as root with every mount writable)")
        out, message = folder / "zoo-run", "cannot write in"
    else:
        (tmp_path / "notes.txt").write_text("mine")
        out = tmp_path / "notes.txt" if case == "a file" else tmp_path / "notes.txt" / "run"
        message = "is a file"
    proc = run_tool(*TRAIN, "--out", str(out), env=poisoned_frameworks(tmp_path))
    first_line_is_the_error(proc, "--out", message)
    assert (tmp_path / "notes.txt").read_text() == "mine" if case != "read-only" else not out.exists()


# ---------------------------------------------------------------- 2. concurrent pushes

DRIVER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from shared import hub
from shared.errors import UserError

source, url, options, version, ready, go = sys.argv[1:7]
Path(ready).touch()
while not Path(go).exists():  # released together with the other pushes
    time.sleep(0.0005)
try:
    entry = hub.push(source, url, version=version or None, options=json.loads(options))
    print(json.dumps({{"url": entry["url"]}}))
except UserError as err:
    print(json.dumps({{"error": str(err)}}))
"""


def race(tmp_path: Path, sources: list[Path], url: str, options: dict, version: str = "") -> list[dict]:
    """Push every source to `url` at the same moment, one process each; their results in order."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(root=str(ROOT)))
    gate = tmp_path / f"gate-{os.urandom(4).hex()}"
    gate.mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(s),
                url,
                json.dumps(options),
                version,
                str(gate / f"r{i}"),
                str(gate / "go"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, s in enumerate(sources)
    ]
    deadline = time.monotonic() + 120
    while len(list(gate.glob("r*"))) < len(sources) and time.monotonic() < deadline:
        time.sleep(0.01)
    (gate / "go").touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0 and out.strip(), err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def store_leftovers(url: str, options: dict) -> list[str]:
    """Files that should not outlive a push: *.partial-PID files, S3 reservation objects."""
    import fsspec

    fs, root = fsspec.url_to_fs(url, **({"skip_instance_cache": True, **options} if options else {}))
    found = fs.find(root, withdirs=False)
    leftovers = [p for p in found if ".partial-" in p]
    if not url.startswith("/"):
        leftovers += [p for p in found if "/.locks/" in p]
    return leftovers


def check_race(
    tmp_path: Path, sources: list[Path], url: str, options: dict, tag: str, existing: tuple = ()
) -> None:
    """Race `sources` to `url` (already holding the versions `existing`): each gets its own version, the
    index keeps every one, each pulls back byte for byte, and nothing is left behind."""
    results = race(tmp_path, sources, url, options)
    assert all("url" in r for r in results), results
    urls = [r["url"] for r in results]
    assert len(set(urls)) == len(sources), f"two pushes reported the same version: {urls}"
    versions = hub.list_store(url, options)["models"]["vision-cnn"]["versions"]
    assert sorted(versions) == sorted([*existing, *(u.rsplit("/", 1)[1] for u in urls)]), (versions, urls)
    for n, (source, pushed) in enumerate(zip(sources, urls)):
        assert tree(hub.pull(pushed, tmp_path / f"pulled-{tag}-{n}", options)) == tree(source)
    assert store_leftovers(url, options) == []


def store_for(kind: str, tmp_path: Path, bucket: dict | None, n: int) -> tuple[str, dict]:
    if kind == "local":
        return str(tmp_path / f"store{n}"), {}
    return f"s3://{bucket['bucket']}/zoo{n}", {"endpoint_url": bucket["endpoint_url"]}


@pytest.fixture
def sources(tmp_path) -> list[Path]:
    return [make_checkpoint(tmp_path / f"source{i}", seed=i) for i in range(3)]


@pytest.fixture(params=["local", "s3"])
def store_kind(request):
    if request.param == "s3":
        return "s3", request.getfixturevalue("s3")
    return "local", None


def test_concurrent_pushes_get_distinct_versions_and_lose_nothing(tmp_path, sources, store_kind):
    kind, bucket = store_kind
    for n in range(3):
        url, options = store_for(kind, tmp_path, bucket, n)
        check_race(tmp_path, sources[:2], url, options, f"{kind}{n}")


@pytest.mark.slow
def test_concurrent_pushes_twenty_times(tmp_path, sources, store_kind):
    kind, bucket = store_kind
    for n in range(20):
        url, options = store_for(kind, tmp_path, bucket, n)
        if n % 2:  # every other store already holds a version the racers must keep
            hub.push(sources[2], url, options=options)
            check_race(tmp_path, sources[:2], url, options, f"{kind}{n}", existing=("v1",))
            assert tree(hub.pull(f"{url}/vision-cnn/v1", tmp_path / f"v1-{kind}{n}", options)) == tree(
                sources[2]
            )
        else:  # three at once
            check_race(tmp_path, sources, url, options, f"{kind}{n}")


def test_concurrent_pushes_of_one_named_version_let_exactly_one_win(tmp_path, sources, store_kind):
    kind, bucket = store_kind
    url, options = store_for(kind, tmp_path, bucket, 0)
    results = race(tmp_path, sources[:2], url, options, version="v7")
    winners = [i for i, r in enumerate(results) if "url" in r]
    assert len(winners) == 1, results
    loser = results[1 - winners[0]]["error"]
    assert "\n" not in loser and ("already exists" in loser or "being pushed" in loser), loser
    assert list(hub.list_store(url, options)["models"]["vision-cnn"]["versions"]) == ["v7"]
    assert tree(hub.pull(f"{url}/vision-cnn/v7", tmp_path / "v7", options)) == tree(sources[winners[0]])


KILL_DURING_RENAME = """
import os, signal, sys
sys.path.insert(0, {root!r})
from fsspec.implementations.local import LocalFileSystem
from shared import hub

source, url, kill_at = sys.argv[1:4]
move = LocalFileSystem.mv

def mv_then_die(self, path1, path2, **kwargs):
    if path2.endswith(kill_at):  # the file is written under its .partial-PID name; the rename never comes
        os.kill(os.getpid(), signal.SIGKILL)
    return move(self, path1, path2, **kwargs)

LocalFileSystem.mv = mv_then_die
hub.push(source, url)
"""


@pytest.mark.parametrize("kill_at", ["weights.safetensors", "index.json"])
def test_a_killed_push_leaves_partial_files_the_next_push_removes(tmp_path, sources, kill_at):
    store = tmp_path / "store"
    hub.push(sources[0], str(store))
    script = tmp_path / "killer.py"
    script.write_text(KILL_DURING_RENAME.format(root=str(ROOT)))
    proc = subprocess.run(
        [sys.executable, str(script), str(sources[1]), str(store), kill_at], capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    (partial,) = store.rglob("*.partial-*")
    assert partial.name.startswith(f"{kill_at}.partial-")
    hub.push(sources[2], str(store))  # the next push, in another process
    assert list(store.rglob("*.partial-*")) == []
    versions = hub.list_store(str(store))["models"]["vision-cnn"]["versions"]
    assert tree(hub.pull(f"{store}/vision-cnn/{list(versions)[-1]}", tmp_path / "last")) == tree(sources[2])
    assert tree(hub.pull(f"{store}/vision-cnn/v1", tmp_path / "first")) == tree(sources[0])


def test_a_live_pushs_partial_files_are_left_alone(tmp_path, sources):
    """A reservation held by a live process protects its version folder from the clean-up."""
    store = tmp_path / "store"
    hub.push(sources[0], str(store))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]); from shared import hub; "
            "s = hub.Store(sys.argv[2]); "
            "h = hub.locks.reserve(s, 'vision-cnn', 'v5', False, None); print('held', flush=True); time.sleep(60)",
            str(ROOT),
            str(store),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        partial = store / "vision-cnn" / "v5" / "weights.safetensors.partial-1"
        partial.parent.mkdir(parents=True)
        partial.write_bytes(b"being written")
        hub.push(sources[1], str(store))
        assert partial.exists()
        with pytest.raises(UserError, match="being pushed .* right now by pid"):
            hub.push(sources[1], str(store), version="v5")
    finally:
        holder.kill()
        holder.wait()
    hub.push(sources[1], str(store), version="v5")  # the holder died: its reservation went with it
    assert not partial.exists()


# ---------------------------------------------------------------- 3. reserved names


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--name", "index.json"),
        ("--name", "README.md"),
        ("--name", "readme.MD"),
        ("--name", "manifest.json"),
        ("--version", "manifest.json"),
        ("--version", "index.json"),
        ("--name", "cnn.partial-123"),
    ],
)
def test_reserved_names_are_refused(tmp_path, cnn, flag, value):
    store = tmp_path / "store"
    hub.push(cnn, str(store))
    before = tree(store)
    proc = run_tool("tools/hub.py", "push", str(cnn), str(store), flag, value)
    assert_one_line_error(proc, "is reserved", value)
    assert tree(store) == before
    assert list(hub.list_store(str(store))["models"]) == ["vision-cnn"]


# ---------------------------------------------------------------- 4. recipe ranges


@pytest.mark.parametrize(
    "setting, message",
    [
        ("lr=inf", "lr must be a finite number"),
        ("lr=nan", "lr must be a finite number"),
        ("lr=-1e-3", "lr must be > 0"),
        ("adam_beta1=2", "adam_beta1 must be in [0, 1)"),
        ("adam_beta2=1", "adam_beta2 must be in [0, 1)"),
        ("adam_epsilon=0", "adam_epsilon must be > 0"),
        ("sgd_momentum=-0.5", "sgd_momentum must be in [0, 1)"),
        ("weight_decay=-1", "weight_decay must be >= 0"),
        ("grad_clip_norm=-1", "grad_clip_norm must be >= 0"),
        ("warmup_steps=-5", "warmup_steps must be >= 0"),
        ("label_smoothing=1", "label_smoothing must be in [0, 1)"),
        ("seed=-1", "seed must be in [0, 2**32)"),
        ("eval_batch_size=0", "eval_batch_size must be >= 1"),
        ("bn_momentum=nan", "bn_momentum must be a finite number"),
    ],
)
def test_every_recipe_number_is_range_checked(setting, message):
    key, value = setting.split("=")
    with pytest.raises(UserError, match=re.escape(message)):
        get_spec("vision/cnn").config(**{key: value})


@pytest.mark.parametrize("setting", ["lr=inf", "adam_beta1=2", "weight_decay=-1"])
def test_train_refuses_out_of_range_settings_before_anything_runs(tmp_path, setting):
    out = tmp_path / "run"
    proc = run_tool("tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--set", setting, "--out", str(out))
    first_line_is_the_error(proc, setting.split("=")[0])
    assert not out.exists()


# ---------------------------------------------------------------- 4. a loss that turns non-finite

# Adam with a constant lr of 2e17 and no weight decay: step 0 is finite, step 1 overflows to NaN.
DIVERGING = {"lr": 2e17, "warmup_steps": 0, "weight_decay": 0.0, "schedule": "constant", "batch_size": 16}


def assert_stopped_with_a_finite_snapshot(out: Path) -> None:
    from shared.train import snapshot

    assert not (out / "checkpoint").exists() and not (out / "result.json").exists()
    arrays, state = snapshot.read(out)
    assert state["step"] == 1
    assert all(
        np.isfinite(a).all() for name, a in arrays.items() if a.dtype.kind == "f" and "rng" not in name
    )
    losses = [float(line.split(",")[1]) for line in (out / "steps.csv").read_text().splitlines()[1:]]
    assert losses and all(np.isfinite(losses))


@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_a_diverging_run_stops_naming_the_step_and_keeps_its_last_finite_snapshot(tmp_path, frameworks, fw):
    from shared.train.run import TrainingDiverged, train

    spec = get_spec("vision/cnn")
    config = spec.config(base_width=4, image_size=8, epochs=1, **DIVERGING)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="loss became nan at step 1 .*snapshot .*step-00000001"):
        train(spec, config, fw, data="digits", out=out, threads=1, progress=False, snapshot_every=1)
    assert_stopped_with_a_finite_snapshot(out)


@pytest.mark.parametrize("fw", ["torch", pytest.param("keras", marks=pytest.mark.slow)])
def test_a_diverging_run_exits_1_in_one_line(tmp_path, fw):
    out = tmp_path / "run"
    flags = [arg for k, v in DIVERGING.items() for arg in ("--set", f"{k}={v}")]
    proc = run_tool(
        *TRAIN[:3],
        fw,
        *TRAIN[4:],
        *flags,
        "--data",
        "digits",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--no-progress",
        "--snapshot-every",
        "1",
        "--out",
        str(out),
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.splitlines()[0].startswith("error: ")
    assert len(proc.stderr.splitlines()) == 1 and "at step 1" in proc.stderr and "--lr" in proc.stderr
    assert_stopped_with_a_finite_snapshot(out)
    from shared.train.request import RunSettings, check_request

    spec = get_spec("vision/cnn")  # the stopped run is recognisably a run: --overwrite may replace it
    check_request(spec, spec.config(), RunSettings(fw, out, "digits", overwrite=True))


# ---------------------------------------------------------------- 5. symlinks, devices, escapes


def plant_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "passwd.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    return secret


@pytest.mark.parametrize("where", ["verify", "push", "evaluate"])
def test_a_symlink_in_a_checkpoint_is_refused(tmp_path, ckpt, where):
    (ckpt / "notes.txt").symlink_to(plant_secret(tmp_path))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    secret = tmp_path / "outside" / "passwd.txt"
    manifest["files"]["notes.txt"] = {"sha256": checkpoint.sha256_file(secret), "size": secret.stat().st_size}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))  # listed, with the right sha256
    if where == "verify":
        with pytest.raises(UserError, match="notes.txt is a symbolic link"):
            checkpoint.verify(ckpt)
    elif where == "push":
        proc = run_tool("tools/hub.py", "push", str(ckpt), str(tmp_path / "store"))
        assert_one_line_error(proc, "notes.txt is a symbolic link")
        assert not (tmp_path / "store").exists()
    else:
        proc = run_tool("tools/evaluate.py", str(ckpt), "--fw", "torch")
        assert_one_line_error(proc, "symbolic link")


def test_device_files_and_pipes_are_refused_without_being_read(tmp_path, ckpt):
    os.mkfifo(ckpt / "notes.txt")  # reading it would block forever
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["notes.txt"] = {"sha256": "0" * 64, "size": 0}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="not a regular file"):
        checkpoint.verify(ckpt)
    (ckpt / "notes.txt").unlink()
    (ckpt / "notes.txt").symlink_to("/dev/zero")
    with pytest.raises(UserError, match="symbolic link"):
        hub.push(ckpt, str(tmp_path / "store"))


@pytest.mark.parametrize("link", ["file", "version folder", "model folder"])
def test_pull_refuses_symlinks_in_a_local_store(tmp_path, cnn, link):
    store = tmp_path / "store"
    hub.push(cnn, str(store))
    secret = plant_secret(tmp_path)
    version = store / "vision-cnn" / "v1"
    if link == "file":  # a store file swapped for a link whose target matches the manifest
        (version / "notes.txt").symlink_to(secret)
        manifest = json.loads((version / "manifest.json").read_text())
        manifest["files"]["notes.txt"] = {
            "sha256": checkpoint.sha256_file(secret),
            "size": secret.stat().st_size,
        }
        raw = json.dumps(manifest).encode()
        (version / "manifest.json").write_bytes(raw)
        index = json.loads((store / "index.json").read_text())
        index["models"]["vision-cnn"]["versions"]["v1"]["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
        (store / "index.json").write_text(json.dumps(index))
    elif link == "version folder":
        elsewhere = Path(shutil.move(version, tmp_path / "elsewhere"))
        version.symlink_to(elsewhere)
    else:
        elsewhere = Path(shutil.move(store / "vision-cnn", tmp_path / "elsewhere"))
        (store / "vision-cnn").symlink_to(elsewhere)
    before = tree(tmp_path / "outside")
    with pytest.raises(UserError, match="symbolic link"):
        hub.pull(f"{store}/vision-cnn/v1", tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and tree(tmp_path / "outside") == before
    proc = run_tool("tools/hub.py", "pull", f"{store}/vision-cnn@v1", str(tmp_path / "dest"))
    assert_one_line_error(proc, "symbolic link")


# ---------------------------------------------------------------- 6. forged safetensors under a matching manifest


def forged(kind: str, good: bytes) -> bytes:
    header_length = int.from_bytes(good[:8], "little")
    header = json.loads(good[8 : 8 + header_length])
    if kind == "length 2**60":
        return (2**60).to_bytes(8, "little") + good[8:]
    if kind == "malformed JSON":
        return good[:8] + b"{" * header_length + good[8 + header_length :]
    if kind == "overlapping offsets":  # two tensors of one size made to share their bytes
        spans = {}
        for name, info in header.items():
            if name != "__metadata__":
                spans.setdefault(info["data_offsets"][1] - info["data_offsets"][0], []).append(name)
        first, second = next(names for names in spans.values() if len(names) > 1)[:2]
        header[second]["data_offsets"] = header[first]["data_offsets"]
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(8, "little") + raw + good[8 + header_length :]
    assert kind == "pickle"
    return b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x07weights\x94."


FORGERIES = ["length 2**60", "malformed JSON", "overlapping offsets", "pickle"]


@pytest.mark.parametrize("kind", FORGERIES)
@pytest.mark.parametrize("tool", ["evaluate", "predict"])
def test_forged_safetensors_with_a_matching_manifest(tmp_path, ckpt, kind, tool):
    weights = ckpt / "weights.safetensors"
    weights.write_bytes(forged(kind, weights.read_bytes()))
    reseal(ckpt)
    args = ["tools/evaluate.py", str(ckpt), "--fw", "torch"]
    if tool == "predict":
        args = ["tools/predict.py", str(ckpt), "--fw", "torch", str(tmp_path / "any.png")]
    first_line_is_the_error(run_tool(*args), "weights.safetensors")
    with pytest.raises(UserError, match="safetensors"):
        checkpoint.load(ckpt)


# ---------------------------------------------------------------- 7. config.json that does not fit


def edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    value = edit(json.loads(path.read_text()))
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    reseal(folder)


CONFIG_EDITS = {
    "not JSON": (lambda c: "{'model': 'vision/cnn'", "config.json is malformed (not JSON"),
    "a list": (lambda c: [c], "config.json is malformed (a JSON list"),
    "no config object": (lambda c: {**c, "config": 3}, "must hold 'model'"),
    "unknown model": (lambda c: {**c, "model": "vision/nope"}, "unknown model 'vision/nope'"),
    "model not a string": (lambda c: {**c, "model": ["vision/cnn"]}, "must hold 'model'"),
    "field out of range": (lambda c: {**c, "config": {**c["config"], "lr": -1}}, "lr must be > 0"),
    "field of the wrong type": (
        lambda c: {**c, "config": {**c["config"], "base_width": "wide"}},
        "base_width",
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_EDITS))
@pytest.mark.parametrize("tool", ["evaluate", "predict"])
def test_bad_config_json_is_one_line_before_any_framework(tmp_path, ckpt, case, tool):
    edit, message = CONFIG_EDITS[case]
    edit_config(ckpt, edit)
    args = ["tools/evaluate.py", str(ckpt), "--fw", "torch"]
    if tool == "predict":
        args = ["tools/predict.py", str(ckpt), "--fw", "torch", str(tmp_path / "any.png")]
    first_line_is_the_error(run_tool(*args, env=poisoned_frameworks(tmp_path)), message)


WEIGHT_EDITS = {
    "config edited": ("config", lambda c: {**c, "config": {**c["config"], "base_width": 8}}, "mis-shaped"),
    "a tensor missing": (
        "weights",
        lambda w: {k: v for k, v in w.items() if k != "fc.bias"},
        "missing fc.bias",
    ),
    "a tensor of the wrong shape": (
        "weights",
        lambda w: {**w, "fc.bias": np.zeros(3, np.float32)},
        "fc.bias",
    ),
    "an extra tensor": (
        "weights",
        lambda w: {**w, "extra.weight": np.zeros(3, np.float32)},
        "unexpected extra",
    ),
}


def misfit_checkpoint(folder: Path, case: str) -> str:
    what, edit, message = WEIGHT_EDITS[case]
    if what == "config":
        edit_config(folder, edit)
    else:
        from safetensors.numpy import load_file, save_file

        save_file(edit(load_file(str(folder / "weights.safetensors"))), str(folder / "weights.safetensors"))
        reseal(folder)
    return message


@pytest.mark.parametrize("case", list(WEIGHT_EDITS))
@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_weights_that_do_not_fit_the_config_are_a_user_error(ckpt, case, fw):
    message = misfit_checkpoint(ckpt, case)
    with pytest.raises(UserError, match=f"do not fit the model its config.json describes.*{message}"):
        load_model(ckpt, fw)
    with pytest.raises(UserError, match=message):
        check_weights_fit(ckpt)  # the check push runs, from the safetensors header alone


def test_push_refuses_weights_that_do_not_fit_in_one_line(tmp_path, ckpt):
    """12. tools/hub.py push checks the weights' shapes (from the header) against config.json."""
    misfit_checkpoint(ckpt, "config edited")
    first_line_is_the_error(
        run_tool("tools/hub.py", "push", str(ckpt), str(tmp_path / "store")), "do not fit", "mis-shaped"
    )
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["evaluate", "predict"])
def test_weights_that_do_not_fit_are_one_line_in_evaluate_and_predict(tmp_path, ckpt, tool):
    misfit_checkpoint(ckpt, "config edited")
    args = ["tools/evaluate.py", str(ckpt), "--fw", "torch"]
    if tool == "predict":
        args = ["tools/predict.py", str(ckpt), "--fw", "torch", str(bomb_png(tmp_path / "x.png", 8))]
    first_line_is_the_error(run_tool(*args), "do not fit the model its config.json describes")


def test_unknown_config_fields_are_named_in_a_warning(ckpt, capsys):
    edit_config(ckpt, lambda c: {**c, "config": {**c["config"], "depth": 3, "dropout_rate": 0.1}})
    load_model(ckpt, "torch")
    err = capsys.readouterr().err
    assert "warning:" in err and "depth, dropout_rate" in err and "ignored" in err


# ---------------------------------------------------------------- 9. store index of the wrong shape


def entry(**changes) -> dict:
    base = {
        "path": "vision-cnn/v1",
        "manifest_sha256": "0" * 64,
        "size": 1,
        "files": 6,
        "model": "vision/cnn",
    }
    return {**base, **changes}


BAD_INDEXES = {
    "models is a list": ({"schema": 1, "models": []}, "no 'models' object"),
    "model without versions": ({"models": {"vision-cnn": {"model": "vision/cnn"}}}, "model 'vision-cnn'"),
    "versions is a list": ({"models": {"vision-cnn": {"model": "vision/cnn", "versions": []}}}, "vision-cnn"),
    "entry is a string": (
        {"models": {"vision-cnn": {"model": "vision/cnn", "versions": {"v1": "x"}}}},
        "vision-cnn/v1",
    ),
    "size is a string": (
        {"models": {"vision-cnn": {"model": "vision/cnn", "versions": {"v1": entry(size="big")}}}},
        "vision-cnn/v1 has size='big'",
    ),
    "no manifest sha256": (
        {"models": {"vision-cnn": {"model": "vision/cnn", "versions": {"v1": entry(manifest_sha256=None)}}}},
        "manifest_sha256",
    ),
    "metrics a list": (
        {"models": {"vision-cnn": {"model": "vision/cnn", "versions": {"v1": entry(metrics=[1])}}}},
        "metrics",
    ),
    "parity without numbers": (
        {"models": {"vision-cnn": {"model": "vision/cnn", "versions": {"v1": entry(parity={"checks": 1})}}}},
        "parity",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INDEXES))
def test_an_index_of_the_wrong_shape_is_named(tmp_path, case):
    index, message = BAD_INDEXES[case]
    store = tmp_path / "store"
    store.mkdir()
    (store / "index.json").write_text(json.dumps(index))
    for read in (
        lambda: hub.list_store(str(store)),
        lambda: hub.pull(f"{store}/vision-cnn/v1", tmp_path / "dest"),
        lambda: hub.show(f"{store}/vision-cnn"),
        lambda: hub.push(make_checkpoint(tmp_path / "new"), str(store)),
    ):
        with pytest.raises(UserError, match=f"index.json is malformed: .*{re.escape(message)}"):
            read()
    assert not (tmp_path / "dest").exists() and json.loads((store / "index.json").read_text()) == index


@pytest.mark.parametrize("command", ["ls", "pull", "show"])
def test_an_index_of_the_wrong_shape_is_one_line_in_every_command(tmp_path, command):
    index, message = BAD_INDEXES["size is a string"]
    store = tmp_path / "store"
    store.mkdir()
    (store / "index.json").write_text(json.dumps(index))
    args = {
        "ls": ["ls", str(store)],
        "pull": ["pull", f"{store}/vision-cnn/v1", str(tmp_path / "dest")],
        "show": ["show", f"{store}/vision-cnn"],
    }[command]
    first_line_is_the_error(run_tool("tools/hub.py", *args), "index.json is malformed", message)
    assert not (tmp_path / "dest").exists()


# ---------------------------------------------------------------- 10. predict: bombs and bad options


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A 100-byte PNG whose header claims side x side pixels (Pillow refuses it as a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def test_predict_refuses_a_decompression_bomb_in_one_line(tmp_path, cnn):
    proc = run_tool("tools/predict.py", str(cnn), "--fw", "torch", str(bomb_png(tmp_path / "bomb.png")))
    first_line_is_the_error(proc, "bomb.png", "decompression bomb")


@pytest.mark.parametrize("option", ["top_k=abc", "top_k=0", "top_k=2.5"])
def test_predict_top_k_option_is_checked(tmp_path, cnn, option):
    proc = run_tool("tools/predict.py", str(cnn), "--fw", "torch", str(tmp_path / "x.png"), "--opt", option)
    first_line_is_the_error(proc, "top_k must be a whole number >= 1")


# ---------------------------------------------------------------- 11. errors come first, and fast


def test_a_hub_dataset_without_network_fails_once_fast_and_first(tmp_path, closed_port):
    ckpt = write_cnn(tmp_path / "ckpt", data="hub:ylecun/mnist")
    env = {
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port}",  # no hub there
        **dict.fromkeys(
            ["ZOO_HUB_MIRROR", "HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"], ""
        ),
    }
    started = time.monotonic()
    proc = run_tool("tools/evaluate.py", str(ckpt), "--fw", "torch", env=env)
    seconds = time.monotonic() - started
    first_line_is_the_error(proc, "ylecun/mnist", "cannot be reached", "ZOO_HUB_MIRROR")
    assert seconds < 20, f"{seconds:.0f} s to fail"  # the hub client's retries took 25 s on their own


def test_keras_refusing_gpus_prints_its_error_first(tmp_path):
    """TensorFlow's native start-up lines (absl, oneDNN, CUDA probes) used to come first: 8 lines of noise."""
    env = {"CUDA_VISIBLE_DEVICES": ""}  # no GPU (TF_CPP_MIN_LOG_LEVEL=3 does not reach those lines)
    proc = run_tool(*TRAIN[:3], "keras", *TRAIN[4:], "--gpus", "2", "--out", str(tmp_path / "run"), env=env)
    first_line_is_the_error(proc, "--gpus 2", "finds 0")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 12. --threads 0


@pytest.mark.parametrize(
    "args",
    [
        ["tools/evaluate.py", "CKPT", "--fw", "torch", "--threads", "0"],
        ["tools/evaluate.py", "CKPT", "--fw", "torch", "--threads", "-2"],
        ["tools/train.py", "zoo/vision/cnn", "--fw", "torch", "--threads", "0"],
        ["tools/train.py", "zoo/vision/cnn", "--fw", "keras", "--threads", "0"],
    ],
)
def test_threads_must_be_at_least_one(cnn, args):
    proc = run_tool(*[str(cnn) if a == "CKPT" else a for a in args])
    first_line_is_the_error(proc, "--threads", "expected a whole number >= 1")
