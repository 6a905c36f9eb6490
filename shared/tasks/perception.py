"""Driving perception: batches {image NHWC float32, mask int64 (B, H, W), steering float32 (B,) degrees},
outputs {logits (B, H, W, classes), steering (B,)}.

Metrics over a whole split: IoU per class from the split's confusion matrix (tp / (tp + fp + fn); NaN for
a class absent from both labels and predictions), mIoU (their mean, NaN classes skipped), pixel accuracy,
steering MAE and RMSE in degrees over the frames whose steering is known (NaN marks unknown), and the
training loss (class-weighted pixel cross-entropy + steering_loss_weight * steering MSE).

Images the model did not see in training (tools/predict.py) follow the resize policy of
shared/data/roads.py: centre-crop to the model's aspect ratio, then a bilinear resize to
image_height x image_width. Only 8-bit RGB files are read; grayscale, alpha, palette, corrupt or missing
files are one-line errors naming the file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from shared.data.columns import Split, column_max, decode_array, split_columns
from shared.data.iterator import BatchIterator
from shared.data.prefetch import prefetch
from shared.data.roads import CLASS_NAMES, centre_crop, fit_to_size, open_rgb
from shared.errors import UserError
from shared.metrics import log_softmax
from shared.plots import segmentation_overlay
from shared.tasks import check_keys

PRIMARY_METRIC = "miou"
HIGHER_IS_BETTER = True
METRICS = (
    "miou",
    "pixel_accuracy",
    "steering_mae",
    "steering_rmse",
    "loss",
    *(f"iou_{n}" for n in CLASS_NAMES),
)
# Overlay colours per class (background is left untinted): road purple, lane marking yellow, vehicle blue.
CLASS_COLOURS = ((0, 0, 0), (160, 60, 200), (255, 230, 0), (0, 90, 255))


def example_batch(config, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (batch_size, config.image_height, config.image_width)
    return {
        "image": rng.standard_normal((*shape, config.in_channels)).astype(np.float32),
        "mask": rng.integers(0, config.num_classes, size=shape).astype(np.int64),
        "steering": (3.0 * rng.standard_normal(batch_size)).astype(np.float32),
    }


def check_batch(config, batch: dict) -> None:
    check_keys(batch, {"image": ("f", 4)})
    n, height, width, channels = batch["image"].shape
    if channels != config.in_channels:
        raise UserError(
            f"images have {channels} channel(s) (NHWC); the model expects in_channels={config.in_channels}"
        )
    if (height, width) != (config.image_height, config.image_width):
        raise UserError(
            f"images are {height}x{width}; the model takes {config.image_height}x{config.image_width} "
            "(its steering head flattens a fixed-size feature map): centre-crop and resize them "
            "(shared/data/roads.py fit_to_size, as tools/predict.py does)"
        )
    if "mask" in batch:
        check_keys(batch, {"mask": ("iu", 3)})
        if batch["mask"].shape != (n, height, width):
            raise UserError(f"batch['mask'] has shape {batch['mask'].shape}; expected {(n, height, width)}")
    if "steering" in batch:
        check_keys(batch, {"steering": ("f", 1)})


def channel_stats(images: np.ndarray, chunk: int = 256) -> dict:
    """Per-channel mean and std of uint8 NHWC images scaled to [0, 1], accumulated in float64 by chunks."""
    total, squares, count = np.zeros(images.shape[-1]), np.zeros(images.shape[-1]), 0
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
        total, squares, count = total + part.sum(0), squares + (part**2).sum(0), count + len(part)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return {"mean": mean.tolist(), "std": np.maximum(std, 1e-6).tolist()}


def image_decode(state: dict) -> list:
    """uint8 NHWC -> float32 NHWC standardised with the training split's per-channel statistics, as
    elementwise float32 steps (shared/data/columns.py), applied per batch where the batch is used."""
    return [("cast", "float32"), ("mul", 1.0 / 255.0), ("sub", state["mean"]), ("div", state["std"])]


def normalize(images: np.ndarray, state: dict) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC standardised with the training split's per-channel statistics."""
    return decode_array(images, image_decode(state))


def prepare(dataset, config, state: dict | None = None):
    """DatasetDict(image uint8 (H, W, 3), mask, steering) -> Splits: images and masks stay uint8 (read from
    the dataset's files per batch when it has them) and are decoded per batch; statistics from the train
    split, read by chunks."""
    splits = {name: split_columns(dataset[name], streamed=("image", "mask")) for name in dataset}
    first = splits["train"] if "train" in splits else next(iter(splits.values()))
    height, width, channels = first["image"].shape[1:]
    if channels != config.in_channels:
        raise UserError(
            f"the data has {channels}-channel images but the model is configured for "
            f"in_channels={config.in_channels}: pass --set in_channels={channels}"
        )
    if (height, width) != (config.image_height, config.image_width):
        raise UserError(
            f"the data has {height}x{width} images but the model is configured for "
            f"{config.image_height}x{config.image_width}: pass --set image_height={height} "
            f"--set image_width={width}, or render roads at the model's size (--data "
            f"roads:{config.image_height}x{config.image_width})"
        )
    top = max(int(column_max(s["mask"])) for s in splits.values() if len(s["mask"]))
    if top >= config.num_classes:
        raise UserError(
            f"the data has class {top} but num_classes={config.num_classes}: pass --set num_classes={top + 1}"
        )
    if state is None:
        names = list(CLASS_NAMES) if config.num_classes == len(CLASS_NAMES) else None
        state = {"kind": "image_standardize", "class_names": names, **channel_stats(first["image"])}
    decode = {"image": image_decode(state), "mask": [("cast", "int64")]}
    out = {
        name: Split(
            {"image": s["image"], "mask": s["mask"], "steering": s["steering"].astype(np.float32)}, decode
        )
        for name, s in splits.items()
    }
    return out, state


