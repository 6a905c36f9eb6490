"""The Keras twin as exportable graphs: functions that take a dict of a graph's inputs (tensors) and
return a dict of its outputs, and ExportedModel, the Keras model a `.keras` export holds.

Single-graph models run the twin's own `call(model, batch)`. For translation models the adapter below
uses the model's public decoding methods, as torch_graphs.py does for the torch twin: `encode` and
`decode_step` (tensors in and out, as shared/decoding.py's bind() drives them), or `encode` and `decode`
for a decoder that re-reads its whole prefix (the Transformer). Outside a training call the twins'
dropout is off, so these run in inference mode.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras
from keras import ops

from shared.errors import UserError
from shared.models import get_spec
from shared.recipe import config_from_dict


def bodies(spec, model, decoding: dict | None = None) -> dict[str, Callable[[dict], dict]]:
    """graph name -> function (dict of tensors in, dict of tensors out), in inference mode; `decoding` is
    the plan's decoding section (translation models)."""
    if spec.task == "translation":
        return translation_bodies(model, decoding)
    call = spec.impl("keras").call
    return {"model": lambda batch: call(model, batch, training=False)}


# ---- translation adapter ----------------------------------------------------------------------------


def translation_bodies(model, decoding: dict) -> dict[str, Callable[[dict], dict]]:
    if hasattr(model, "decode_step"):  # a decoder with a state of its own (seq2seq's GRU)
        memory_names, state_names = tuple(decoding["memory"]), tuple(decoding["state"])

        def encoder(batch):
            memory, state = model.encode(batch["src"], batch["src_mask"])
            return {**{k: v for k, v in memory.items() if k != "src_mask"}, **state}

        def decoder_step(batch):
            memory = {k: batch[k] for k in memory_names}
            state = {k: batch[k] for k in state_names}
            logits, state, attention = model.decode_step(memory, state, batch["tokens"])
            found = {"logits": logits, **{f"next_{k}": v for k, v in state.items()}}
            if attention is not None:
                found["attention"] = attention
            return found

        return {"encoder": encoder, "decoder_step": decoder_step}

    if not hasattr(model, "decode"):
        raise UserError(
            f"{type(model).__name__} has neither decode_step nor decode: the translation export adapter "
            "(shared/export/keras_graphs.py) needs one of them"
        )

    def memory_encoder(batch):
        memory, _ = model.encode(batch["src"], batch["src_mask"])  # (N, S, E)
        return {"memory": memory}

    def prefix_step(batch):
        prefix = batch["prefix"]  # (N, t)
        with warnings.catch_warnings():  # Keras warns of a softmax over one key: the first step has only BOS
            warnings.filterwarnings(
                "ignore", message="You are using a softmax over axis", category=UserWarning
            )
            logits, maps = model.decode(
                prefix,
                batch["memory"],
                ops.ones_like(prefix, dtype="bool"),
                batch["src_mask"],
                need_weights=True,
            )  # (N, t, V)
        return {"logits": logits[:, -1], "attention": ops.mean(maps[-1][1][:, :, -1], axis=1)}

    return {"encoder": memory_encoder, "decoder_step": prefix_step}


# ---- the model of a .keras export -------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo", name="ExportedModel")
class ExportedModel(keras.Model):
    """A zoo model as one Keras model: `model(inputs)` takes a dict of the twin's batch keys and returns
    its outputs (single-graph models: the "model" graph; translation: the teacher-forced logits), and
    `model.run(graph, inputs)` runs any graph of export.json by name. Its config names the zoo model and
    its Config, so keras.models.load_model rebuilds it where the zoo is importable (this module registers
    the class) and then reads the weights from the archive.
    """

    def __init__(self, model_name: str, config: dict, twin=None, decoding: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model_name, self.model_config = model_name, dict(config)
        # translation: the names of the memory and state tensors (export.json's "decoding")
        self.decoding = (
            None
            if decoding is None
            else {"memory": list(decoding["memory"]), "state": dict(decoding["state"])}
        )
        self._spec = get_spec(model_name)
        self.twin = (
            twin
            if twin is not None
            else self._spec.build("keras", config_from_dict(self._spec.config_cls, self.model_config))
        )
        self.built = True  # the twin built its variables

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "model_name": self.model_name,
            "config": self.model_config,
            "decoding": self.decoding,
        }

    def run(self, graph: str, inputs: dict) -> dict:
        functions = bodies(self._spec, self.twin, self.decoding)
        if graph not in functions:
            raise KeyError(f"{self.model_name} has graphs {', '.join(functions)}; found {graph!r}")
        return functions[graph](inputs)

    def call(self, inputs: dict, training=False):
        if self._spec.task == "translation":
            return self._spec.impl("keras").call(self.twin, inputs, training=False)
        return self.run("model", inputs)
