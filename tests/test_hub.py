"""Sharing checkpoints (shared/hub/, tools/hub.py): real stores, real files, real failures.

A local folder store, S3 through moto's server on 127.0.0.1 reached by s3fs (no client mocks), pushes killed
between files, tampered and hostile stores, and hf:// as far as it runs without the network.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared import checkpoint, hub
from shared.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
CARD = """---
library_name: zoo
license: apache-2.0
tags:
  - vision-cnn
  - classification
  - trained-in-torch
datasets:
  - digits
metrics:
  - accuracy
  - loss
---

# vision/cnn
"""


@functools.cache
def cnn_shapes() -> dict[str, tuple[int, ...]]:
    """The canonical weight shapes of vision/cnn with base_width=4 (built on torch's meta device)."""
    import torch

    from zoo import registry

    spec = registry.get("vision/cnn")
    spec.impl("torch")
    with torch.device("meta"):
        model = spec.build("torch", spec.config(base_width=4))
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def make_checkpoint(folder: Path, seed: int = 0, extra: dict | None = None) -> Path:
    """A small vision/cnn checkpoint written by shared.checkpoint.save (numpy weights; no framework)."""
    from shared.recipe import config_to_dict
    from zoo import registry

    rng = np.random.default_rng(seed)
    weights = {  # random values of the right shapes: `tools/hub.py push` checks them against the config
        name: rng.standard_normal(shape).astype(np.float32) for name, shape in cnn_shapes().items()
    }
    meta = {
        "framework": "torch",
        "data": "digits",
        "metrics": {"test": {"accuracy": 0.75 + seed / 100, "loss": 0.5}},
    }
    return checkpoint.save(
        folder,
        model_name="vision/cnn",
        config=config_to_dict(registry.get("vision/cnn").config(base_width=4)),
        weights=weights,
        meta=meta,
        extra_files={"preprocessing.json": {"mean": [0.1]}, **(extra or {})},
        card=CARD,
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "hub.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints"


@pytest.fixture
def ckpt(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "run" / "checkpoint")


@pytest.fixture
def store(tmp_path, ckpt) -> str:
    """A local store holding vision-cnn v1."""
    url = str(tmp_path / "store")
    hub.push(ckpt, url)
    return url


# ---------------------------------------------------------------- local folder store


def test_round_trip_local(tmp_path, ckpt):
    url = str(tmp_path / "store")
    entry = hub.push(ckpt.parent, url)  # a run folder resolves to its checkpoint/
    assert (
        entry["url"] == f"{url}/vision-cnn/v1" and entry["framework"] == "torch" and entry["data"] == "digits"
    )
    index = hub.list_store(url)
    assert list(index["models"]["vision-cnn"]["versions"]) == ["v1"]
    assert index["models"]["vision-cnn"]["versions"]["v1"]["metrics"] == {"accuracy": 0.75, "loss": 0.5}
    for n, target in enumerate(
        (f"{url}/vision-cnn/v1", f"{url}/vision-cnn@v1", f"{url}/vision-cnn", f"file://{url}/vision-cnn/v1")
    ):
        dest = hub.pull(target, tmp_path / f"pulled{n}")
        assert tree(dest) == tree(ckpt), target
    loaded = checkpoint.load(tmp_path / "pulled0")
    np.testing.assert_array_equal(loaded["weights"]["fc.bias"], checkpoint.load(ckpt)["weights"]["fc.bias"])


def test_versions_are_immutable_unless_forced(tmp_path, store):
    other = make_checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(UserError, match="already exists.*--force"):
        hub.push(other, store, version="v1")
    assert hub.push(other, store)["url"].endswith("vision-cnn/v2")  # the next free version
    hub.push(other, store, version="v1", force=True)
    versions = hub.list_store(store)["models"]["vision-cnn"]["versions"]
    assert list(versions) == ["v1", "v2"]
    assert versions["v1"]["metrics"]["accuracy"] == pytest.approx(0.76)
    assert tree(hub.pull(f"{store}/vision-cnn@v1", tmp_path / "v1")) == tree(other)
    assert hub.locate(f"{store}/vision-cnn").version == "v2"  # the latest


def test_show_lists_files_and_versions(store):
    shown = hub.show(f"{store}/vision-cnn/v1")
    assert shown["version"] == "v1" and "weights.safetensors" in shown["files"]
    assert list(hub.show(f"{store}/vision-cnn")["versions"]) == ["v1"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_tampered_store_file_is_named_and_nothing_is_kept(tmp_path, store, cache, damage):
    target = Path(store) / "vision-cnn" / "v1" / "weights.safetensors"
    data = target.read_bytes()
    target.write_bytes(
        {"flip": data[:-1] + bytes([data[-1] ^ 1]), "truncate": data[:-5], "extend": data + b"\0" * 4}[damage]
    )
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's own file")
    before = tree(tmp_path / "mine")
    with pytest.raises(UserError, match="weights.safetensors .*does not match its manifest"):
        hub.pull(f"{store}/vision-cnn/v1", tmp_path / "mine" / "dest")
    assert tree(tmp_path / "mine") == before and not (tmp_path / "mine" / "dest").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="weights.safetensors"):
        hub.pull(f"{store}/vision-cnn/v1", empty)
    assert empty.is_dir() and not any(empty.iterdir())  # the user's empty folder stays, still empty
    with pytest.raises(UserError, match="weights.safetensors"):
        hub.resolve(f"{store}/vision-cnn@v1")
    assert not cache.exists() or not any(cache.iterdir())


def test_manifest_changed_after_publishing_is_refused(tmp_path, store):
    path = Path(store) / "vision-cnn" / "v1" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["config.json"]["size"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="does not match the sha256 the index recorded"):
        hub.pull(f"{store}/vision-cnn/v1", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_pull_refuses_a_non_empty_dest(tmp_path, store):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not an empty folder"):
        hub.pull(f"{store}/vision-cnn", dest)
    assert tree(dest) == {"keep.txt": b"mine"}


def test_any_other_fsspec_protocol(tmp_path, ckpt):
    url = f"memory://zoo-{os.urandom(4).hex()}"  # fsspec's in-process store: no path, no client of its own
    hub.push(ckpt, url, name="cnn")
    assert tree(hub.pull(f"{url}/cnn/v1", tmp_path / "dest")) == tree(ckpt)


def test_index_entry_pointing_outside_its_folder_is_refused(tmp_path, store):
    index_path = Path(store) / "index.json"
    index = json.loads(index_path.read_text())
    index["models"]["vision-cnn"]["versions"]["v1"]["path"] = "../elsewhere/v1"
    index_path.write_text(json.dumps(index))
    with pytest.raises(UserError, match="outside vision-cnn/v1/"):
        hub.pull(f"{store}/vision-cnn/v1", tmp_path / "dest")


def test_missing_model_and_version(tmp_path, store):
    with pytest.raises(UserError, match="no published version 'v9'.*versions: v1"):
        hub.pull(f"{store}/vision-cnn@v9", tmp_path / "d")
    with pytest.raises(UserError, match="no model 'nlp-seq2seq'; it has: vision-cnn"):
        hub.pull(f"{store}/nlp-seq2seq", tmp_path / "d")
    with pytest.raises(UserError, match="no zoo store"):
        hub.list_store(str(tmp_path / "nowhere"))
    assert not (tmp_path / "d").exists()


def plant_version(store: str, name: str, version: str, files: dict[str, bytes], manifest_files: dict) -> None:
    """Write a version and index it, as a hostile store would (the index entry matches its manifest)."""
    folder = Path(store) / name / version
    folder.mkdir(parents=True)
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    raw = json.dumps({"schema": 1, "model": "vision/cnn", "files": manifest_files}).encode()
    (folder / "manifest.json").write_bytes(raw)
    index = json.loads((Path(store) / "index.json").read_text())
    index["models"][name] = {
        "model": "vision/cnn",
        "versions": {
            version: {
                "path": f"{name}/{version}",
                "manifest_sha256": hashlib.sha256(raw).hexdigest(),
                "size": 0,
                "files": 0,
            }
        },
    }
    (Path(store) / "index.json").write_text(json.dumps(index))


def entries(folder: Path) -> dict:
    return {
        p.name: {"sha256": checkpoint.sha256_file(p), "size": p.stat().st_size}
        for p in folder.iterdir()
        if p.name != "manifest.json"
    }


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "sub/config.json",
        "..",
        ".hidden.json",
        "model.pt",
        "weights.bin",
        "model.keras",
        "run.sh",
    ],
)
def test_hostile_manifest_names_are_refused_before_download(tmp_path, store, ckpt, bad):
    listed = {**entries(ckpt), bad: {"sha256": "0" * 64, "size": 4}}
    plant_version(store, "evil", "v1", tree(ckpt), listed)
    before = tree(tmp_path)
    with pytest.raises(UserError, match=r"names .*|refusing"):
        hub.pull(f"{store}/evil/v1", tmp_path / "dest")
    assert tree(tmp_path) == before  # nothing written anywhere, DEST included


def test_hostile_manifest_via_cli_exits_2_in_one_line(tmp_path, store, ckpt):
    plant_version(
        store,
        "evil",
        "v1",
        tree(ckpt),
        {**entries(ckpt), "../../etc/passwd": {"sha256": "0" * 64, "size": 4}},
    )
    before = tree(tmp_path)
    result = run_cli("pull", f"{store}/evil/v1", str(tmp_path / "dest"))
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.count("\n") == 1 and "../../etc/passwd" in result.stderr and "escape" in result.stderr
    )
    assert tree(tmp_path) == before


