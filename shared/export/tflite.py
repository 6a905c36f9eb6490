"""TFLite (fp32) of the Keras twin, for the image models, run back with tf.lite.Interpreter.

The twin goes through a SavedModel (shared/export/keras_export.py, in a scratch folder removed afterwards)
and TFLiteConverter.from_saved_model; no quantisation, so the model stays fp32. The batch axis stays
dynamic: the interpreter's signature runner resizes its input to each batch. TensorFlow is imported only
when this runs.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from shared.errors import UserError
from shared.export.plan import TFLITE_TASKS

TFLITE_FILE = "model.tflite"


def check(spec) -> None:
    if spec.task not in TFLITE_TASKS:
        raise UserError(
            f"--format tflite covers the image models (tasks {', '.join(TFLITE_TASKS)}); {spec.name} has task "
            f"{spec.task}: use --format onnx or savedmodel"
        )


def write(plan, spec, model, folder: Path, fmt: str = "tflite") -> tuple[dict, dict]:
    import tensorflow as tf

    from shared.export.keras_export import write_savedmodel

    check(spec)
    scratch = folder / "savedmodel-scratch"  # inside the temp folder, gone before the files are listed
    try:
        write_savedmodel(plan, spec, model, scratch)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(scratch), signature_keys=list(plan.graphs))
        (folder / TFLITE_FILE).write_bytes(converter.convert())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {name: {"file": TFLITE_FILE, "signature": name} for name in plan.graphs}, {}


def runner(folder: Path, graphs: dict):
    """run(graph, feeds) -> outputs by name, through the interpreter's signature runners."""
    import tensorflow as tf

    interpreters = {}

    def run(graph: str, feeds: dict) -> dict:
        entry = graphs[graph]
        if entry["file"] not in interpreters:
            with warnings.catch_warnings():  # TensorFlow 2.20+ points at the separate LiteRT package
                warnings.simplefilter("ignore")
                interpreters[entry["file"]] = tf.lite.Interpreter(
                    model_path=str(Path(folder) / entry["file"])
                )
        signature = interpreters[entry["file"]].get_signature_runner(entry["signature"])
        found = signature(**{t["name"]: feeds[t["name"]] for t in entry["inputs"]})
        return {t["name"]: found[t["name"]] for t in entry["outputs"]}

    return run
