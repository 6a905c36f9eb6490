"""torch.export programs (.pt2) of the torch twin, run back with torch.export.load.

One <graph>.pt2 per graph. The program takes the graph's inputs positionally, in export.json's order,
and returns a tuple of its outputs in that order.

Guards. torch.export adds shape guards where traced code depends on a size; some are only about memory
layout at an axis of size 1 (the Transformer's cross-attention reshapes a transposed tensor, a copy or a
view depending on whether the prefix is one token long), and refuse inputs the program computes right.
Each program is tried at the smallest inputs (every dynamic axis 1); one whose guards refuse them gets
"check_guards": false in export.json and is loaded with .module(check_guards=False). Verification then
runs it at batch 1 and at a one-token prefix, so those sizes are proven by comparison, not by guards.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from shared.export.onnx import dynamic_shapes, example_args, torch_dims
from shared.export.torch_graphs import graph_modules


def write(plan, spec, model, folder: Path, fmt: str = "torch-export") -> tuple[dict, dict]:
    modules = graph_modules(plan, spec, model)
    dims = torch_dims(plan)
    where = {}
    for name, graph in plan.graphs.items():
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.export.export(
                modules[name], example_args(plan, graph), dynamic_shapes=dynamic_shapes(graph, dims)
            )
        torch.export.save(program, str(folder / f"{name}.pt2"))
        where[name] = {"file": f"{name}.pt2", "check_guards": guards_accept_smallest(program, plan, graph)}
    return where, {}


def smallest(plan, graph) -> list[torch.Tensor]:
    """The tracing example cut to size 1 on every dynamic axis."""
    tensors = []
    for t in graph.inputs:
        array = plan.examples[graph.name][t.name]
        cut = tuple(slice(0, 1) if isinstance(d, str) else slice(None) for d in t.dims)
        tensors.append(torch.from_numpy(np.ascontiguousarray(array[cut])))
    return tensors


def guards_accept_smallest(program, plan, graph) -> bool:
    try:
        with torch.no_grad():
            program.module()(*smallest(plan, graph))
    except AssertionError as err:  # torch.export's "Guard failed: ..."
        if "Guard failed" not in str(err):
            raise
        return False
    return True


def runner(folder: Path, graphs: dict):
    """run(graph, feeds) -> outputs by name, each graph's program loaded with torch.export.load."""
    programs = {}
    for name, entry in graphs.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(Path(folder) / entry["file"]))
            programs[name] = program.module(check_guards=entry.get("check_guards", True))

    def run(graph: str, feeds: dict) -> dict:
        entry = graphs[graph]
        inputs = [torch.from_numpy(np.ascontiguousarray(feeds[t["name"]])) for t in entry["inputs"]]
        with torch.no_grad():
            outputs = programs[graph](*inputs)
        return {t["name"]: v.numpy() for t, v in zip(entry["outputs"], outputs)}

    return run
