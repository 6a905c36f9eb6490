"""Exports of the Keras twin: a TensorFlow SavedModel (Keras' ExportArchive) and a native `.keras` file.

savedmodel   savedmodel/ holds one signature per graph ("model", or "encoder" and "decoder_step"; the
             first is also "serving_default"), keyword inputs named as in export.json, a dict of outputs.
             Plain TensorFlow loads it: tf.saved_model.load(path).signatures["model"](image=...).
keras        model.keras holds shared.export.keras_graphs.ExportedModel: keras.models.load_model rebuilds
             it where the zoo is importable (its code is the zoo's Keras twin) and reads its weights.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from shared.export.keras_graphs import ExportedModel, bodies
from shared.recipe import config_to_dict

SAVEDMODEL = "savedmodel"
KERAS_FILE = "model.keras"


def signature(graph) -> list:
    return [
        tf.TensorSpec([d if isinstance(d, int) else None for d in t.dims], t.dtype, name=t.name)
        for t in graph.inputs
    ]


def positional(body, graph):
    """fn(*tensors in the graph's order) -> {output: tensor}, as an ExportArchive endpoint takes."""
    names, outputs = graph.input_names, graph.output_names

    def fn(*tensors):
        found = body(dict(zip(names, tensors)))
        return {k: found[k] for k in outputs}

    return fn


def write_savedmodel(plan, spec, model, path: Path) -> None:
    archive = keras.export.ExportArchive()
    archive.track(model)
    made = bodies(spec, model, plan.decoding)
    for name, graph in plan.graphs.items():
        archive.add_endpoint(name, positional(made[name], graph), input_signature=signature(graph))
    archive.write_out(str(path), verbose=False)


def write(plan, spec, model, folder: Path, fmt: str) -> tuple[dict, dict]:
    if fmt == "savedmodel":
        write_savedmodel(plan, spec, model, folder / SAVEDMODEL)
        return {name: {"file": SAVEDMODEL, "signature": name} for name in plan.graphs}, {}
    wrapped = ExportedModel(
        spec.name, config_to_dict(model.zoo_config), twin=model, decoding=plan.decoding, name="zoo_model"
    )
    wrapped.save(str(folder / KERAS_FILE))
    return {name: {"file": KERAS_FILE, "graph": name} for name in plan.graphs}, {}


def _numpy(outputs: dict) -> dict:
    return {k: np.asarray(ops.convert_to_numpy(v)) for k, v in outputs.items()}


def runner(folder: Path, graphs: dict, fmt: str):
    """run(graph, feeds) -> outputs by name, from the SavedModel's signatures or the reloaded .keras."""
    files = {entry["file"] for entry in graphs.values()}
    if fmt == "savedmodel":
        loaded = {f: tf.saved_model.load(str(Path(folder) / f)) for f in files}

        def run(graph: str, feeds: dict) -> dict:
            entry = graphs[graph]
            function = loaded[entry["file"]].signatures[entry["signature"]]
            found = function(**{t["name"]: tf.constant(feeds[t["name"]]) for t in entry["inputs"]})
            return {t["name"]: found[t["name"]].numpy() for t in entry["outputs"]}

        return run

    models = {f: keras.models.load_model(str(Path(folder) / f)) for f in files}

    def run_keras(graph: str, feeds: dict) -> dict:
        entry = graphs[graph]
        inputs = {t["name"]: ops.convert_to_tensor(feeds[t["name"]]) for t in entry["inputs"]}
        found = _numpy(models[entry["file"]].run(entry["graph"], inputs))
        return {t["name"]: found[t["name"]] for t in entry["outputs"]}

    return run_keras
