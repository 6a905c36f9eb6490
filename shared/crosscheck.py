"""Tier-1 cross-framework checks: the Keras and PyTorch twins of a model compute the same function.

Each check returns a Check(name, max_error, tolerance, passed, detail). Orchestration is framework-free;
the frameworks are reached through the spec and the trainers' loss_and_grads / make_optimizer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from shared.frameworks import load_both

FORWARD_RTOL = 1e-5  # max |torch - keras| <= 1e-5 * max(1, max |reference|), eval mode, fp32
GRAD_RTOL = 1e-6  # train-mode loss and gradients, relative, computed in float64 (see check_gradients)
STEP_RTOL = 1e-5  # parameters after one optimizer step, relative to max(1, max |parameter|)
BATCH_SIZES = (1, 2, 5)


@dataclass
class Check:
    name: str
    max_error: float
    tolerance: float
    passed: bool
    detail: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def max_rel_error(reference: np.ndarray, other: np.ndarray) -> float:
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        return float("inf")
    if reference.size == 0:
        return 0.0
    return float(np.max(np.abs(reference - other)) / max(1.0, float(np.max(np.abs(reference)))))


def no_dropout(spec, config):
    """The same config with every field named *dropout* set to 0 (train-mode checks need determinism)."""
    zeroed = {f.name: 0.0 for f in dataclasses.fields(config) if "dropout" in f.name}
    return spec.config(**{**dataclasses.asdict(config), **zeroed})


def compare_dicts(
    name: str, reference: dict, other: dict, tolerance: float, relative_floor: float = 1.0
) -> Check:
    """Worst relative error over the shared keys; a key on one side only fails the check."""
    only = sorted(set(reference) ^ set(other))
    if only:
        return Check(
            name, float("inf"), tolerance, False, f"present on one side only: {', '.join(only[:10])}"
        )
    worst, worst_key = 0.0, ""
    for key in reference:
        ref, oth = np.asarray(reference[key], np.float64), np.asarray(other[key], np.float64)
        if ref.shape != oth.shape:
            return Check(name, float("inf"), tolerance, False, f"{key}: shapes {ref.shape} vs {oth.shape}")
        scale = max(relative_floor, float(np.max(np.abs(ref))) if ref.size else 0.0)
        err = float(np.max(np.abs(ref - oth)) / scale) if ref.size else 0.0
        if err > worst or not worst_key:
            worst, worst_key = err, key
    return Check(name, worst, tolerance, worst <= tolerance, f"worst: {worst_key}")


def check_structure(spec, config, torch_model, keras_model) -> list[Check]:
    tw, kw = spec.get_weights(torch_model), spec.get_weights(keras_model)
    torch_params = sum(p.numel() for p in torch_model.parameters())
    keras_params = sum(int(np.prod(v.shape)) for v in keras_model.trainable_variables)
    trainable = {n for n, _ in torch_model.named_parameters()}
    canonical_trainable = sum(int(np.prod(kw[n].shape)) for n in trainable if n in kw)
    shapes_t = {k: tuple(v.shape) for k, v in tw.items()}
    shapes_k = {k: tuple(v.shape) for k, v in kw.items()}
    diff = sorted(set(shapes_t.items()) ^ set(shapes_k.items()))
    return [
        Check(
            "parameter_count",
            float(abs(torch_params - canonical_trainable)),
            0.0,
            torch_params == canonical_trainable,
            f"torch {torch_params:,} trainable; keras exports {canonical_trainable:,} "
            f"(held in {keras_params:,} Keras values)",
        ),
        Check(
            "canonical_names_and_shapes",
            float(len(diff)),
            0.0,
            not diff,
            f"{len(shapes_t)} tensors" if not diff else f"differ: {diff[:6]}",
        ),
    ]


def check_forward(spec, config, source, target, direction: str, batch_sizes=BATCH_SIZES) -> list[Check]:
    spec.set_weights(target, spec.get_weights(source))
    checks = []
    for bs in batch_sizes:
        batch = spec.example_batch(config, batch_size=bs, seed=100 + bs)
        ref, out = spec.forward(source, batch, training=False), spec.forward(target, batch, training=False)
        check = compare_dicts(f"forward_{direction}_b{bs}", ref, out, FORWARD_RTOL)
        checks.append(check)
    return checks


def check_round_trip(spec, torch_model, keras_model) -> list[Check]:
    checks = []
    for name, first, second in (("torch", torch_model, keras_model), ("keras", keras_model, torch_model)):
        original = spec.get_weights(first)
        spec.set_weights(second, original)
        back = spec.get_weights(second)
        spec.set_weights(first, back)
        again = spec.get_weights(first)
        err = max(
            (float(np.max(np.abs(original[k].astype(np.float64) - again[k]))) if original[k].size else 0.0)
            for k in original
        )
        checks.append(
            Check(
                f"round_trip_{name}_keras_torch" if name == "torch" else "round_trip_keras_torch_keras",
                err,
                0.0,
                err == 0.0,
                f"{len(original)} tensors, bitwise",
            )
        )
    return checks


def build_float64(spec, config):
    """Both twins in float64: a torch .double() model and a Keras model built under floatx float64."""
    import keras

    if keras.backend.backend() == "jax":  # JAX truncates float64 to float32 unless x64 is on (process-wide)
        import jax

        jax.config.update("jax_enable_x64", True)
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")  # the global policy is cached: floatx alone is not enough
    try:
        keras_model = spec.build("keras", config)
    finally:
        keras.config.set_floatx(previous[0])
        keras.config.set_dtype_policy(previous[1])
    float32 = sorted(
        {v.path for v in keras_model.variables if v.dtype != "float64" and "float" in str(v.dtype)}
    )
    if float32:
        raise ValueError(f"the Keras twin kept float32 variables under a float64 policy: {float32[:5]}")
    return spec.build("torch", config).double(), keras_model


def float64_batch(batch: dict) -> dict:
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in batch.items()}


def check_gradients(spec, config) -> list[Check]:
    """Train-mode loss and gradients of the same weights on the same batch, computed in float64.

    Why float64: a ReLU whose float32 pre-activation lies within rounding of zero (a deep net with
    train-mode BatchNorm has ~100 such elements per batch) takes slope 1 in one framework and 0 in the
    other; BatchNorm then spreads that one element over its channel, and gradients differ by up to 13%
    although both are correct float32 results (found on resnet18 at 224 px; see zoo/vision/cnn/README.md).
    In float64 no pre-activation sits that close to zero, so any difference left is a real one.
    """
    from shared.keras_weights import grads_to_canonical
    from shared.train import keras_trainer, torch_trainer

    torch_model, keras_model = build_float64(spec, config)
    spec.set_weights(keras_model, spec.get_weights(torch_model))
    batch = float64_batch(spec.example_batch(config, batch_size=4, seed=7))
    t_loss, t_grads = torch_trainer.loss_and_grads(spec.impl("torch"), torch_model, batch, config)
    k_loss, k_grads_by_path = keras_trainer.loss_and_grads(spec.impl("keras"), keras_model, batch, config)
    k_grads = grads_to_canonical(keras_model, spec.weight_map(config), k_grads_by_path)
    loss_err = abs(t_loss - k_loss) / max(1e-8, abs(t_loss))
    # Relative to each tensor's own scale, floored at 1% of the largest gradient so that tensors whose
    # gradient is rounding noise around zero do not dominate.
    floor = 0.01 * max(float(np.max(np.abs(g))) for g in t_grads.values())
    grads = compare_dicts("gradients", t_grads, k_grads, GRAD_RTOL, relative_floor=floor)
    grads.detail += " (float64)"
    return [
        Check(
            "train_loss",
            loss_err,
            GRAD_RTOL,
            loss_err <= GRAD_RTOL,
            f"torch {t_loss:.8f}, keras {k_loss:.8f} (float64)",
        ),
        grads,
    ]


def _compare_after(name, spec, torch_model, keras_model, start, buffers: bool = True) -> list[Check]:
    after_t, after_k = spec.get_weights(torch_model), spec.get_weights(keras_model)
    trainable = {n for n, _ in torch_model.named_parameters()}
    moved = max(float(np.max(np.abs(after_t[n] - start[n]))) for n in trainable)
    check = compare_dicts(
        name, {n: after_t[n] for n in trainable}, {n: after_k[n] for n in trainable}, STEP_RTOL
    )
    check.detail += f"; largest parameter change {moved:.2e}"
    if moved == 0.0:
        check = Check(name, 0.0, STEP_RTOL, False, "the step changed no parameter")
    checks = [check]
    buffers = buffers and {
        n for n in after_t if n not in trainable and after_t[n].dtype.kind == "f" and "running_var" not in n
    }
    if buffers:
        # Running means move identically. Running variances do not: torch updates them with the unbiased
        # batch variance, Keras with the biased one (a factor n/(n-1) on the batch term); they are
        # compared by the forward checks after transfer, not here.
        checks.append(
            compare_dicts(
                f"{name}_running_means",
                {n: after_t[n] for n in buffers},
                {n: after_k[n] for n in buffers},
                STEP_RTOL,
            )
        )
    return checks


def check_optimizer_step(spec, config, torch_model, keras_model, steps: int = 2) -> list[Check]:
    """The recipe's optimizer (with its weight decay and clipping) fed identical gradients in both twins.

    Adam's first steps move each weight by about lr * sign(gradient), so float32 noise in a near-zero
    gradient would flip a step; feeding the same gradients isolates the optimizer's semantics (the
    gradients themselves are compared by check_gradients).
    """
    import keras
    import torch

    from shared.keras_weights import grads_to_canonical
    from shared.train import keras_trainer, torch_trainer

    start = spec.get_weights(torch_model)
    spec.set_weights(keras_model, start)
    rows = spec.weight_map(config)
    t_opt, k_opt = torch_trainer.make_optimizer(torch_model, config), keras_trainer.make_optimizer(config)
    variables = keras_model.trainable_variables
    k_opt.build(variables)
    params = dict(torch_model.named_parameters())
    for step in range(steps):
        batch = spec.example_batch(config, batch_size=4, seed=11 + step)
        _, k_grads = keras_trainer.loss_and_grads(spec.impl("keras"), keras_model, batch, config)
        for name, grad in grads_to_canonical(keras_model, rows, k_grads).items():
            params[name].grad = torch.as_tensor(grad.copy())
        if config.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(torch_model.parameters(), config.grad_clip_norm)
        t_opt.step()
        k_opt.apply_gradients([(keras.ops.convert_to_tensor(k_grads[v.path]), v) for v in variables])
    # Only Keras ran forward passes here, so running statistics are compared by check_train_step.
    return _compare_after("optimizer_step", spec, torch_model, keras_model, start, buffers=False)


def check_train_step(spec, config, torch_model, keras_model) -> list[Check]:
    """One whole training step through each trainer (forward, loss, backward, update) with plain SGD.

    Run in float64 for the reason check_gradients gives: in float32 a ReLU kink taken differently moved a
    tiny ResNet's weights 5e-3 apart after one step although both steps were correct float32 results.
    """
    from shared.data.keras_data import to_tensors as keras_tensors
    from shared.data.torch_data import to_tensors as torch_tensors
    from shared.train import keras_trainer, torch_trainer

    sgd = spec.config(**{**dataclasses.asdict(config), "optimizer": "sgd", "weight_decay": 0.0})
    start = spec.get_weights(torch_model)
    spec.set_weights(keras_model, start)
    batch = float64_batch(spec.example_batch(sgd, batch_size=4, seed=13))
    torch_model.train()
    torch_trainer.train_step(
        spec.impl("torch"),
        torch_model,
        torch_trainer.make_optimizer(torch_model, sgd),
        torch_tensors(batch),
        sgd,
    )
    module = keras_trainer.TrainModule(keras_model, spec.impl("keras"), sgd)
    module.compile(optimizer=keras_trainer.make_optimizer(sgd))
    module.train_on_batch(keras_tensors(batch))
    return _compare_after("train_step_sgd", spec, torch_model, keras_model, start)


def run_tier1(spec, config=None, batch_sizes=BATCH_SIZES, seed: int = 0) -> list[Check]:
    """Every tier-1 check for one model and config (default: the model's Config)."""
    torch, keras = load_both()
    config = spec.config() if config is None else config
    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    torch_model, keras_model = spec.build("torch", config), spec.build("keras", config)
    checks = check_structure(spec, config, torch_model, keras_model)
    if not all(c.passed for c in checks):
        return (
            checks  # weights cannot be moved between twins whose tensors differ: nothing else is meaningful
        )
    checks += check_forward(spec, config, torch_model, keras_model, "torch_to_keras", batch_sizes)
    keras_model_2 = spec.build("keras", config)  # its own random init, sent the other way
    checks += check_forward(spec, config, keras_model_2, torch_model, "keras_to_torch", batch_sizes)
    checks += check_round_trip(spec, torch_model, keras_model)
    quiet = no_dropout(spec, config)
    checks += check_gradients(spec, quiet)
    torch_model, keras_model = spec.build("torch", quiet), spec.build("keras", quiet)
    checks += check_optimizer_step(spec, quiet, torch_model, keras_model)
    checks += check_train_step(spec, quiet, *build_float64(spec, quiet))
    if spec.extra_checks is not None:
        checks += spec.extra_checks(spec, config)
    return checks
