"""Sparse embedding gradients checked across the twins: SPEC.extra_checks of recsys/mf and recsys/neumf.

With sparse_embeddings=True the torch twin's nn.Embedding returns sparse gradients, and the Keras twin on
TensorFlow returns tf.IndexedSlices: both hold only the rows the batch touched (a repeated id's rows are
summed). Keras' other backends have no sparse gradient type: there the Keras side is the dense table,
compared on the rows torch's sparse gradient names and as a whole. The checks compare them, in float64 as tier 1 compares gradients, on the touched rows and as
whole tables (zeros elsewhere, and against the dense torch twin), then take one float32 plain-SGD step
through both trainers: the parameters must agree and every row the batch did not touch must be bitwise
unchanged in both frameworks.

Importing this module imports no framework; the checks import them when run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from shared.crosscheck import (
    GRAD_RTOL,
    STEP_RTOL,
    Check,
    build_float64,
    compare_dicts,
    float64_batch,
    no_dropout,
)


def sparse_config(spec, config):
    """The config with sparse tables and the one optimizer that keeps them sparse (plain SGD)."""
    plain_sgd = {
        "sparse_embeddings": True,
        "optimizer": "sgd",
        "sgd_momentum": 0.0,
        "weight_decay": 0.0,
        "grad_clip_norm": 0.0,
    }
    return spec.config(**{**dataclasses.asdict(no_dropout(spec, config)), **plain_sgd})


def sparse_batch(spec, config) -> dict[str, np.ndarray]:
    batch = spec.example_batch(config, batch_size=8, seed=21)
    batch["user"][1] = batch["user"][0]  # a repeated user and item: their rows' gradients are sums
    batch["item"][2] = batch["item"][0]
    return batch


def table_ids(torch_model, batch) -> dict[str, np.ndarray]:
    """Canonical name of every embedding table -> the ids the batch looks up in it."""
    from torch import nn

    return {
        f"{name}.weight": np.unique(batch["user" if "user" in name else "item"])
        for name, module in torch_model.named_modules()
        if isinstance(module, nn.Embedding)
    }


def torch_gradients(spec, model, batch, config) -> tuple[dict, dict]:
    """(dense gradients, {table: (rows, values)} for sparse ones), canonical names."""
    from shared.data.torch_data import to_tensors

    impl = spec.impl("torch")
    model.train()
    model.zero_grad(set_to_none=True)
    tensors = to_tensors(batch)
    impl.compute_loss(impl.call(model, tensors, training=True), tensors, config).backward()
    dense, sparse = {}, {}
    for name, p in model.named_parameters():
        if p.grad.is_sparse:
            grad = p.grad.coalesce()  # sums repeated rows
            sparse[name] = (grad.indices()[0].numpy(), grad.values().numpy())
        else:
            dense[name] = p.grad.numpy().copy()
    return dense, sparse


def keras_gradients(spec, model, batch, config) -> tuple[dict, dict]:
    """The same split for the Keras twin: tf.IndexedSlices -> (rows, values), repeated rows summed."""
    import keras

    from shared.keras_weights import grads_to_canonical
    from shared.train import keras_trainer

    rows = spec.weight_map(config)
    canonical = {r.keras[0]: r.canonical[0] for r in rows if r.transform.name == "identity" and r.keras}
    if keras.backend.backend() != "tensorflow":  # gradients come back dense: nothing sparse to split off
        _, grads = keras_trainer.loss_and_grads(spec.impl("keras"), model, batch, config)
        return grads_to_canonical(model, rows, grads), {}
    import tensorflow as tf

    from shared.data.keras_data import to_tensors

    impl = spec.impl("keras")
    tensors = to_tensors(batch)
    with tf.GradientTape() as tape:
        loss = impl.compute_loss(impl.call(model, tensors, training=True), tensors, config)
    dense, sparse = {}, {}
    for variable, grad in zip(model.trainable_variables, tape.gradient(loss, model.trainable_variables)):
        if isinstance(grad, tf.IndexedSlices):
            indices, values = grad.indices.numpy(), grad.values.numpy()
            unique, position = np.unique(indices, return_inverse=True)
            summed = np.zeros((len(unique), *values.shape[1:]), values.dtype)
            np.add.at(summed, position, values)
            sparse[canonical[variable.path]] = (unique, summed)
        else:
            dense[variable.path] = grad.numpy()
    return grads_to_canonical(model, rows, dense), sparse


def to_dense(sparse: dict, shapes: dict) -> dict:
    out = {}
    for name, (rows, values) in sparse.items():
        table = np.zeros(shapes[name], values.dtype)
        table[rows] = values
        out[name] = table
    return out


def check_sparse_gradients(spec, config, torch_model, keras_model, batch) -> list[Check]:
    import keras

    backend = keras.backend.backend()
    keras_sparse = backend == "tensorflow"  # the one Keras backend with a sparse gradient type
    ids = table_ids(torch_model, batch)
    t_dense, t_sparse = torch_gradients(spec, torch_model, batch, config)
    k_dense, k_sparse = keras_gradients(spec, keras_model, batch, config)
    if not keras_sparse:  # the dense Keras tables, read at the rows torch's sparse gradients hold
        k_sparse = {n: (rows, k_dense.pop(n)[rows]) for n, (rows, _) in t_sparse.items() if n in k_dense}
    shapes = {n: tuple(p.shape) for n, p in torch_model.named_parameters()}
    not_sparse = sorted((set(ids) - set(t_sparse)) | (set(ids) - set(k_sparse)))
    wrong_rows = sorted(
        n
        for n in ids
        if n in t_sparse
        and n in k_sparse
        and not (np.array_equal(t_sparse[n][0], ids[n]) and np.array_equal(k_sparse[n][0], ids[n]))
    )
    floor = 0.01 * max(float(np.max(np.abs(v))) for _, v in t_sparse.values())
    touched = compare_dicts(
        "sparse_grad_touched_rows",
        {n: v for n, (_, v) in t_sparse.items()},
        {n: v for n, (_, v) in k_sparse.items()},
        GRAD_RTOL,
        relative_floor=floor,
    )
    whole_t, whole_k = {**t_dense, **to_dense(t_sparse, shapes)}, {**k_dense, **to_dense(k_sparse, shapes)}
    whole = compare_dicts("sparse_grad_whole_table", whole_t, whole_k, GRAD_RTOL, relative_floor=floor)
    # The same gradients as the dense torch twin (sparse_embeddings=False) computes.
    dense_model = spec.build(
        "torch", spec.config(**{**dataclasses.asdict(config), "sparse_embeddings": False})
    )
    dense_model.to(next(torch_model.parameters()).dtype)
    spec.set_weights(dense_model, spec.get_weights(torch_model))
    reference, _ = torch_gradients(spec, dense_model, batch, config)
    versus_dense = compare_dicts(
        "sparse_grad_equals_dense", reference, whole_t, GRAD_RTOL, relative_floor=floor
    )
    rows = {n: len(ids[n]) for n in ids}
    return [
        Check(
            "sparse_grads_are_sparse",
            float(len(not_sparse)),
            0.0,
            not not_sparse,
            f"torch sparse: {len(t_sparse)}/{len(ids)} tables; keras ({backend}) "
            + (f"IndexedSlices: {len(k_sparse)}/{len(ids)}" if keras_sparse else "dense (no sparse type)")
            + (f"; dense: {', '.join(not_sparse)}" if not_sparse else ""),
        ),
        Check(
            "sparse_grad_rows",
            float(len(wrong_rows)),
            0.0,
            not wrong_rows and not not_sparse,
            f"rows touched per table {rows}" + (f"; differ: {', '.join(wrong_rows)}" if wrong_rows else ""),
        ),
        touched,
        whole,
        versus_dense,
    ]


def check_sparse_sgd_step(spec, config, torch_model, keras_model, batch) -> list[Check]:
    """One plain-SGD step through each trainer with sparse gradients."""
    from shared.data.keras_data import to_tensors as keras_tensors
    from shared.data.torch_data import to_tensors as torch_tensors
    from shared.train import keras_trainer, torch_trainer

    ids = table_ids(torch_model, batch)
    start = spec.get_weights(torch_model)
    spec.set_weights(keras_model, start)
    torch_model.train()
    torch_trainer.train_step(
        spec.impl("torch"),
        torch_model,
        torch_trainer.make_optimizer(torch_model, config),
        torch_tensors(batch),
        config,
    )
    module = keras_trainer.TrainModule(keras_model, spec.impl("keras"), config)
    module.compile(optimizer=keras_trainer.make_optimizer(config))
    module.train_on_batch(keras_tensors(batch))
    after_t, after_k = spec.get_weights(torch_model), spec.get_weights(keras_model)
    trainable = {n for n, _ in torch_model.named_parameters()}
    step = compare_dicts(
        "sparse_sgd_step", {n: after_t[n] for n in trainable}, {n: after_k[n] for n in trainable}, STEP_RTOL
    )
    moved, still = 0.0, 0
    for name, rows in ids.items():
        untouched = np.setdiff1d(np.arange(start[name].shape[0]), rows)
        still += len(untouched)
        for after in (after_t, after_k):
            moved = max(
                moved, float(np.max(np.abs(after[name][untouched] - start[name][untouched]), initial=0.0))
            )
    touched_moved = max(float(np.max(np.abs(after_t[n][r] - start[n][r]))) for n, r in ids.items())
    return [
        step,
        Check(
            "sparse_sgd_untouched_rows",
            moved,
            0.0,
            moved == 0.0 and touched_moved > 0.0,
            f"{still:,} untouched rows bitwise unchanged in both frameworks; touched rows moved up to "
            f"{touched_moved:.2e}",
        ),
    ]


def extra_checks(spec, config) -> list[Check]:
    """Sparse-embedding checks on a copy of `config` with sparse tables and plain SGD."""
    sparse = sparse_config(spec, config)
    batch = sparse_batch(spec, sparse)
    torch_model, keras_model = build_float64(spec, sparse)
    spec.set_weights(keras_model, spec.get_weights(torch_model))
    checks = check_sparse_gradients(spec, sparse, torch_model, keras_model, float64_batch(batch))
    torch_model, keras_model = spec.build("torch", sparse), spec.build("keras", sparse)
    return checks + check_sparse_sgd_step(spec, sparse, torch_model, keras_model, batch)
