"""Fine-tuning: start a run from trained weights (--init) and freeze parts of the twin (--freeze).

    --init SOURCE        a zoo checkpoint folder (or a run folder holding one), a store URL (shared/hub:
                         fetched and verified), or a .safetensors file of weights in the torch twin's names
                         (a torchvision ResNet state_dict saved with safetensors.torch.save_file, say)
    --freeze P[,P...]    parameters whose canonical (torch) name is P or starts with "P." are not trained

Loading: every tensor of the twin whose name and shape the source has is loaded. A tensor of the spec's
`heads` (the output layer; vocabulary-sized tables) that the source lacks or holds with another shape
(`--set num_classes=10` on a 1000-class ResNet) keeps its fresh initialisation and is listed as
re-initialised; anything else that differs (a missing, extra or mis-shaped tensor elsewhere) is a one-line
UserError, as are a source that matches nothing, another model's checkpoint and a pickle.

Freezing, the same in both twins: torch parameters get requires_grad=False (the optimizer takes only the
trainable ones) and a BatchNorm whose parameters are all frozen runs in inference mode (running
statistics, not updated); Keras variables get trainable=False and such a BatchNormalization layer
trainable=False (Keras runs a non-trainable BatchNormalization in inference mode).

The source, its sha256 (of the weights file), what was loaded, re-initialised and frozen are recorded in
meta.json and the checkpoint's card (FineTune.record, card_section). Framework-free at import; apply()
touches the framework of the model it is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared import checkpoint, hub
from shared.errors import UserError
from shared.frameworks import framework_of


@dataclass
class Source:
    """A verified --init source: where its weights file is and what it holds (names and shapes)."""

    given: str
    kind: str  # "checkpoint", "store" or "safetensors"
    weights_file: Path
    sha256: str
    shapes: dict  # name -> shape

    def tensors(self) -> dict[str, np.ndarray]:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(self.weights_file))
        except (SafetensorError, TypeError) as err:  # e.g. bfloat16, which numpy lacks
            raise UserError(f"--init {self.given}: {self.weights_file.name} cannot be read ({err})") from None


def _metadata(path: Path) -> dict:
    """The safetensors file's string metadata (its header was checked already)."""
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(length))
    meta = header.get("__metadata__")
    return meta if isinstance(meta, dict) else {}


def read_source(given: str, spec) -> Source:
    """Find and verify --init's weights without loading them: another model's checkpoint, a pickle, a
    file that is not safetensors or a missing path -> one-line UserError."""
    text = str(given)
    if hub.is_store_url(text):
        folder, kind = hub.resolve(text), "store"
    else:
        path = Path(text)
        if not path.exists():
            raise UserError(
                f"--init {text}: no such file or folder (pass a checkpoint folder, a store URL or a "
                ".safetensors file)"
            )
        if path.is_dir():
            folder, kind = checkpoint.resolve(path), "checkpoint"
        else:
            checkpoint.refuse_unsafe(path)  # .pt, .pth, .bin, .pkl ...: pickles are never opened
            if path.suffix.lower() != ".safetensors":
                raise UserError(
                    f"--init {text}: expected a .safetensors file (or a checkpoint folder, a store URL); "
                    "save a torch state_dict with safetensors.torch.save_file"
                )
            shapes = {k: tuple(v[1]) for k, v in checkpoint.check_safetensors(path).items()}
            model = _metadata(path).get("model")
            if model and model != spec.name:
                raise UserError(
                    f"--init {text} holds weights of {model}; this run trains {spec.name}: start from "
                    f"weights of {spec.name}"
                )
            return Source(text, "safetensors", path, checkpoint.sha256_file(path), shapes)
    manifest = checkpoint.verify(folder)
    described = checkpoint.read_object(folder, "config.json")
    if described.get("model") != spec.name:
        raise UserError(
            f"--init {text} is a checkpoint of {described.get('model')}; this run trains {spec.name}: "
            f"start from a checkpoint of {spec.name} (or a safetensors file in its torch twin's names)"
        )
    weights = folder / "weights.safetensors"
    shapes = {k: tuple(v[1]) for k, v in checkpoint.check_safetensors(weights).items()}
    return Source(text, kind, weights, manifest["files"]["weights.safetensors"]["sha256"], shapes)


def _few(names: list[str]) -> str:
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def plan(expected: dict, found: dict, heads: tuple, given: str = "the source") -> tuple[list, list]:
    """(names to load, head names to re-initialise) for a twin expecting `expected` {name: shape} from a
    source holding `found` {name: shape}; any other difference is a one-line UserError."""
    matched = sorted(k for k in expected if k in found and tuple(found[k]) == tuple(expected[k]))
    if not matched:
        raise UserError(
            f"--init {given}: none of its {len(found)} tensors has a name and shape of this model's "
            f"{len(expected)} (its first: {_few(sorted(found))}; the model's first: {_few(sorted(expected))}); "
            "the weights must be in the torch twin's names"
        )

    def is_head(name: str) -> bool:
        return any(matches(name, h) for h in heads)

    differ = [k for k in expected if k not in matched]
    reinit = sorted(k for k in differ if is_head(k))
    problems = []
    misshaped = sorted(k for k in differ if not is_head(k) and k in found)
    if misshaped:
        shown = [f"{k} {tuple(found[k])} for {tuple(expected[k])}" for k in misshaped]
        problems.append(f"mis-shaped {_few(shown)}")
    missing = sorted(k for k in differ if not is_head(k) and k not in found)
    if missing:
        problems.append(f"missing {_few(missing)}")
    extra = sorted(k for k in found if k not in expected and not is_head(k))
    if extra:
        problems.append(f"not in the model {_few(extra)}")
    if problems:
        where = f" (only {', '.join(heads)} may differ: they are re-initialised)" if heads else ""
        raise UserError(
            f"--init {given} does not fit this model's config: {'; '.join(problems)}{where}; "
            "pass the --set values the weights were trained with"
        )
    return matched, reinit


