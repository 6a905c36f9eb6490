"""The training recipe every model Config inherits, and config validation.

Every framework default that differs between Keras and PyTorch is written out here or in the model's
Config, and both trainers read it from there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from shared.errors import UserError

# The training fields every model's Config declares itself (config.py imports nothing from the zoo, so a
# copied folder keeps its whole recipe): name -> type. check_recipe() validates them for every model.
RECIPE_FIELDS: dict[str, type] = {
    "epochs": int,
    "batch_size": int,
    "eval_batch_size": int,
    "optimizer": str,  # "adamw" | "adam" | "sgd"
    "lr": float,
    "adam_beta1": float,
    "adam_beta2": float,
    "adam_epsilon": float,  # torch's default 1e-8; Keras' is 1e-7, so every Config writes it out
    "sgd_momentum": float,
    "weight_decay": float,  # decoupled (AdamW / SGDW style) in both frameworks
    "schedule": str,  # "constant" | "cosine" | "inverse_sqrt"; stepped every optimizer step
    "warmup_steps": int,
    "grad_clip_norm": float,  # global L2 norm; 0 disables
    "label_smoothing": float,
    "seed": int,
}


# Ranges of the recipe's numbers: name -> (lowest, lowest included, highest, highest included).
RECIPE_RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "epochs": (1, True, math.inf, False),
    "batch_size": (1, True, math.inf, False),
    "eval_batch_size": (1, True, math.inf, False),
    "lr": (0.0, False, math.inf, False),
    "adam_beta1": (0.0, True, 1.0, False),
    "adam_beta2": (0.0, True, 1.0, False),
    "adam_epsilon": (0.0, False, math.inf, False),
    "sgd_momentum": (0.0, True, 1.0, False),
    "weight_decay": (0.0, True, math.inf, False),
    "warmup_steps": (0, True, math.inf, False),
    "grad_clip_norm": (0.0, True, math.inf, False),  # 0 disables clipping
    "label_smoothing": (0.0, True, 1.0, False),
    "seed": (0, True, 2**32, False),  # numpy's legacy seeding takes [0, 2**32)
}


def _interval(low: float, low_in: bool, high: float, high_in: bool) -> str:
    if high == math.inf:
        return f"{'>=' if low_in else '>'} {low:g}"
    shown = "2**32" if high == 2**32 else f"{high:g}"
    return f"in {'[' if low_in else '('}{low:g}, {shown}{']' if high_in else ')'}"


def check_recipe(config: Any) -> None:
    """The training fields of any model's Config: present, and each in its range (UserError if not).
    Every float field of the Config, recipe or not, must be finite (--set lr=inf or dropout=nan)."""
    missing = [name for name in RECIPE_FIELDS if not hasattr(config, name)]
    if missing:
        raise UserError(f"{type(config).__module__}.Config lacks the recipe field(s) {', '.join(missing)}")
    if config.optimizer not in ("adamw", "adam", "sgd"):
        raise UserError(f"optimizer must be adamw, adam or sgd; found {config.optimizer!r}")
    if config.schedule not in ("constant", "cosine", "inverse_sqrt"):
        raise UserError(f"schedule must be constant, cosine or inverse_sqrt; found {config.schedule!r}")
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{name} must be a finite number; found {value}")
    for name, (low, low_in, high, high_in) in RECIPE_RANGES.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{name} must be a number; found {value!r}")
        above = value >= low if low_in else value > low
        below = value <= high if high_in else value < high
        if not (above and below):
            raise UserError(f"{name} must be {_interval(low, low_in, high, high_in)}; found {value}")


@dataclass
class Recipe:
    """Base of the Configs not yet written out (a Config now declares RECIPE_FIELDS itself)."""

    epochs: int = 3
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adamw"
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    sgd_momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    grad_clip_norm: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        pass


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Convert a value (often a string from --set key=value) to the field's declared type."""
    kind = _field_type(cls, name)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        kind = options[0]
    origin = typing.get_origin(kind) or kind
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
                return value.lower() in ("true", "1", "yes")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if origin is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if origin in (tuple, list):
            if isinstance(value, str):
                value = json.loads(value if value.startswith("[") else f"[{value}]")
            inner = typing.get_args(kind)[0] if typing.get_args(kind) else None
            items = [inner(v) if inner in (int, float, str) else v for v in value]
            return origin(items)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise UserError(
            f"config field {name!r} expects {getattr(kind, '__name__', kind)}; found {value!r}"
        ) from None
    return value


def make_config(cls: type, overrides: dict[str, Any] | None = None) -> Any:
    """Build and validate cls(**overrides); unknown fields and wrong types raise UserError."""
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(
            f"unknown config field(s) {', '.join(unknown)} for {cls.__module__}.{cls.__name__}; "
            f"known fields: {', '.join(sorted(names))}"
        )
    config = cls(**{k: _coerce(cls, k, v) for k, v in overrides.items()})
    check_recipe(config)
    try:
        config.validate()  # a model's own checks raise ValueError with a one-line message
    except UserError:
        raise
    except ValueError as err:
        raise UserError(str(err)) from None
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a Config from config.json, tolerating fields added later with defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    return make_config(cls, {k: v for k, v in values.items() if k in names})


def parse_set_flags(items: list[str]) -> dict[str, str]:
    """--set key=value pairs -> dict (types are applied by make_config)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value; found {item!r}")
        out[key.strip()] = value.strip()
    return out
