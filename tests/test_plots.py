"""shared/plots.py draws what it is given: the figure's size, the data's colours where the data is, and a
different picture for different data (a file that merely exists would pass none of these)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared import plots

# matplotlib's first two line colours (tab:blue, tab:orange) and viridis' ends.
BLUE, ORANGE = (31, 119, 180), (255, 127, 14)
VIRIDIS_LOW, VIRIDIS_HIGH = (68, 1, 84), (253, 231, 37)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def count(image: np.ndarray, colour, tolerance: int = 12) -> int:
    return int(np.sum(np.all(np.abs(image - np.array(colour)) <= tolerance, axis=-1)))


def test_training_curves_draw_steps_and_epochs(tmp_path):
    steps = [{"step": i, "loss": 2.0 * 0.97**i} for i in range(60)]
    epochs = [
        {"epoch": e, "step": 30 * e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_acc": 0.5 + e / 10}
        for e in (1, 2)
    ]
    image = pixels(plots.training_curves(steps, epochs, tmp_path / "a.png", "run"))
    assert image.shape == (440, 1100, 3)  # figsize (10, 4) at 110 dpi
    left, right = image[:, :550], image[:, 550:]
    assert count(left, BLUE) > 50 and count(left, ORANGE) > 50  # step losses, epoch losses (left)
    assert count(right, BLUE) > 50 and count(right, ORANGE) < 10  # val_acc alone on the right
    flatter = [{"step": i, "loss": 2.0} for i in range(60)]
    other = pixels(plots.training_curves(flatter, epochs, tmp_path / "b.png", "run"))
    assert np.any(other != image)
    again = pixels(plots.training_curves(steps, epochs, tmp_path / "c.png", "run"))
    assert np.array_equal(again, image)


def test_overlay_curves_draw_one_line_per_curve(tmp_path):
    image = pixels(plots.overlay_curves({"torch": [3, 2, 1], "keras": [1, 2, 3]}, tmp_path / "o.png", "t"))
    assert image.shape == (440, 770, 3)
    assert count(image, BLUE) > 100 and count(image, ORANGE) > 100
    one = pixels(plots.overlay_curves({"torch": [3, 2, 1]}, tmp_path / "p.png", "t"))
    assert count(one, ORANGE) < count(image, ORANGE) // 5  # one curve: no second colour beyond stray pixels


def test_attention_heatmap_colours_follow_the_weights(tmp_path):
    weights = np.eye(4)  # target token i attends to source token i only
    image = pixels(plots.attention_heatmap(weights, list("abcd"), list("wxyz"), tmp_path / "h.png", "t"))
    low, high = count(image, VIRIDIS_LOW), count(image, VIRIDIS_HIGH)
    assert high > 100 and low > 2 * high  # 4 bright cells of 16, 12 dark
    flipped = pixels(
        plots.attention_heatmap(1 - weights, list("abcd"), list("wxyz"), tmp_path / "f.png", "t")
    )
    assert count(flipped, VIRIDIS_HIGH) > 2 * count(flipped, VIRIDIS_LOW)  # 12 bright cells, 4 dark