def matches(name: str, prefix: str) -> bool:
    """Whether canonical `name` lies under `prefix` ("layer1" holds "layer1.0.conv1.weight")."""
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def parse_freeze(values) -> tuple[str, ...]:
    """--freeze A,B --freeze C -> ("A", "B", "C")."""
    prefixes = tuple(p.strip() for v in values or () for p in str(v).split(",") if p.strip())
    for p in prefixes:
        if any(c.isspace() for c in p):
            raise UserError(f"--freeze: {p!r} is not a parameter name prefix")
    return prefixes


@dataclass
class FineTune:
    """What --init and --freeze do to one run's twin; `apply` is the trainer's Session hook."""

    spec: object
    source: Source | None
    freeze: tuple = ()
    loaded: list = field(default_factory=list)
    reinitialised: list = field(default_factory=list)
    frozen: list = field(default_factory=list)
    restored: dict | None = None  # a resumed run's record, from its snapshot

    @classmethod
    def of(cls, spec, config, settings) -> FineTune | None:
        """The run's fine-tuning, or None. A resumed run freezes again but loads nothing (the snapshot
        holds its weights)."""
        if not settings.init and not settings.freeze:
            return None
        source = read_source(settings.init, spec) if settings.init and not settings.resume else None
        return cls(spec, source, tuple(settings.freeze))

    def apply(self, model) -> None:
        """Load the source into the freshly built twin, then freeze. Called before the optimizer is made."""
        current = self.spec.get_weights(model)
        if self.source is not None:
            expected = {k: tuple(np.shape(v)) for k, v in current.items()}
            heads = tuple(getattr(self.spec, "heads", ()))
            self.loaded, self.reinitialised = plan(expected, self.source.shapes, heads, self.source.given)
            tensors = self.source.tensors()
            merged = dict(current)
            for name in self.loaded:
                merged[name] = np.asarray(tensors[name]).astype(np.asarray(current[name]).dtype)
            self.spec.set_weights(model, merged)
        if self.freeze:
            self.frozen = freeze(self.spec, model, self.freeze, list(current))

    def record(self) -> dict:
        """meta.json's "init": the source, its sha256, and what was loaded, re-initialised and frozen."""
        if self.restored is not None:
            return self.restored
        out = {"freeze": list(self.freeze), "frozen_tensors": len(self.frozen)}
        if self.source is not None:
            out.update(
                source=self.source.given,
                kind=self.source.kind,
                sha256=self.source.sha256,
                loaded_tensors=len(self.loaded),
                reinitialised=self.reinitialised,
            )
        return out


def freeze(spec, model, prefixes: tuple, names: list[str]) -> list[str]:
    """Freeze the parameters under `prefixes` (canonical names) in either twin; returns the frozen names.
    A prefix that names nothing is a UserError listing the model's top-level blocks."""
    for p in prefixes:
        if not any(matches(n, p) for n in names):
            blocks = sorted({n.split(".")[0] for n in names})
            raise UserError(
                f"--freeze {p}: the model has no parameter under it; its blocks are {', '.join(blocks)}"
            )

    def frozen(name: str) -> bool:
        return any(matches(name, p) for p in prefixes)

    if framework_of(model) == "torch":
        return _freeze_torch(model, frozen)
    return _freeze_keras(spec, model, frozen)


def _freeze_torch(model, frozen) -> list[str]:
    import torch

    names = []
    for name, parameter in model.named_parameters():
        if frozen(name):
            parameter.requires_grad_(False)
            names.append(name)

    def inference(module, args):  # model.train() sets training back; every forward undoes it
        module.training = False

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and name and frozen(f"{name}.weight"):
            module.register_forward_pre_hook(inference)
    return names


def _freeze_keras(spec, model, frozen) -> list[str]:
    import keras

    paths, names = {}, []
    trainable = {v.path for v in model.trainable_variables}
    for row in spec.weight_map(model.zoo_config):
        hit = bool(row.canonical) and all(frozen(c) for c in row.canonical)
        paths.update({path: hit for path in row.keras})
        if hit and any(path in trainable for path in row.keras):
            names.extend(row.canonical)
    for variable in model.variables:
        if paths.get(variable.path):
            variable.trainable = False
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.weights:
            if all(paths.get(v.path) for v in layer.weights):
                layer.trainable = False  # Keras runs a non-trainable BatchNormalization in inference mode
    return names


def card_section(init: dict | None) -> str:
    """The checkpoint card's fine-tuning paragraph ("" when the run started from scratch)."""
    if not init:
        return ""
    lines = ["", "## Fine-tuning", ""]
    if init.get("source"):
        lines.append(
            f"Started from `{init['source']}` ({init['kind']}, weights sha256 `{init['sha256']}`): "
            f"{init['loaded_tensors']} tensors loaded."
        )
        reinit = init.get("reinitialised") or []
        lines.append(
            f"Re-initialised (shape changed): {', '.join(f'`{n}`' for n in reinit)}."
            if reinit
            else "Nothing re-initialised."
        )
    if init.get("freeze"):
        lines.append(
            f"Frozen: {', '.join(f'`{p}`' for p in init['freeze'])} ({init['frozen_tensors']} tensors; "
            "their BatchNorm in inference mode)."
        )
    return "\n".join(lines) + "\n"
