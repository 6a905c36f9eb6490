"""ModelSpec: the framework-free handle every tool and test uses to reach a model.

Importing this module imports neither torch nor tensorflow; `build` imports the twin's module
(and so its framework) only when asked. The spec sits above the tasks and the building blocks: it binds a
model folder to its task and is what a harness is handed; nothing below it imports it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared import tasks
from shared.errors import UserError
from shared.frameworks import FRAMEWORKS, check_framework, framework_of
from shared.recipe import make_config

__all__ = ["FRAMEWORKS", "ModelSpec", "TrainingRecipe", "check_framework", "framework_of"]


@dataclass(frozen=True)
class TrainingRecipe:
    """A named way to train a model, as data: `tools/train.py MODEL --recipe NAME` applies it (explicit
    --set / --data / --epochs ... still override it); the card's Recipes block is generated from it.

    name:       the --recipe name ("mnist-5k").
    summary:    one line: what it trains, on what, where it was run or is sized for.
    config:     Config overrides (as --set KEY=VALUE).
    data:       the dataset (as --data); None: the model's default dataset. data_kwargs: its loader's.
    metric:     the test metric it is judged by; expect: the value it should reach (at least, or at most
                for a lower-is-better metric), or None for a recipe not run here.
    device:     "cpu" (runs on a laptop) or "gpu" (sized for one; pass --gpus 1).
    """

    name: str
    summary: str
    config: dict = field(default_factory=dict)
    data: str | None = None
    data_kwargs: dict = field(default_factory=dict)
    metric: str = ""
    expect: float | None = None
    device: str = "cpu"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo. Everything here is framework-free; twins are imported lazily.

    package:        the model folder as a module path ("zoo.vision.cnn"); it holds config.py,
                    torch_impl.py and keras_impl.py.
    config_cls:     the model's Config dataclass.
    task:           the task's name ("classification", ...); shared.tasks holds its module.
    extra_checks:   optional cross-framework checks beyond tier 1 (for example decoding identity),
                    called as extra_checks(spec, config) -> list[shared.crosscheck.Check].
    smoke_config /  a tiny CPU recipe for CI smoke trains: Config overrides, and keyword arguments
    smoke_data:     for the default dataset's loader (for example a smaller generated set).
    """

    name: str
    task: str
    dataset: str
    package: str
    config_cls: type
    extra_checks: Callable | None = field(repr=False, default=None)
    # A few-second CPU training run for CI: Config overrides and keyword arguments for the dataset loader.
    smoke_config: dict = field(default_factory=dict)
    smoke_data: dict = field(default_factory=dict)
    # Configs a person might try that cannot be built: (overrides, the words the one-line error must hold).
    # tests/test_model_contract.py checks each through spec.config() and the first through tools/train.py.
    bad_configs: tuple = ()
    # Canonical-name prefixes whose tensors fine-tuning (--init) re-initialises when their shape changes:
    # the output layer, vocabulary-sized tables (shared/train/finetune.py).
    heads: tuple = ()
    # Named training recipes (--recipe NAME, --list-recipes; the card's Recipes block is made from them).
    recipes: tuple = ()

    def named_recipes(self) -> tuple:
        """The spec's recipes, then "smoke" made from smoke_config and smoke_data (CI's few-second run)."""
        data = dict(self.smoke_data)
        smoke = TrainingRecipe(
            "smoke",
            "A few-second CPU run, CI's smoke recipe (tiny model, small data); no target.",
            config=dict(self.smoke_config),
            data=data.pop("dataset", None),
            data_kwargs=data,
        )
        return (*self.recipes, smoke)

    def recipe(self, name: str) -> TrainingRecipe:
        """The recipe named `name`; an unknown name is a one-line error listing them."""
        for recipe in self.named_recipes():
            if recipe.name == name:
                return recipe
        known = ", ".join(r.name for r in self.named_recipes())
        raise UserError(f"{self.name} has no recipe {name!r}; its recipes: {known} (--list-recipes)")

    @property
    def task_module(self):
        """The framework-free task module (shared.tasks.<task>): batches, data, metrics."""
        return tasks.get(self.task)

    def config(self, **overrides) -> Any:
        """The model's Config with overrides applied; unknown fields or wrong types -> ValueError."""
        return make_config(self.config_cls, overrides)

    def impl(self, fw: str):
        """The twin's module (imports that framework)."""
        if check_framework(fw) == "torch":
            importlib.import_module("shared.data.torch_data")  # guards torch + TensorFlow in one process
        return importlib.import_module(f"{self.package}.{check_framework(fw)}_impl")

    def build(self, fw: str, config: Any = None) -> Any:
        config = self.config() if config is None else config
        model = self.impl(fw).build_model(config)
        model.zoo_config = config  # the Keras weight map and forward read it back
        return model

    def get_weights(self, model: Any) -> dict[str, np.ndarray]:
        fw = framework_of(model)
        if fw == "torch":
            from shared.torch_weights import get_weights

            return get_weights(model)
        from shared.keras_weights import get_weights

        return get_weights(model, self.weight_map(model.zoo_config))

    def set_weights(self, model: Any, weights: dict[str, np.ndarray]) -> None:
        fw = framework_of(model)
        if fw == "torch":
            from shared.torch_weights import set_weights

            return set_weights(model, weights)
        from shared.keras_weights import set_weights

        return set_weights(model, self.weight_map(model.zoo_config), weights)

    def weight_map(self, config: Any) -> list:
        """The folder's declarative weight map (weights.py; numpy only): Keras path -> canonical name."""
        try:
            weights = importlib.import_module(f"{self.package}.weights")
        except ModuleNotFoundError as err:
            if err.name != f"{self.package}.weights":
                raise
            return self.impl("keras").weight_map(config)  # a folder that still keeps it in keras_impl.py
        return weights.weight_map(config)

    def build_twins(self, config: Any = None) -> tuple[Any, Any]:
        """(torch model, Keras model) holding the same weights: the torch twin's initialisation, copied."""
        torch_model = self.build("torch", config)
        keras_model = self.build("keras", config)
        self.set_weights(keras_model, self.get_weights(torch_model))
        return torch_model, keras_model

    def example_batch(self, config: Any, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
        return self.task_module.example_batch(config, batch_size=batch_size, seed=seed)

    def forward(
        self, model: Any, batch: dict[str, np.ndarray], training: bool = False
    ) -> dict[str, np.ndarray]:
        """Run the twin on a numpy batch; returns numpy outputs (logits, never probabilities)."""
        fw = framework_of(model)
        self.task_module.check_batch(model.zoo_config, batch)
        if fw == "torch":
            from shared.torch_weights import forward_numpy
        else:
            from shared.keras_weights import forward_numpy
        return forward_numpy(self.impl(fw), model, batch, training)

    def default_config_fields(self) -> dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(self.config_cls)}
