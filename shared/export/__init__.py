"""Export a checkpoint to a deployable artefact, verified against the zoo twin it came from.

    tools/export.py runs/cnn-torch --format onnx --out exports/cnn-onnx

One file per job: plan.py (what each task exports: graphs, tensors, preprocessing; framework-free),
torch_graphs.py / keras_graphs.py (the twins wrapped as graphs: the only code that knows a twin's
insides), onnx.py, torch_export.py, keras_export.py (SavedModel and .keras), tflite.py (one format
each: write and load back), decode.py (greedy decoding over exported graphs), verify.py (the
comparison with the twin), manifest.py (export.json) and pipeline.py (temp folder, verify, rename).
docs/EXPORT.md describes the export folder.
"""

from __future__ import annotations

# format -> (framework of the twin it is made from, module that writes and loads it)
FORMATS = {
    "onnx": ("torch", "onnx"),
    "torch-export": ("torch", "torch_export"),
    "savedmodel": ("keras", "keras_export"),
    "keras": ("keras", "keras_export"),
    "tflite": ("keras", "tflite"),
}
TOLERANCE = 1e-5  # max |export - zoo| / max(1, |zoo|), elementwise, in fp32
