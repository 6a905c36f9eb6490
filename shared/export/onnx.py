"""ONNX from the torch twin (torch.onnx.export with the dynamo exporter), run back by onnxruntime.

One <graph>.onnx per graph, weights inside; dynamic axes (batch, src_len, tgt_len) keep their names as
symbolic dimensions. torch is imported only when writing.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from shared.errors import UserError


def dynamic_shapes(graph, dims: dict) -> tuple:
    """torch.export's dynamic_shapes for GraphModule.forward(*inputs): one dict per input."""
    return (
        tuple(
            {axis: dims[d] for axis, d in enumerate(t.dims) if isinstance(d, str)} or None
            for t in graph.inputs
        ),
    )


def torch_dims(plan) -> dict:
    import torch

    return {
        name: torch.export.Dim(name, min=low, max=high) if high else torch.export.Dim(name, min=low)
        for name, (low, high) in plan.dims.items()
    }


def example_args(plan, graph) -> tuple:
    import numpy as np
    import torch

    return tuple(
        torch.from_numpy(np.ascontiguousarray(plan.examples[graph.name][n])) for n in graph.input_names
    )


def write(plan, spec, model, folder: Path, fmt: str = "onnx") -> tuple[dict, dict]:
    """Write <graph>.onnx for every graph; returns (graph -> {"file"}, {"opset": ...})."""
    import onnx
    import torch

    from shared.export.torch_graphs import graph_modules

    modules = graph_modules(plan, spec, model)
    dims = torch_dims(plan)
    where, opsets = {}, set()
    for name, graph in plan.graphs.items():
        path = folder / f"{name}.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                modules[name],
                example_args(plan, graph),
                dynamo=True,
                dynamic_shapes=dynamic_shapes(graph, dims),
                input_names=graph.input_names,
                output_names=graph.output_names,
                verbose=False,
            )
        program.save(str(path))
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))
        found = [i.name for i in proto.graph.input]
        if found != graph.input_names:
            raise UserError(f"{path.name} takes inputs {found}; the export plan has {graph.input_names}")
        opsets |= {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")}
        where[name] = {"file": path.name}
    return where, {"opset": max(opsets)}


def session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    threads = threads if threads is not None else int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1 if threads else 0
    return options


def runner(folder: Path, graphs: dict, threads: int | None = None):
    """run(graph, feeds) -> outputs by name, with one onnxruntime session per graph of export.json."""
    import onnxruntime as ort

    sessions = {
        name: ort.InferenceSession(
            str(Path(folder) / entry["file"]), session_options(threads), providers=["CPUExecutionProvider"]
        )
        for name, entry in graphs.items()
    }

    def run(graph: str, feeds: dict) -> dict:
        session = sessions[graph]
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {i.name: feeds[i.name] for i in session.get_inputs()})
        return dict(zip(names, values))

    return run