def class_names(num_classes: int, state: dict | None = None) -> list[str]:
    names = (state or {}).get("class_names")
    if names:
        return list(names)
    return list(CLASS_NAMES) if num_classes == len(CLASS_NAMES) else [f"class{i}" for i in range(num_classes)]


class Scores:
    """Running sums over batches: the confusion matrix, the pixel cross-entropy and the steering errors."""

    def __init__(self, num_classes: int, class_weights=None, steering_loss_weight: float = 0.0):
        self.confusion = np.zeros((num_classes, num_classes), np.int64)  # rows: label, columns: prediction
        self.class_weights = (
            np.ones(num_classes) if class_weights is None else np.asarray(class_weights, np.float64)
        )
        self.steering_loss_weight, self.ce_sum, self.weight_sum = steering_loss_weight, 0.0, 0.0
        self.errors: list[np.ndarray] = []

    def add(self, logits: np.ndarray, steering: np.ndarray, mask: np.ndarray, target: np.ndarray) -> None:
        c = self.confusion.shape[0]
        index = mask.reshape(-1).astype(np.int64) * c + logits.argmax(-1).reshape(-1)
        self.confusion += np.bincount(index, minlength=c * c).reshape(c, c)
        labels = mask.reshape(-1).astype(np.int64)
        logp = log_softmax(logits).reshape(-1, c)  # (B * H * W, classes), float64
        weights = self.class_weights[labels]
        self.ce_sum -= float((weights * np.take_along_axis(logp, labels[:, None], 1)[:, 0]).sum())
        self.weight_sum += float(weights.sum())
        known = np.isfinite(target)
        self.errors.append((np.asarray(steering, np.float64) - target)[known])

    def result(self, names: list[str]) -> dict[str, float]:
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        errors = np.concatenate(self.errors) if self.errors else np.zeros(0)
        mse = float(np.mean(errors**2)) if errors.size else float("nan")
        defined = iou[np.isfinite(iou)]
        out = {
            "miou": float(defined.mean()) if defined.size else float("nan"),
            **{f"iou_{name}": float(v) for name, v in zip(names, iou)},
            "pixel_accuracy": float(tp.sum() / max(self.confusion.sum(), 1)),
            "steering_mae": float(np.mean(np.abs(errors))) if errors.size else float("nan"),
            "steering_rmse": math.sqrt(mse) if errors.size else float("nan"),
        }
        steering_term = self.steering_loss_weight * mse if errors.size else 0.0
        out["loss"] = self.ce_sum / max(self.weight_sum, 1e-12) + steering_term  # the training loss
        return out


def metrics(outputs: dict, batch: dict, config=None) -> dict[str, float]:
    """Scores of whole-split outputs; `loss` is the training loss given the config (plain mean CE without)."""
    num_classes = outputs["logits"].shape[-1]
    scores = Scores(
        num_classes, getattr(config, "class_weights", None), getattr(config, "steering_loss_weight", 0.0)
    )
    scores.add(outputs["logits"], outputs["steering"], batch["mask"], batch["steering"])
    return scores.result(class_names(num_classes))


def evaluate(spec, model, arrays: dict, config, batch_size: int) -> dict[str, float]:
    """Batch by batch (a split's per-pixel logits would not fit in memory at once)."""
    scores = Scores(config.num_classes, config.class_weights, config.steering_loss_weight)
    for batch in prefetch(BatchIterator(arrays, batch_size, shuffle=False, drop_last=False).batches()):
        out = spec.forward(model, batch, training=False)
        scores.add(out["logits"], out["steering"], batch["mask"], batch["steering"])
    return scores.result(class_names(config.num_classes))


