"""tools/export.py and shared/export/: every model exports to every format that applies, the artefact
reloads in its own runtime and reproduces the twin, export.json describes the folder, and a failed
verification or a bad request leaves nothing behind.

Fast set: onnx and savedmodel for every model, plus one model each for torch-export, keras and tflite;
the other combinations are marked slow. Checkpoints are the smoke configs' initial weights (half of them
from the Keras twin, half from the torch twin: any checkpoint exports to any format) with the task's
preprocessing state prepared from the smoke data, saved as tools/train.py saves them.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from shared import checkpoint, models
from shared.data import load as load_data
from shared.errors import UserError
from shared.export import FORMATS, manifest
from shared.export.pipeline import export
from shared.export.plan import SINGLE_GRAPH, TFLITE_TASKS
from shared.export.verify import VerificationError
from shared.recipe import config_to_dict
from tests.conftest import assert_one_line_error, error_lines, run_tool
from zoo import registry

MODELS = registry.list_models()
FAST_EXTRA = {("recsys/mf", "torch-export"), ("recsys/neumf", "keras"), ("vision/cnn", "tflite")}


def cases():
    for fmt in FORMATS:
        for name in MODELS:
            if fmt == "tflite" and registry.get(name).task not in TFLITE_TASKS:
                continue
            fast = fmt in ("onnx", "savedmodel") or (name, fmt) in FAST_EXTRA
            yield pytest.param(name, fmt, marks=() if fast else pytest.mark.slow, id=f"{name}-{fmt}")


def smoke_checkpoint(spec, fw: str, folder):
    """A checkpoint of the smoke config's initial weights, with the preprocessing state of the smoke data."""
    import keras
    import torch

    data_kwargs = dict(spec.smoke_data)
    data = data_kwargs.pop("dataset", spec.dataset)
    config = spec.config(**spec.smoke_config)
    _, state = spec.task_module.prepare(load_data(data, **data_kwargs), config)
    torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    model = spec.build(fw, config)
    extra = {"preprocessing.json": state}
    extra.update(getattr(spec.task_module, "checkpoint_files", lambda s: {})(state))
    return checkpoint.save(
        folder,
        model_name=spec.name,
        config=config_to_dict(config),
        weights=spec.get_weights(model),
        meta={"framework": fw, "data": data, "data_kwargs": data_kwargs},
        extra_files=extra,
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, frameworks):
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        name: smoke_checkpoint(registry.get(name), ("torch", "keras")[i % 2], root / name.replace("/", "-"))
        for i, name in enumerate(MODELS)
    }


def plain_outputs(fmt: str, folder, doc: dict, graph: str, feeds: dict) -> dict:
    """Run one graph of an export with its runtime alone, as docs/EXPORT.md shows (not shared/export)."""
    entry = doc["graphs"][graph]
    names = [t["name"] for t in entry["inputs"]]
    outputs = [t["name"] for t in entry["outputs"]]
    path = str(folder / entry["file"])
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return dict(zip(outputs, session.run(outputs, {k: feeds[k] for k in names})))
    if fmt == "torch-export":
        import torch

        program = torch.export.load(path).module(check_guards=entry["check_guards"])
        with torch.no_grad():
            found = program(*[torch.from_numpy(feeds[k]) for k in names])
        return {k: v.numpy() for k, v in zip(outputs, found)}
    if fmt == "savedmodel":
        import tensorflow as tf

        signature = tf.saved_model.load(path).signatures[entry["signature"]]
        found = signature(**{k: tf.constant(feeds[k]) for k in names})
        return {k: found[k].numpy() for k in outputs}
    if fmt == "keras":
        import keras

        import shared.export.keras_graphs  # noqa: F401  (registers the class a .keras export holds)

        model = keras.models.load_model(path)
        found = model.run(entry["graph"], {k: feeds[k] for k in names})
        return {k: keras.ops.convert_to_numpy(found[k]) for k in outputs}
    if fmt == "tflite":
        import tensorflow as tf

        with warnings.catch_warnings():  # TensorFlow 2.20+ points at the separate LiteRT package
            warnings.simplefilter("ignore")
            runner = tf.lite.Interpreter(model_path=path).get_signature_runner(entry["signature"])
        found = runner(**{k: feeds[k] for k in names})
        return {k: found[k] for k in outputs}
    raise AssertionError(fmt)


