"""The Keras twin as exportable graphs: functions that take a dict of a graph's inputs (tensors) and
return a dict of its outputs, and ExportedModel, the Keras model a `.keras` export holds.

Single-graph models run the twin's own `call(model, batch)`. For translation models the adapter below is
the one place that reaches inside a Keras translation twin, through the methods its decoding already
uses: `encode`, and `decoder` (a recurrent decoder) or `decode` (a decoder that re-reads its prefix).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras
from keras import ops


def bodies(spec, model) -> dict[str, Callable[[dict], dict]]:
    """graph name -> function (dict of tensors in, dict of tensors out), in inference mode."""
    if spec.task == "translation":
        return translation_bodies(model)
    call = spec.impl("keras").call
    return {"model": lambda batch: call(model, batch, training=False)}


# ---- translation adapter ----------------------------------------------------------------------------


def translation_bodies(model) -> dict[str, Callable[[dict], dict]]:
    if hasattr(model, "decode"):  # the decoder re-reads the whole prefix (Transformer)

        def encoder(batch):
            memory, _ = model.encode(batch["src"], batch["src_mask"], training=False)  # (N, S, E)
            return {"memory": memory}

        def decoder_step(batch):
            prefix = batch["prefix"]  # (N, t)
            with (
                warnings.catch_warnings()
            ):  # Keras warns of a softmax over one key: the first step has only BOS
                warnings.filterwarnings(
                    "ignore", message="You are using a softmax over axis", category=UserWarning
                )
                logits, maps = model.decode(
                    prefix,
                    batch["memory"],
                    ops.ones_like(prefix, dtype="bool"),
                    batch["src_mask"],
                    need_weights=True,
                    training=False,
                )  # (N, t, V)
            return {"logits": logits[:, -1], "attention": ops.mean(maps[-1][1][:, :, -1], axis=1)}

        return {"encoder": encoder, "decoder_step": decoder_step}

    def recurrent_encoder(batch):
        keys, values, hidden = model.encode(batch["src"], batch["src_mask"], training=False)
        return {"keys": keys, "values": values, "hidden": ops.stack(hidden, axis=1)}  # hidden (N, layers, H)

    def recurrent_step(batch):
        state = batch["hidden"]
        hidden = [state[:, i] for i in range(state.shape[1])]  # layers x (N, H); the layer count is static
        logits, hidden, weights = model.decoder(
            batch["tokens"], hidden, batch["keys"], batch["values"], batch["src_mask"], training=False
        )
        return {"logits": logits, "next_hidden": ops.stack(hidden, axis=1), "attention": weights}

    return {"encoder": recurrent_encoder, "decoder_step": recurrent_step}


# ---- the model of a .keras export -------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo", name="ExportedModel")
class ExportedModel(keras.Model):
    """A zoo model as one Keras model: `model(inputs)` takes a dict of the twin's batch keys and returns
    its outputs (single-graph models: the "model" graph; translation: the teacher-forced logits), and
    `model.run(graph, inputs)` runs any graph of export.json by name. Its config names the zoo model and
    its Config, so keras.models.load_model rebuilds it where the zoo is importable (this module registers
    the class) and then reads the weights from the archive.
    """

    def __init__(self, model_name: str, config: dict, twin=None, **kwargs):
        super().__init__(**kwargs)
        from shared.recipe import config_from_dict
        from zoo import registry

        self.model_name, self.model_config = model_name, dict(config)
        self._spec = registry.get(model_name)
        self.twin = (
            twin
            if twin is not None
            else self._spec.build("keras", config_from_dict(self._spec.config_cls, self.model_config))
        )
        self.built = True  # the twin built its variables

    def get_config(self) -> dict:
        return {"name": self.name, "model_name": self.model_name, "config": self.model_config}

    def run(self, graph: str, inputs: dict) -> dict:
        functions = bodies(self._spec, self.twin)
        if graph not in functions:
            raise KeyError(f"{self.model_name} has graphs {', '.join(functions)}; found {graph!r}")
        return functions[graph](inputs)

    def call(self, inputs: dict, training=False):
        if self._spec.task == "translation":
            return self._spec.impl("keras").call(self.twin, inputs, training=False)
        return self.run("model", inputs)