def test_push_refuses_pickles_and_bad_cards(tmp_path):
    with pytest.raises(UserError, match="pickle"):
        make_checkpoint(tmp_path / "pickled", extra={"optimizer.pkl": b"\x80\x04."})
    folder = make_checkpoint(tmp_path / "ck")
    (folder / "model.pt").write_bytes(b"\x80\x04.")  # dropped in after saving
    with pytest.raises(UserError, match="model.pt: a torch pickle"):
        hub.push(folder, str(tmp_path / "store"))
    (folder / "model.pt").unlink()
    broken = checkpoint.save(
        tmp_path / "card",
        model_name="vision/cnn",
        config={},
        weights={"w": np.zeros(2, np.float32)},
        meta={},
        card="---\nlicense: [unclosed\n---\n",
    )
    with pytest.raises(UserError, match="malformed YAML front matter"):
        hub.push(broken, str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


# ---------------------------------------------------------------- safetensors headers


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


GOOD = {
    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]},
}


@pytest.mark.parametrize(
    "name, content",
    [
        ("length beyond the file", (10**6).to_bytes(8, "little") + b"{}"),
        ("not JSON", (4).to_bytes(8, "little") + b"{{{{"),
        (
            "unknown dtype",
            safetensors_bytes({"a": {"dtype": "PICKLE", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
        ),
        (
            "shape and span disagree",
            safetensors_bytes({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
        ),
        (
            "overlap",
            safetensors_bytes(
                {**GOOD, "c": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 16
            ),
        ),
        (
            "gap",
            safetensors_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16),
        ),
        ("truncated data", safetensors_bytes(GOOD, b"\0" * 12)),
        ("trailing bytes", safetensors_bytes(GOOD, b"\0" * 20)),
        ("bad metadata", safetensors_bytes({"__metadata__": {"k": 1}, **GOOD}, b"\0" * 16)),
    ],
)
def test_safetensors_header_checks(tmp_path, name, content):
    good = tmp_path / "good.safetensors"
    good.write_bytes(safetensors_bytes({"__metadata__": {"format": "zoo"}, **GOOD}, b"\0" * 16))
    hub.check_safetensors(good)
    from safetensors.numpy import load_file

    assert set(load_file(str(good))) == {"a", "b"}  # the header we accept is one safetensors reads
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    with pytest.raises(UserError, match="safetensors"):
        hub.check_safetensors(bad)


def test_pull_checks_the_safetensors_header_even_when_hashes_match(tmp_path, store, ckpt):
    files = {**tree(ckpt), "weights.safetensors": safetensors_bytes(GOOD, b"\0" * 12)}
    folder = tmp_path / "hostile"
    folder.mkdir()
    for fname, data in files.items():
        (folder / fname).write_bytes(data)
    plant_version(store, "hostile", "v1", files, entries(folder))
    with pytest.raises(UserError, match="weights.safetensors has a bad safetensors header"):
        hub.pull(f"{store}/hostile/v1", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# ---------------------------------------------------------------- interrupted pushes

KILLER = """
import json, os, signal, sys
sys.path.insert(0, {root!r})
from shared import hub

source, url, kill_before, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
put = hub.Store._put

def put_then_die(self, rel, src):
    if rel.endswith(kill_before):
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies between two files
    put(self, rel, src)

hub.Store._put = put_then_die
hub.push(source, url, options=options)
"""


def interrupted_push(tmp_path, source: Path, url: str, kill_before: str, options: dict | None = None):
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(root=str(ROOT)))
    result = subprocess.run(
        [sys.executable, str(script), str(source), url, kill_before, json.dumps(options or {})],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def assert_previous_state(tmp_path, url: str, v1: Path, options: dict | None = None, tag: str = ""):
    assert list(hub.list_store(url, options)["models"]["vision-cnn"]["versions"]) == ["v1"]
    assert tree(hub.pull(f"{url}/vision-cnn", tmp_path / f"latest{tag}", options)) == tree(v1)
    with pytest.raises(UserError, match="no published version 'v2'"):
        hub.pull(f"{url}/vision-cnn/v2", tmp_path / f"v2{tag}", options)


@pytest.mark.parametrize("kill_before", ["meta.json", "manifest.json", "index.json"])
def test_interrupted_push_leaves_the_previous_state(tmp_path, store, ckpt, kill_before):
    index_before = (Path(store) / "index.json").read_bytes()
    v2 = make_checkpoint(tmp_path / "v2", seed=2)
    interrupted_push(tmp_path, v2, store, kill_before)
    assert (Path(store) / "index.json").read_bytes() == index_before
    assert_previous_state(tmp_path, store, ckpt)
    hub.push(v2, store)  # the unpublished leftovers are no obstacle: v2 was never published
    assert tree(hub.pull(f"{store}/vision-cnn", tmp_path / "now")) == tree(v2)


# ---------------------------------------------------------------- S3 through moto's server and s3fs


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch) -> dict:
    """Storage options for a fresh bucket on the moto server (credentials from the usual AWS variables)."""
    import s3fs

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"zoo-{os.urandom(4).hex()}"
    s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True).mkdir(bucket)
    return {"endpoint_url": s3_server, "bucket": bucket}


def test_s3_push_ls_show_pull(tmp_path, ckpt, s3, cache):
    url, options = f"s3://{s3['bucket']}/zoo", {"endpoint_url": s3["endpoint_url"]}
    assert hub.push(ckpt, url, options=options)["url"] == f"{url}/vision-cnn/v1"
    with pytest.raises(UserError, match="already exists"):
        hub.push(ckpt, url, version="v1", options=options)
    assert list(hub.list_store(url, options)["models"]["vision-cnn"]["versions"]) == ["v1"]
    assert hub.show(f"{url}/vision-cnn/v1", options)["files"]["weights.safetensors"]["size"] > 0
    assert tree(hub.pull(f"{url}/vision-cnn@v1", tmp_path / "dest", options)) == tree(ckpt)
    # the CLI, with the endpoint as a flag and credentials from the environment
    result = run_cli("ls", url, "--endpoint-url", s3["endpoint_url"])
    assert result.returncode == 0 and "vision-cnn" in result.stdout and "torch" in result.stdout, (
        result.stderr
    )


def test_s3_tampered_object_is_refused(tmp_path, ckpt, s3):
    import s3fs

    url, options = f"s3://{s3['bucket']}/zoo", {"endpoint_url": s3["endpoint_url"]}
    hub.push(ckpt, url, options=options)
    fs = s3fs.S3FileSystem(endpoint_url=s3["endpoint_url"], skip_instance_cache=True)
    fs.pipe_file(f"{s3['bucket']}/zoo/vision-cnn/v1/config.json", b'{"model": "vision/cnn"}')
    with pytest.raises(UserError, match="config.json from s3://.*does not match its manifest"):
        hub.pull(f"{url}/vision-cnn/v1", tmp_path / "dest", options)
    assert not (tmp_path / "dest").exists()


def test_s3_interrupted_push_leaves_the_previous_state(tmp_path, ckpt, s3):
    url, options = f"s3://{s3['bucket']}/zoo", {"endpoint_url": s3["endpoint_url"]}
    hub.push(ckpt, url, options=options)
    interrupted_push(tmp_path, make_checkpoint(tmp_path / "v2", seed=2), url, "manifest.json", options)
    assert_previous_state(tmp_path, url, ckpt, options)


def test_s3_url_resolves_through_the_cache(ckpt, s3, cache, monkeypatch):
    url, options = f"s3://{s3['bucket']}/zoo", {"endpoint_url": s3["endpoint_url"]}
    hub.push(ckpt, url, options=options)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3["endpoint_url"])  # resolve() reads the usual AWS variables
    folder = hub.resolve(f"{url}/vision-cnn/v1")
    key = hashlib.sha256((ckpt / "manifest.json").read_bytes()).hexdigest()
    assert folder == cache / key and tree(folder) == tree(ckpt)


def test_s3_bad_inputs(tmp_path, ckpt, s3, monkeypatch, closed_port):
    url = f"s3://{s3['bucket']}/zoo"
    options = {"endpoint_url": s3["endpoint_url"], "skip_instance_cache": True}
    with pytest.raises(UserError, match="not found.*check the bucket"):
        hub.push(ckpt, f"s3://no-such-bucket-{os.urandom(3).hex()}/zoo", options=options)
    with pytest.raises(UserError, match="no zoo store at s3://"):
        hub.list_store(url, options)
    unreachable = {
        "endpoint_url": f"http://127.0.0.1:{closed_port}",
        "skip_instance_cache": True,
        "config_kwargs": {"retries": {"max_attempts": 1}},
    }
    with pytest.raises(UserError, match="cannot reach the store"):
        hub.list_store(url, unreachable)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(UserError, match="no credentials for s3://.*AWS_ACCESS_KEY_ID"):
        hub.push(ckpt, url, options=options)


# ---------------------------------------------------------------- CLI: one line, exit 2


def test_cli_round_trip_and_bad_inputs(tmp_path, ckpt):
    url = str(tmp_path / "store")
    pushed = run_cli("push", str(ckpt), url, "--name", "cnn-tiny", "--version", "2026.1", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["url"] == f"{url}/cnn-tiny/2026.1"
    assert run_cli("pull", f"file://{url}/cnn-tiny@2026.1", str(tmp_path / "dest")).returncode == 0
    assert tree(tmp_path / "dest") == tree(ckpt)
    bad = {
        "unknown protocol": (["ls", "nope://bucket/zoo"], "unknown store protocol"),
        "missing fsspec package": (["ls", "gs://bucket/zoo"], "needs a package"),
        "version that does not exist": (
            ["pull", f"{url}/cnn-tiny/v7", str(tmp_path / "d")],
            "not published|no published",
        ),
        "existing version": (
            ["push", str(ckpt), url, "--name", "cnn-tiny", "--version", "2026.1"],
            "already exists",
        ),
        "bad name": (["push", str(ckpt), url, "--name", "../up"], "not allowed"),
        "not a checkpoint": (["push", str(tmp_path), url], "no manifest.json"),
        "bad option": (["ls", url, "--option", "novalue"], "KEY=VALUE"),
    }
    for case, (args, message) in bad.items():
        result = run_cli(*args)
        assert result.returncode == 2, (case, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (case, result.stderr)
        assert __import__("re").search(message, result.stderr), (case, result.stderr)
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- hf://, as far as it runs offline


def test_hf_urls_parse_without_the_network():
    assert hub.parse_hf("hf://me/zoo") == hub.HfTarget("model", "me/zoo", None, "")
    assert hub.parse_hf("hf://datasets/me/zoo@v1.0/store/sub") == hub.HfTarget(
        "dataset", "me/zoo", "v1.0", "store/sub"
    )
    assert (
        hub.HfTarget("dataset", "me/zoo", None, "store").fs_path("abc123", "index.json")
        == "datasets/me/zoo@abc123/store/index.json"
    )
    with pytest.raises(UserError, match="does not name a Hugging Face repository"):
        hub.parse_hf("hf://justone")


def test_hf_commit_puts_every_file_under_the_prefix_index_last(tmp_path, ckpt):
    uploads = [(f"vision-cnn/v1/{f}", ckpt / f) for f in ("config.json", "weights.safetensors")]
    uploads += [("vision-cnn/v1/manifest.json", b"{}"), ("README.md", b"card"), ("index.json", b"{}")]
    operations = hub.hf_operations(hub.parse_hf("hf://me/zoo@main/store"), uploads)
    assert [op.path_in_repo for op in operations] == [
        "store/vision-cnn/v1/config.json",
        "store/vision-cnn/v1/weights.safetensors",
        "store/vision-cnn/v1/manifest.json",
        "store/README.md",
        "store/index.json",
    ]
    assert operations[1].upload_info.sha256.hex() == checkpoint.sha256_file(ckpt / "weights.safetensors")


def test_hf_errors_are_one_line(tmp_path, ckpt, closed_port):
    offline = {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_TOKEN": "",
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port}",
    }
    no_token = run_cli("push", str(ckpt), "hf://me/zoo", env=offline)
    assert no_token.returncode == 2 and "no Hugging Face token" in no_token.stderr, no_token.stderr
    unreachable = run_cli("pull", "hf://me/zoo/vision-cnn/v1", str(tmp_path / "dest"), env=offline)
    assert unreachable.returncode == 2 and "cannot reach the store" in unreachable.stderr, unreachable.stderr
    off = run_cli("ls", "hf://me/zoo", env={**offline, "HF_HUB_OFFLINE": "1"})
    assert off.returncode == 2 and off.stderr.count("\n") == 1 and "HF_HUB_OFFLINE" in off.stderr, off.stderr
    assert not (tmp_path / "dest").exists() and not (tmp_path / "hf").exists()


# ---------------------------------------------------------------- model card, cache, imports


def test_store_card_renders_as_a_hugging_face_card(tmp_path, ckpt):
    from huggingface_hub import ModelCard

    parity = tmp_path / "crosscheck.jsonl"
    parity.write_text(
        "".join(
            json.dumps(
                {
                    "model": "vision/cnn",
                    "name": n,
                    "max_error": e,
                    "tolerance": 1e-5,
                    "passed": True,
                    "detail": "",
                }
            )
            + "\n"
            for n, e in (("forward_torch_to_keras_b1", 1.5e-7), ("gradients", 1.0e-5))
        )
    )
    keras = tmp_path / "keras.json"
    keras.write_text(
        json.dumps(
            {
                "model": "vision/cnn",
                "framework": "keras",
                "trained_in": "torch",
                "data": "digits",
                "split": "test",
                "metrics": {"accuracy": 0.75, "loss": 0.5000001},
            }
        )
    )
    url = str(tmp_path / "store")
    entry = hub.push(ckpt, url, parity=parity, results=[keras])
    assert entry["parity"] == {
        "checks": 2,
        "passed": 2,
        "max_error": {"forward_torch_to_keras_b1": 1.5e-7, "gradients": 1.0e-5},
    }
    card = ModelCard((Path(url) / "README.md").read_text())
    assert card.data.library_name == "zoo" and card.data.license == "apache-2.0"
    assert {"zoo", "vision-cnn", "trained-in-torch"} <= set(card.data.tags)
    assert card.data.datasets == ["digits"] and set(card.data.metrics) == {"accuracy", "loss"}
    table = [line for line in card.text.splitlines() if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1  # every row has the header's columns
    assert [row.split("|")[2].strip() for row in table[2:]] == ["torch", "keras"]  # a row per framework
    assert "2/2 checks passed; largest error 1.00e-05 (gradients)" in card.text
    with pytest.raises(UserError, match="evaluates 'nlp/seq2seq'"):
        keras.write_text(json.dumps({"model": "nlp/seq2seq", "framework": "keras", "metrics": {}}))
        hub.push(ckpt, url, results=[keras])


def test_resolve_pulls_store_urls_into_a_cache_keyed_by_sha256(tmp_path, store, ckpt, cache):
    folder = hub.resolve(f"{store}/vision-cnn@v1")
    assert folder == cache / hashlib.sha256((ckpt / "manifest.json").read_bytes()).hexdigest()
    assert hub.load(f"file://{store}/vision-cnn/v1")["folder"] == folder  # a hit: the same copy
    (folder / "meta.json").write_text("{}")  # a damaged cache entry is fetched again, not used
    assert hub.resolve(f"{store}/vision-cnn@v1") == folder and tree(folder) == tree(ckpt)
    assert hub.resolve(ckpt) == ckpt  # local folders are untouched
    with pytest.raises(UserError, match="store URL"):
        checkpoint.resolve(f"file://{store}/vision-cnn/v1")  # the format reads folders; the hub fetches


def test_hub_imports_no_framework():
    code = (
        "import sys; import shared.hub, shared.checkpoint; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.slow
def test_evaluate_a_store_url_in_the_other_framework(tmp_path):
    """tools/train.py (keras) -> tools/hub.py push -> tools/evaluate.py URL --fw torch: the same test metrics."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    train = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train.py"),
            "zoo/vision/cnn",
            "--fw",
            "keras",
            "--set",
            "base_width=4",
            "--set",
            "image_size=8",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr
    trained = json.loads((tmp_path / "run" / "result.json").read_text())["test"]
    assert run_cli("push", str(tmp_path / "run"), str(tmp_path / "store")).returncode == 0
    evaluate = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "evaluate.py"),
            f"file://{tmp_path}/store/vision-cnn/v1",
            "--fw",
            "torch",
            "--threads",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    result = json.loads(evaluate.stdout[evaluate.stdout.index("{") :])
    assert result["trained_in"] == "keras" and result["framework"] == "torch"
    assert result["metrics"]["accuracy"] == pytest.approx(trained["accuracy"], abs=1e-9)
    assert result["metrics"]["loss"] == pytest.approx(trained["loss"], rel=1e-4)