@pytest.mark.parametrize("name,fmt", list(cases()))
def test_export_reloads_verifies_and_describes_itself(name, fmt, checkpoints, tmp_path):
    spec = registry.get(name)
    out = tmp_path / "exports" / fmt
    doc = export(str(checkpoints[name]), fmt, out)
    assert [p.name for p in out.parent.iterdir()] == [fmt], "a temp folder was left behind"

    # export.json: the contract tools/serve.py reads, every file listed and matching
    assert manifest.read(out) == json.loads(json.dumps(doc, default=str))
    fw = FORMATS[fmt][0]
    assert (doc["schema"], doc["format"], doc["framework"], doc["model"], doc["task"]) == (
        1,
        fmt,
        fw,
        name,
        spec.task,
    )
    ckpt = checkpoint.load(checkpoints[name])
    assert json.loads(json.dumps(doc["config"])) == ckpt["config"]
    assert doc["checkpoint"]["sha256"] == checkpoint.sha256_file(checkpoints[name] / "weights.safetensors")
    assert doc["checkpoint"]["meta"]["framework"] == ckpt["meta"]["framework"]
    assert {"torch", "tensorflow", "onnxruntime"} <= set(doc["versions"])
    assert ("opset" in doc) == (fmt == "onnx")
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"export.json"}
    assert set(doc["files"]) == on_disk
    assert "preprocessing.json" in doc["files"]
    assert (out / "preprocessing.json").read_bytes() == (
        checkpoints[name] / "preprocessing.json"
    ).read_bytes()
    figures = doc["verification"]
    assert figures["tolerance"] == 1e-5 and figures["batch_sizes"] == [4, 1] and figures["batch_size"] == 4
    assert 0.0 <= figures["max_rel_error"] <= 1e-5 and figures["max_abs_error"] >= figures["max_rel_error"]

    spec, config, twin, _ = models.load_model(checkpoints[name], fw)
    if spec.task == "translation":
        assert set(doc["graphs"]) == {"encoder", "decoder_step"}
        assert figures["decoded_identical"] is True and figures["decoded_tokens"] > 0
        assert doc["tokenizers"]["file"] == "tokenizer.json"
        assert (out / "tokenizer.json").read_bytes() == (checkpoints[name] / "tokenizer.json").read_bytes()
        inputs = [t["name"] for t in doc["graphs"]["encoder"]["inputs"]]
        assert inputs == ["src", "src_mask"]
        assert [t["shape"] for t in doc["graphs"]["encoder"]["inputs"]] == [[None, None], [None, None]]
        # the encoder run by its runtime alone, on a batch of another size and length, against the twin
        batch = spec.example_batch(config, batch_size=3, seed=7)
        batch = {k: batch[k][:, :5] for k in ("src", "src_mask")}
        memory, state = spec.task_module.stepper(spec, twin).encode(batch["src"], batch["src_mask"])
        expected = {**memory, **state}
        found = plain_outputs(fmt, out, doc, "encoder", batch)
    else:
        graph = doc["graphs"]["model"]
        inputs, outputs = SINGLE_GRAPH[spec.task]
        assert set(doc["graphs"]) == {"model"}
        assert [t["name"] for t in graph["inputs"]] == list(inputs)
        assert [t["name"] for t in graph["outputs"]] == list(outputs)
        assert all(t["shape"][0] is None for t in graph["inputs"] + graph["outputs"])
        batch = spec.example_batch(config, batch_size=3, seed=7)
        for t in graph["inputs"]:
            assert (
                str(batch[t["name"]].dtype) == t["dtype"]
                and list(batch[t["name"]].shape[1:]) == t["shape"][1:]
            )
        expected = spec.forward(twin, {k: batch[k] for k in inputs})
        found = plain_outputs(fmt, out, doc, "model", {k: batch[k] for k in inputs})
    assert found
    for key, value in found.items():
        np.testing.assert_allclose(value, expected[key], rtol=1e-5, atol=1e-5, err_msg=key)
    if fmt == "keras":  # the zoo itself still refuses .keras files as checkpoints
        with pytest.raises(UserError, match="refusing"):
            checkpoint.load(out / "model.keras")


