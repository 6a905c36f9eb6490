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
        ax_loss.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, label="train loss (step)")
    if epochs:
        ax_loss.plot([e["step"] for e in epochs], [e["train_loss"] for e in epochs], "o-", label="train loss (epoch)")
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
