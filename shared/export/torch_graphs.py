"""The torch twin as exportable graphs: modules that take a dict of a graph's inputs and return a dict
of its outputs (GraphModule turns them into the positional form torch.export and ONNX take).

Single-graph models run the twin's own `call(model, batch)`. Translation models need an encoder and a
one-step decoder, and the adapter below takes them from the model's public decoding methods: `encode`
and `decode_step` (tensors in and out, as shared/decoding.py's bind() drives them), or `encode` and
`decode` for a decoder that re-reads its whole prefix (the Transformer). The names of the memory and
state tensors come from the export plan (export.json's "decoding").

The GRU encoder packs each source to its real tokens (pack_padded_sequence), which torch.export cannot
trace with a dynamic length. MaskedGRU computes the same thing without packing: a scan over time that
only updates the state on real tokens (the backward direction scans from the end, so it starts at the
last real token), zeros on padding, as pad_packed_sequence gives. torch.export keeps the scan as a loop,
which ONNX writes as a Scan node: the source length stays dynamic.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch._higher_order_ops import scan

from shared.errors import UserError


class GraphModule(nn.Module):
    """forward(*inputs in the graph's order) -> tuple of outputs in the graph's order."""

    def __init__(self, graph, body: nn.Module):
        super().__init__()
        self.body = body
        self.input_names = tuple(graph.input_names)
        self.output_names = tuple(graph.output_names)

    def forward(self, *inputs):
        outputs = self.body(dict(zip(self.input_names, inputs)))
        missing = [k for k in self.output_names if k not in outputs]
        if missing:
            raise UserError(f"the export adapter returns {', '.join(outputs)}; the graph needs {missing}")
        return tuple(outputs[k] for k in self.output_names)


class TwinCall(nn.Module):
    """The twin's call(model, batch) in eval mode."""

    def __init__(self, impl, model: nn.Module):
        super().__init__()
        self.model = model
        self.call = impl.call

    def forward(self, batch: dict) -> dict:
        return self.call(self.model, batch, training=False)


def bodies(spec, model: nn.Module, decoding: dict | None = None) -> dict[str, nn.Module]:
    """graph name -> module (dict in, dict out), for `model` in eval mode; `decoding` is the plan's
    decoding section (translation models)."""
    model.eval()
    if spec.task == "translation":
        return translation_bodies(model, decoding)
    return {"model": TwinCall(spec.impl("torch"), model).eval()}


def graph_modules(plan, spec, model: nn.Module) -> dict[str, GraphModule]:
    made = bodies(spec, model, plan.decoding)
    return {name: GraphModule(graph, made[name]).eval() for name, graph in plan.graphs.items()}


# ---- translation adapter ----------------------------------------------------------------------------


def translation_bodies(model: nn.Module, decoding: dict) -> dict[str, nn.Module]:
    if hasattr(model, "decode_step"):  # a decoder with a state of its own (seq2seq's GRU)
        return {"encoder": StepEncoder(model), "decoder_step": Step(model, decoding)}
    if hasattr(model, "decode"):  # the decoder re-reads the whole prefix (Transformer)
        return {"encoder": MemoryEncoder(model), "decoder_step": PrefixStep(model)}
    raise UserError(
        f"{type(model).__name__} has neither decode_step nor decode: the translation export adapter "
        "(shared/export/torch_graphs.py) needs one of them"
    )


class MemoryEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        memory, _ = self.model.encode(batch["src"], batch["src_mask"])  # (N, S, E)
        return {"memory": memory}


class PrefixStep(nn.Module):
    """Logits of the token after `prefix` and the last layer's cross-attention of that position (head
    mean), as the twin's decode_step computes them."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        prefix = batch["prefix"]  # (N, t)
        logits, maps = self.model.decode(
            prefix,
            batch["memory"],
            torch.ones_like(prefix, dtype=torch.bool),
            batch["src_mask"],
            need_weights=True,
        )  # (N, t, V)
        return {"logits": logits[:, -1], "attention": maps[-1][1][:, :, -1].mean(dim=1)}


class StepEncoder(nn.Module):
    """The model's encode: its memory (but src_mask, an input already) and its first state, by name. A GRU
    encoder that packs its sources (which torch.export cannot trace at a dynamic length) is swapped, on a
    copy of the model, for MaskedGRUEncoder."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        if isinstance(getattr(getattr(model, "encoder", None), "rnn", None), nn.GRU):
            self.model = copy.deepcopy(model)
            self.model.encoder = MaskedGRUEncoder(self.model.encoder)

    def forward(self, batch):
        memory, state = self.model.encode(batch["src"], batch["src_mask"])
        return {**{k: v for k, v in memory.items() if k != "src_mask"}, **state}


class Step(nn.Module):
    """The model's decode_step: tokens, state and memory in by name; logits, next_<state> and attention."""

    def __init__(self, model, decoding: dict):
        super().__init__()
        self.model = model
        self.memory_names = tuple(decoding["memory"])
        self.state_names = tuple(decoding["state"])

    def forward(self, batch):
        memory = {k: batch[k] for k in self.memory_names}
        state = {k: batch[k] for k in self.state_names}
        logits, state, attention = self.model.decode_step(memory, state, batch["tokens"])
        found = {"logits": logits, **{f"next_{k}": v for k, v in state.items()}}
        if attention is not None:
            found["attention"] = attention
        return found


class MaskedGRUEncoder(nn.Module):
    """An encoder of embedding -> dropout -> nn.GRU(batch_first) over the real tokens, without packing.
    Returns what the twin's encoder returns: outputs (N, S, directions * H), zero on padding, and the top
    layer's final state of each direction, concatenated (N, directions * H)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        rnn = getattr(encoder, "rnn", None)
        if not isinstance(rnn, nn.GRU) or not rnn.batch_first or not hasattr(encoder, "embedding"):
            raise UserError(
                "the translation export adapter expects an encoder of embedding, dropout and a batch-first "
                "nn.GRU (shared/export/torch_graphs.py MaskedGRUEncoder); update the adapter for this twin"
            )
        self.embedding, self.dropout, self.rnn = (
            encoder.embedding,
            getattr(encoder, "dropout", nn.Identity()),
            rnn,
        )

    def forward(self, src, src_mask):
        x = self.dropout(self.embedding(src))  # (N, S, D)
        rnn = self.rnn
        directions = 2 if rnn.bidirectional else 1
        finals = []
        for layer in range(rnn.num_layers):
            outputs, finals = [], []
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                y, final = masked_gru(x, src_mask, rnn, suffix, reverse=bool(direction))
                outputs.append(y)
                finals.append(final)
            x = torch.cat(outputs, dim=-1)  # (N, S, directions * H); eval: no dropout between layers
        return x, torch.cat(finals, dim=-1)


def masked_gru(x, mask, rnn: nn.GRU, suffix: str, reverse: bool):
    """One direction of one layer: x (N, S, D), mask (N, S) bool -> outputs (N, S, H), final state (N, H)."""
    w_ih, w_hh = getattr(rnn, f"weight_ih{suffix}"), getattr(rnn, f"weight_hh{suffix}")  # (3H, D), (3H, H)
    b_ih = getattr(rnn, f"bias_ih{suffix}") if rnn.bias else torch.zeros_like(w_ih[:, 0])
    b_hh = getattr(rnn, f"bias_hh{suffix}") if rnn.bias else torch.zeros_like(w_hh[:, 0])
    gates_x = x.transpose(0, 1) @ w_ih.t() + b_ih  # (S, N, 3H): the input half of every gate, at once
    real = mask.transpose(0, 1)[..., None]  # (S, N, 1)
    h0 = x.new_zeros(x.shape[0], w_hh.shape[1])

    def step(h, inputs):
        gx, keep = inputs
        gh = h @ w_hh.t() + b_hh  # (N, 3H); torch's gate order r, z, n
        x_r, x_z, x_n = gx.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        new = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
        return torch.where(keep, new, h), torch.where(keep, new, torch.zeros_like(new))

    final, outputs = scan(step, h0, (gates_x, real), reverse=reverse)
    return outputs.transpose(0, 1), final