def test_a_tampered_artefact_fails_verification_and_leaves_nothing(checkpoints, tmp_path, monkeypatch):
    """The ONNX file is altered after it is written (one weight table shifted): verification must catch it."""
    import onnx
    from onnx import numpy_helper

    from shared.export import onnx as onnx_format

    write = onnx_format.write

    def write_then_tamper(plan, spec, model, folder, fmt="onnx"):
        where, extra = write(plan, spec, model, folder, fmt)
        path = folder / where["model"]["file"]
        proto = onnx.load(str(path))
        largest = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
        array = numpy_helper.to_array(largest)
        largest.CopyFrom(numpy_helper.from_array((array + 0.5).astype(array.dtype), largest.name))
        onnx.save(proto, str(path))
        return where, extra

    monkeypatch.setattr(onnx_format, "write", write_then_tamper)
    out = tmp_path / "exports" / "mf"
    with pytest.raises(VerificationError, match="differs from the torch twin"):
        export(str(checkpoints["recsys/mf"]), "onnx", out)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_a_tolerance_below_the_error_fails_with_exit_1_and_leaves_nothing(checkpoints, tmp_path):
    out = tmp_path / "exports" / "cnn"
    proc = run_tool(
        "tools/export.py",
        str(checkpoints["vision/cnn"]),
        "--format",
        "onnx",
        "--out",
        str(out),
        "--tolerance",
        "1e-12",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1 and "verification failed" in lines[0] and "tolerance 1e-12" in lines[0], lines
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_cli_exports_and_the_folder_checks_itself(checkpoints, tmp_path):
    out = tmp_path / "mf-onnx"
    proc = run_tool("tools/export.py", str(checkpoints["recsys/mf"]), "--format", "onnx", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exported recsys/mf (torch twin) as onnx" in proc.stdout and "<= 1e-05" in proc.stdout
    doc = manifest.read(out)
    assert doc["graphs"]["model"]["file"] == "model.onnx" and doc["opset"] >= 17
    again = run_tool("tools/export.py", str(checkpoints["recsys/mf"]), "--format", "onnx", "--out", str(out))
    assert_one_line_error(again, "already exists", "--overwrite")
    with open(out / "model.onnx", "r+b") as f:  # one byte altered: the folder no longer matches export.json
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(UserError, match="does not match export.json"):
        manifest.read(out)


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--format", "pickle"], ["invalid choice", "pickle"]),
        (["--format", "tflite"], ["tflite covers the image models", "nlp/seq2seq", "onnx or savedmodel"]),
        (["--format", "onnx", "--fw", "keras"], ["made from the torch twin", "savedmodel"]),
        (["--format", "onnx", "--out", "FILE"], ["is a file"]),
        (["--format", "onnx", "--out", "FULL"], ["already exists", "--overwrite"]),
        (["--format", "onnx", "--out", "FULL", "--overwrite"], ["without export.json", "refusing"]),
    ],
    ids=[
        "unknown-format",
        "tflite-for-a-sequence-model",
        "wrong-fw",
        "out-is-a-file",
        "out-exists",
        "out-not-an-export",
    ],
)
def test_bad_requests_are_one_line_errors(args, needles, checkpoints, tmp_path):
    (tmp_path / "FILE").write_text("not a folder")
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "notes.txt").write_text("keep me")
    args = [str(tmp_path / a) if a in ("FILE", "FULL") else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "new")]
    proc = run_tool("tools/export.py", str(checkpoints["nlp/seq2seq"]), *args)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "new").exists() and (tmp_path / "FULL" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "FULL"]


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    proc = run_tool(
        "tools/export.py", str(tmp_path / "nowhere"), "--format", "onnx", "--out", str(tmp_path / "o")
    )
    assert_one_line_error(proc, "does not exist")


@pytest.mark.parametrize(
    "name", ["recsys/mf", pytest.param("nlp/seq2seq", marks=pytest.mark.slow)], ids=["mf", "seq2seq"]
)
def test_bench_export_times_the_twin_and_its_verified_onnx_export(name, tmp_path):
    out = tmp_path / "bench_export.json"
    proc = run_tool("tools/bench_export.py", name, "--repeats", "3", "--warmup", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["kind"] == "bench_export" and result["command"].startswith("python tools/bench_export.py")
    assert result["threads"] == 1 and result["machine"]["cores"] and len(result["load_average"]["end"]) == 3
    row = result["models"][name]
    assert 0 < row["torch_eager_fastest_ms"] <= row["torch_eager_ms"]
    assert 0 < row["onnxruntime_fastest_ms"] <= row["onnxruntime_ms"]
    assert row["onnx_over_torch"] == pytest.approx(row["onnxruntime_ms"] / row["torch_eager_ms"])
    assert row["verified_max_rel_error"] <= 1e-5
    assert name in proc.stdout and "onnxruntime" in proc.stdout