def after_training(spec, model, splits: dict, config, out: Path, state: dict, count: int = 4) -> list[Path]:
    """Overlays of the first `count` test scenes, in <run>/overlays/: the prediction (mask and steering
    arrow) and the ground truth side by side, for a look at what the metrics summarise."""
    from PIL import Image

    test = splits["test"].head(count) if hasattr(splits["test"], "head") else splits["test"]
    test = {k: np.asarray(v[:count]) for k, v in test.items()}
    if not len(test["image"]):
        return []
    outputs = spec.forward(model, {"image": test["image"]}, training=False)
    display = np.asarray(state["std"], np.float32) * test["image"] + np.asarray(state["mean"], np.float32)
    display = np.clip(np.round(display * 255.0), 0, 255).astype(np.uint8)
    folder = Path(out) / "overlays"
    folder.mkdir(parents=True, exist_ok=True)
    names, paths = class_names(config.num_classes, state), []
    for i in range(len(display)):
        scale = max(1, math.ceil(256 / display.shape[1]))  # enlarged so that the legend is readable
        big = np.asarray(
            Image.fromarray(display[i]).resize(
                (display.shape[2] * scale, display.shape[1] * scale), Image.Resampling.NEAREST
            )
        )
        halves = []
        for tag, mask, angle in (
            ("prediction", outputs["logits"][i].argmax(-1), float(outputs["steering"][i])),
            ("truth", test["mask"][i], float(test["steering"][i])),
        ):
            path = folder / f"scene_{i:02d}_{tag}.png"
            halves.append(segmentation_overlay(big, mask, angle, path, names, CLASS_COLOURS, label=tag))
        pair = [Image.open(p) for p in halves]
        joined = Image.new("RGB", (pair[0].width * 2 + 8, pair[0].height), (255, 255, 255))
        joined.paste(pair[0], (0, 0))
        joined.paste(pair[1], (pair[0].width + 8, 0))
        joined.save(folder / f"scene_{i:02d}.png")
        for p in halves:
            p.unlink()
        paths.append(folder / f"scene_{i:02d}.png")
    return paths


def load_frame(path: str, config):
    """An image file -> (model input uint8 (H, W, 3), the centre crop the model saw, at display size)."""
    from PIL import Image

    img = open_rgb(path)
    crop = centre_crop(img, config.image_height, config.image_width)
    scale = (
        256 / crop.height if crop.height < 256 else min(1.0, 720 / crop.height)
    )  # display 256..720 px high
    display = crop.resize(
        (round(crop.width * scale), round(crop.height * scale)),
        Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR,
    )
    model_input = np.asarray(fit_to_size(img, config.image_height, config.image_width), np.uint8)
    return model_input, np.asarray(display, np.uint8), img.size


def frame_summary(mask: np.ndarray, angle: float, names: list[str], size: tuple[int, int], config) -> dict:
    """What tools/predict.py reports per frame: the steering angle in degrees and its side, each class's
    share of the pixels (background left out) and whether the (width, height) input was resized."""
    return {
        "steering_deg": float(angle),
        "direction": "right" if angle > 0 else "left",
        "class_shares": {n: float(np.mean(mask == c)) for c, n in enumerate(names) if c},
        "input_size": [int(size[0]), int(size[1])],
        "resized": tuple(size) != (config.image_width, config.image_height),
    }


def predict(spec, model, config, state: dict, inputs: list[str], options: dict) -> None:
    """Write <out>/<name>_overlay.png per image (mask over the image, steering arrow) and print a summary.

    options: out (folder, default predictions), alpha (mask opacity, default 0.45), arrow_gain (the arrow
    turns this many times the steering angle so small angles show, default 3).
    """
    out = Path(str(options.get("out", "predictions")))
    try:
        alpha, gain = float(options.get("alpha", 0.45)), float(options.get("arrow_gain", 3.0))
    except ValueError:
        raise UserError(f"--opt alpha and arrow_gain take numbers; found {options}") from None
    frames = [load_frame(path, config) for path in inputs]  # every file is checked before anything is written
    images = np.stack([f[0] for f in frames])  # uint8; standardised batch by batch
    logits, steering = [], []
    for start in range(0, len(images), config.eval_batch_size):
        outputs = spec.forward(
            model, {"image": normalize(images[start : start + config.eval_batch_size], state)}, training=False
        )
        logits.append(outputs["logits"].argmax(-1))
        steering.append(outputs["steering"])
    masks, steering = np.concatenate(logits), np.concatenate(steering)
    names = class_names(config.num_classes, state)
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for i, (path, (_, display, size), mask, angle) in enumerate(zip(inputs, frames, masks, steering)):
        stem = Path(path).stem if Path(path).stem not in used else f"{Path(path).stem}_{i}"
        used.add(stem)
        target = segmentation_overlay(
            display,
            mask,
            float(angle),
            out / f"{stem}_overlay.png",
            names,
            CLASS_COLOURS,
            alpha=alpha,
            arrow_gain=gain,
        )
        summary = frame_summary(mask, angle, names, size, config)
        shares = ", ".join(f"{n} {share:.0%}" for n, share in summary["class_shares"].items())
        resized = (
            f" (resized {size[0]}x{size[1]} -> {config.image_width}x{config.image_height})"
            if summary["resized"]
            else ""
        )
        print(
            f"{path}: steering {summary['steering_deg']:+.2f} deg ({summary['direction']}), "
            f"{shares}{resized} -> {target}"
        )
