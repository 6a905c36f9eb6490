"""A loaded model that runs numpy batches: a twin from a checkpoint, or an ONNX export folder.

Every backend offers the same few things to the server:
    spec, config, state     the registry entry, the model's Config and the preprocessing state
                            (normalisation statistics, class names, tokenizers) the task needs
    forward(batch)          {name: array} -> {name: array}, the batch keys spec.forward takes
    stepper()               encode / decode_step for translation models (shared/decoding.py)
    describe()              framework, source path and the checkpoint's sha256 for /v1/models

torch and keras go through spec.forward, exactly as tools/predict.py does. onnx reads an export folder
written by tools/export.py: export.json (schema 1) lists every file with its sha256, all checked before
anything is loaded. The graph "model" runs in onnxruntime on the same batch dict; a translation export's
"encoder" and "decoder_step" graphs are opened by shared/export/pipeline.load_runner and joined into the
Stepper the zoo's greedy and beam search drive (shared/export/decode.py), as the twins' encode /
decode_step are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared import checkpoint, models, tasks
from shared.errors import UserError
from shared.export import decode, pipeline
from shared.recipe import config_from_dict
from zoo import registry

EXPORT_FILE = "export.json"
ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
}
SEQUENCE_GRAPHS = ("encoder", "decoder_step")


def set_threads(fw: str, threads: int) -> None:
    """Intra-op threads of the framework (inter-op 1): before the model is built."""
    if fw == "torch":
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # already set in this process (tests start several servers)
            pass
    elif fw == "keras":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already initialised its thread pools
            pass


class TwinBackend:
    """The torch or Keras twin of a checkpoint (folder, run folder or store URL)."""

    def __init__(self, path: str, fw: str, threads: int):
        if (Path(path) / EXPORT_FILE).is_file():
            raise UserError(f"{path} is an export folder (it holds {EXPORT_FILE}): serve it with --fw onnx")
        self.framework = fw
        set_threads(fw, threads)
        self.spec, self.config, self.model, ckpt = models.load_model(path, fw)
        self.state = tasks.load_state(self.spec, ckpt)
        self.source = str(ckpt["folder"])
        folder = Path(ckpt["folder"])
        self.checkpoint = {  # the fields export.json's "checkpoint" has, so both kinds of server agree
            "path": str(path),
            "folder": str(folder),
            "sha256": checkpoint.sha256_file(folder / "weights.safetensors"),
            "manifest_sha256": checkpoint.sha256_file(folder / "manifest.json"),
            "framework": ckpt["meta"].get("framework"),
            "created": ckpt["meta"].get("created"),
        }

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.spec.forward(self.model, batch, training=False)

    def stepper(self):
        return self.spec.task_module.stepper(self.spec, self.model)

    def describe(self) -> dict:
        return {"framework": self.framework, "checkpoint": self.checkpoint}


def read_export(folder: Path) -> dict:
    """export.json of an export folder, with every file checked: each one it lists present with its sha256
    and size, and no file it does not list."""
    if not (folder / EXPORT_FILE).is_file():
        hint = (
            "a checkpoint: serve it with --fw torch or --fw keras"
            if (folder / "manifest.json").is_file()
            else "not an export folder: make one with tools/export.py --format onnx"
        )
        raise UserError(f"{folder} has no {EXPORT_FILE}; it is {hint}")
    try:
        info = json.loads((folder / EXPORT_FILE).read_text())
        files, graphs = info["files"], info["graphs"]
        schema, kind, model = info["schema"], info["format"], info["model"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{folder}/{EXPORT_FILE} is malformed ({err}): re-export the checkpoint") from None
    if schema != 1 or kind != "onnx":
        raise UserError(
            f"{folder}/{EXPORT_FILE} is schema {schema}, format {kind!r}; --fw onnx serves schema 1 onnx "
            "exports (tools/export.py --format onnx)"
        )
    for name, entry in files.items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            raise UserError(
                f"export file {path} listed in {EXPORT_FILE} is missing: re-export the checkpoint"
            )
        if path.stat().st_size != entry["size"] or checkpoint.sha256_file(path) != entry["sha256"]:
            raise UserError(
                f"export file {path} does not match {EXPORT_FILE} (altered or truncated): re-export"
            )
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {EXPORT_FILE}
    unlisted = sorted(present - set(files))
    if unlisted:
        raise UserError(
            f"{folder} holds files {EXPORT_FILE} does not list ({', '.join(unlisted[:5])}): re-export"
        )
    for graph, entry in graphs.items():
        if entry.get("file") not in files:
            raise UserError(
                f"{EXPORT_FILE} graph {graph!r} names {entry.get('file')!r}, which it does not list"
            )
    if not isinstance(model, str):
        raise UserError(f"{folder}/{EXPORT_FILE} names model {model!r}; expected a name like vision/cnn")
    return info


def export_state(spec, folder: Path, info: dict):
    """The preprocessing state of an export: the checkpoint's preprocessing.json (and tokenizer.json) that
    tools/export.py copies beside the graphs, read by the task as from a checkpoint."""
    listed = sorted(info["files"])
    if "preprocessing.json" not in listed:
        raise UserError(
            f"{folder} lacks preprocessing.json (the checkpoint's normalisation, labels, vocabularies): re-export"
        )
    return tasks.load_state(spec, {"folder": folder, "files": listed})


class OnnxBackend:
    """An ONNX export folder, run by onnxruntime on the CPU."""

    def __init__(self, path: str, threads: int):
        folder = Path(path)
        info = read_export(folder)
        self.framework = "onnx"
        try:
            self.spec = registry.get(info["model"])
        except ValueError as err:
            raise UserError(str(err)) from None
        self.config = config_from_dict(self.spec.config_cls, info.get("config", {}))
        self.state = export_state(self.spec, folder, info)
        self.source = str(folder)
        self.info = info
        self.checkpoint = dict(info.get("checkpoint") or {})
        self.session = self._stepper = None
        graphs = info["graphs"]
        if self.spec.task == "translation":
            if not all(g in graphs for g in SEQUENCE_GRAPHS) or not isinstance(info.get("decoding"), dict):
                raise UserError(
                    f"{folder}/{EXPORT_FILE} lacks the encoder and decoder_step graphs or the 'decoding' section "
                    f"a translation export has: re-export the checkpoint with tools/export.py --format onnx"
                )
            sequence = {"format": "onnx", "graphs": {g: graphs[g] for g in SEQUENCE_GRAPHS}}
            try:
                run = pipeline.load_runner(folder, sequence, threads)
            except Exception as err:  # onnxruntime raises its own exception types
                raise UserError(f"onnxruntime cannot load the graphs of {folder}: {err}") from None
            self._stepper = decode.graph_stepper(run, info["decoding"])
        elif "model" in graphs:
            self.session = self._session(folder / graphs["model"]["file"], threads)
            self.inputs = [(i.name, ONNX_DTYPES.get(i.type)) for i in self.session.get_inputs()]
            self.outputs = [o.name for o in self.session.get_outputs()]
        else:
            raise UserError(f"{folder}/{EXPORT_FILE} has no graph 'model': re-export the checkpoint")

    @staticmethod
    def _session(path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise UserError(f"onnxruntime cannot load {path}: {err}") from None

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.spec.task_module.check_batch(self.config, batch)  # the checks spec.forward makes
        feed = {}
        for name, dtype in self.inputs:
            if name not in batch:
                raise ValueError(f"the ONNX graph takes {name!r}, which the batch lacks ({', '.join(batch)})")
            feed[name] = np.ascontiguousarray(batch[name], dtype=dtype)
        return dict(zip(self.outputs, self.session.run(self.outputs, feed)))

    def stepper(self):
        """The encoder and decoder_step graphs as the Stepper shared/decoding.py drives (translation)."""
        return self._stepper

    def describe(self) -> dict:
        return {
            "framework": "onnx",
            "export": {
                "path": self.source,
                "graphs": self.info["graphs"],
                "verification": self.info.get("verification"),
            },
            "checkpoint": self.checkpoint,
        }


def load(path: str, fw: str, threads: int):
    """The backend for --fw torch|keras|onnx."""
    if fw == "onnx":
        return OnnxBackend(path, threads)
    if fw in ("torch", "keras"):
        return TwinBackend(path, fw, threads)
    raise UserError(f"unknown --fw {fw!r}: expected torch, keras or onnx")
