"""PNG plots people would rather look at than read. matplotlib with the Agg backend; no framework."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(steps: list[dict], epochs: list[dict], path: Path, title: str) -> Path:
    """Per-step training loss (left) and per-epoch validation metrics (right)."""
    plt = _pyplot()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    if steps:
        ax_loss.plot(
            [s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, label="train loss (step)"
        )
    if epochs:
        ax_loss.plot(
            [e["step"] for e in epochs], [e["train_loss"] for e in epochs], "o-", label="train loss (epoch)"
        )
        if "val_loss" in epochs[0]:
            ax_loss.plot([e["step"] for e in epochs], [e["val_loss"] for e in epochs], "s-", label="val loss")
        for key in [k for k in epochs[0] if k.startswith("val_") and k != "val_loss"]:
            ax_val.plot([e["epoch"] for e in epochs], [e[key] for e in epochs], "o-", label=key)
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_val.set_xlabel("epoch")
    ax_val.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def overlay_curves(curves: dict[str, list[float]], path: Path, title: str, ylabel: str = "loss") -> Path:
    """Several curves over the same steps, e.g. the torch and keras twins' losses."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in curves.items():
        ax.plot(range(len(values)), values, lw=1.0, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def attention_heatmap(
    weights, source_tokens: list[str], target_tokens: list[str], path: Path, title: str
) -> Path:
    """Attention weights (target tokens x source tokens, rows sum to 1) as a heatmap with token labels."""
    plt = _pyplot()
    rows, cols = len(target_tokens), len(source_tokens)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * cols + 2.0), max(3.0, 0.35 * rows + 1.5)))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(cols), source_tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rows), target_tokens, fontsize=8)
    ax.set_xlabel("source token")
    ax.set_ylabel("generated token")
    fig.colorbar(image, ax=ax, fraction=0.04)
    ax.set_title(title if len(title) <= 80 else title[:77] + "...", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def segmentation_overlay(
    image,
    mask,
    steering_deg: float,
    path: Path,
    class_names: list[str],
    colours,
    alpha: float = 0.45,
    arrow_gain: float = 3.0,
    label: str = "",
) -> Path:
    """A class mask blended over its image (class 0 left untinted; the mask is resized to the image with
    nearest neighbours), a steering arrow from the bottom centre turned arrow_gain times the steering
    angle (positive right) so that small angles show, and a legend. Pillow only, pixel-exact."""
    import math

    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    image = np.asarray(image, np.uint8)  # (H, W, 3)
    height, width = image.shape[:2]
    labels = np.asarray(
        Image.fromarray(np.asarray(mask, np.uint8)).resize((width, height), Image.Resampling.NEAREST)
    )
    tint = (labels > 0)[..., None] * float(alpha)  # (H, W, 1)
    blended = image * (1 - tint) + np.asarray(colours, np.float32)[labels] * tint
    canvas = Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    known = math.isfinite(steering_deg)  # NaN: unknown steering (a frame without odometry), no arrow
    theta = (
        math.radians(max(-80.0, min(80.0, steering_deg * arrow_gain))) if known else 0.0
    )  # from straight ahead
    x0, y0, length, line = width / 2, height - 3, 0.4 * height, max(2, height // 60)
    x1, y1 = x0 + length * math.sin(theta), y0 - length * math.cos(theta)
    for side in (-1, 1) if known else ():  # the shaft, then the head: two strokes back at +-25 degrees
        draw.line([(x0, y0), (x1, y1)], fill=(255, 40, 40), width=line)
        back = theta + math.pi + side * math.radians(25)
        head = max(6, height // 16)
        draw.line(
            [(x1, y1), (x1 + head * math.sin(back), y1 - head * math.cos(back))],
            fill=(255, 40, 40),
            width=line,
        )
    font = ImageFont.load_default(size=max(10, height // 20))
    text = f"steering {steering_deg:+.1f} deg (arrow x{arrow_gain:g})" if known else "steering unknown"
    text = f"{label}: {text}" if label else text  # e.g. "prediction" / "truth" side by side
    draw.text((4, 2), text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    size = max(10, height // 20)
    for row, c in enumerate(range(1, len(class_names))):
        y = 4 + (row + 1) * (size + 4)
        draw.rectangle([4, y, 4 + size, y + size], fill=tuple(int(v) for v in colours[c]), outline=(0, 0, 0))
        draw.text(
            (8 + size, y - 1),
            class_names[c],
            fill=(255, 255, 255),
            font=font,
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )
    canvas.save(path)
    return path


def sequence_logos(matrices: list, titles: list[str], path: Path, columns: int = 2) -> Path:
    """DNA sequence logos (information content, bits) of position probability matrices (w, 4) in
    A, C, G, T order, one panel per matrix: learned filters beside the motifs they match."""
    import logomaker
    import numpy as np
    import pandas as pd

    plt = _pyplot()
    rows = max(1, -(-len(matrices) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 1.7 * rows), squeeze=False)
    for ax in axes.flat[len(matrices) :]:
        ax.axis("off")
    for ax, matrix, title in zip(axes.flat, matrices, titles):
        probabilities = pd.DataFrame(np.asarray(matrix, np.float64), columns=list("ACGT"))
        bits = logomaker.transform_matrix(probabilities, from_type="probability", to_type="information")
        logomaker.Logo(bits, ax=ax, color_scheme="classic")
        ax.set_ylim(0, 2)
        ax.set_ylabel("bits")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mutagenesis_map(
    delta, sequence: str, path: Path, title: str, sites: list[tuple[int, int, str]] = ()
) -> Path:
    """In-silico mutagenesis of one sequence: delta (L, 4) is the change of the label's logit when the base
    at each position becomes A, C, G or T (0 at the reference base). Top: a logo of each reference base's
    importance (minus the mean change of its three substitutions); bottom: the (4, L) heatmap. `sites`
    (start, end, name) shades planted or annotated sites."""
    import logomaker
    import numpy as np
    import pandas as pd

    plt = _pyplot()
    delta = np.asarray(delta, np.float64)
    reference = np.array(["ACGT".index(b) if b in "ACGT" else -1 for b in sequence.upper()])
    importance = np.zeros_like(delta)
    known = reference >= 0
    importance[np.flatnonzero(known), reference[known]] = -delta[known].sum(axis=1) / 3.0
    fig, (ax_logo, ax_map) = plt.subplots(
        2,
        1,
        figsize=(min(24, 2 + len(sequence) / 9), 4.2),
        sharex=True,
        gridspec_kw={"height_ratios": [1, 1.2]},
    )
    logomaker.Logo(pd.DataFrame(importance, columns=list("ACGT")), ax=ax_logo, color_scheme="classic")
    ax_logo.set_ylabel("importance")
    limit = float(np.max(np.abs(delta))) or 1.0
    image = ax_map.imshow(
        delta.T,
        aspect="auto",
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        extent=(-0.5, len(sequence) - 0.5, 3.5, -0.5),
    )
    ax_map.set_yticks(range(4), list("ACGT"))
    ax_map.set_xlabel("position")
    fig.colorbar(image, ax=ax_map, orientation="horizontal", fraction=0.08, pad=0.35, label="logit change")
    for start, end, name in sites:
        ax_logo.axvspan(start - 0.5, end - 0.5, color="gold", alpha=0.25, lw=0)
        ax_map.add_patch(
            plt.Rectangle((start - 0.5, -0.5), end - start, 4, fill=False, ec="goldenrod", lw=1.5)
        )
        ax_logo.text((start + end) / 2, ax_logo.get_ylim()[1], name, ha="center", va="bottom", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
