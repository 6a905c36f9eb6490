"""Image classification: batches {image NHWC float32, label int64}, outputs {logits}."""

from __future__ import annotations

import numpy as np

from shared.data.columns import Split, decode_array, split_columns
from shared.errors import UserError
from shared.metrics import accuracy, cross_entropy, softmax, top_k_accuracy
from shared.tasks import check_keys

PRIMARY_METRIC = "accuracy"
HIGHER_IS_BETTER = True
METRICS = ("accuracy", "loss", "top5_accuracy")  # what metrics() returns (top5 with > 5 classes)


def example_batch(config, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (batch_size, config.image_size, config.image_size, config.in_channels)
    return {
        "image": rng.standard_normal(shape).astype(np.float32),
        "label": rng.integers(0, config.num_classes, size=batch_size).astype(np.int64),
    }


def check_batch(config, batch: dict) -> None:
    check_keys(batch, {"image": ("f", 4)})
    channels = batch["image"].shape[-1]
    if channels != config.in_channels:
        raise ValueError(
            f"images have {channels} channel(s) (NHWC); the model expects in_channels={config.in_channels}"
        )


def image_stats(images: np.ndarray) -> dict:
    scaled = images.astype(np.float64) / 255.0
    axes = tuple(range(scaled.ndim - 1))
    return {"mean": scaled.mean(axis=axes).tolist(), "std": np.maximum(scaled.std(axis=axes), 1e-6).tolist()}


def image_decode(state: dict) -> list:
    """uint8 NHWC -> float32 NHWC, standardised with the training split's per-channel statistics, as
    elementwise float32 steps (shared/data/columns.py), applied per batch where the batch is used."""
    return [("cast", "float32"), ("div", 255.0), ("sub", state["mean"]), ("div", state["std"])]


def normalize(images: np.ndarray, state: dict) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC, standardised with the training split's per-channel statistics."""
    return decode_array(images, image_decode(state))


def prepare(dataset, config, state: dict | None = None):
    """DatasetDict(image uint8 NHWC, label) -> Splits: images stay uint8 (read from the dataset's files
    per batch when it has them) and are decoded per batch; statistics from the training split."""
    splits = {name: split_columns(dataset[name], streamed=("image",)) for name in dataset}
    train_images = splits["train"]["image"] if "train" in splits else next(iter(splits.values()))["image"]
    height, width, channels = train_images.shape[1:]
    if channels != config.in_channels:
        hint = "--set in_channels=3" if channels == 3 else f"--set in_channels={channels}"
        raise UserError(
            f"the data has {channels}-channel images but the model is configured for "
            f"in_channels={config.in_channels}: pass {hint}"
        )
    if (height, width) != (config.image_size, config.image_size):
        raise UserError(
            f"the data has {height}x{width} images but the model is configured for image_size="
            f"{config.image_size}: pass --set image_size={height}"
        )
    labels = np.concatenate([s["label"] for s in splits.values()])
    if labels.max() >= config.num_classes:
        raise UserError(
            f"the data has label {int(labels.max())} but num_classes={config.num_classes}: "
            f"pass --set num_classes={int(labels.max()) + 1}"
        )
    if state is None:
        names = dataset["train"].features["label"].names if "train" in dataset else None
        state = {"kind": "image_standardize", "class_names": names, **image_stats(np.asarray(train_images))}
    out = {
        name: Split(
            {"image": s["image"], "label": s["label"].astype(np.int64)}, {"image": image_decode(state)}
        )
        for name, s in splits.items()
    }
    return out, state


def metrics(outputs: dict, batch: dict) -> dict[str, float]:
    logits, labels = outputs["logits"], batch["label"]
    result = {"accuracy": accuracy(logits, labels), "loss": cross_entropy(logits, labels)}
    if logits.shape[-1] > 5:
        result["top5_accuracy"] = top_k_accuracy(logits, labels, 5)
    return result


def load_image(source: str | bytes, config, what: str = "image") -> np.ndarray:
    """An image file (or the encoded bytes of one) of any size/mode -> uint8 (H, W, C) converted as the
    training data was. `what` names the image in errors (tools/serve.py names the request field)."""
    import io

    from PIL import Image, UnidentifiedImageError

    name = what if isinstance(source, bytes) else f"{what} {source}"
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return fit_image(img, config)
    except FileNotFoundError:
        raise UserError(f"{name} does not exist") from None
    except Image.DecompressionBombError as err:
        raise UserError(f"cannot read {name}: {err} (a decompression bomb?); resize it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(f"cannot read {name}: {err}") from None


def fit_image(img, config) -> np.ndarray:
    """A Pillow image -> uint8 (H, W, C): the model's channels, bilinear resize to image_size."""
    from PIL import Image

    img = img.convert("L" if config.in_channels == 1 else "RGB")
    if img.size != (config.image_size, config.image_size):
        img = img.resize((config.image_size, config.image_size), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def class_names(config, state: dict) -> list[str]:
    return state.get("class_names") or [str(i) for i in range(config.num_classes)]


def top_classes(probabilities: np.ndarray, names: list[str], k: int) -> list[dict]:
    """The k most probable classes of one image, most probable first: label, index, probability."""
    top = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": names[i], "index": int(i), "probability": float(probabilities[i])} for i in top]


def predict(spec, model, config, state: dict, inputs: list[str], options: dict) -> None:
    """Print the top-k classes with probabilities for each image file."""
    names = class_names(config, state)
    images = np.stack([load_image(p, config) for p in inputs])  # uint8; standardised batch by batch
    step = config.eval_batch_size
    probs = np.concatenate(
        [
            softmax(
                spec.forward(model, {"image": normalize(images[i : i + step], state)}, training=False)[
                    "logits"
                ]
            )
            for i in range(0, len(images), step)
        ]
    )
    k = min(int(options.get("top_k", 5)), config.num_classes)
    for path, p in zip(inputs, probs):
        top = top_classes(p, names, k)
        print(f"{path}: " + ", ".join(f"{c['label']} {c['probability']:.3f}" for c in top))
