"""Framework-free data: embedded datasets, hub loaders through a local mirror, the batch iterator."""

import numpy as np
import pytest

from shared import data
from shared.data.iterator import BatchIterator
from shared.errors import UserError


def test_mnist_5k_is_real_fixed_and_split():
    ds = data.load("mnist-5k")
    assert {k: len(v) for k, v in ds.items()} == {"train": 4000, "validation": 500, "test": 500}
    first = ds["train"].with_format("numpy")[:5]
    again = data.load("mnist-5k")["train"].with_format("numpy")[:5]
    assert np.array_equal(first["image"], again["image"]) and first["image"].shape == (5, 28, 28, 1)
    assert set(np.unique(ds["test"].with_format("numpy")[:]["label"])) == set(range(10))


def test_digits():
    ds = data.load("digits")
    assert ds["train"].with_format("numpy")[:1]["image"].shape == (1, 8, 8, 1)


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(UserError, match="unknown dataset 'nope'.*mnist-5k"):
        data.load("nope")
    with pytest.raises(UserError, match="no hub loader"):
        data.load("hub:someone/else")


def write_image_parquet(folder, n, shape, mode, image_column="image"):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        rows = []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buf, format="PNG")
            rows.append({"bytes": buf.getvalue(), "path": None})
        table = pa.table({image_column: rows, "label": rng.integers(0, 10, n)})
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")


def test_hub_mnist_through_a_local_mirror(tmp_path, monkeypatch):
    write_image_parquet(tmp_path / "ylecun/mnist", 30, (28, 28), "L")
    monkeypatch.setenv("ZOO_HUB_MIRROR", str(tmp_path))
    ds = data.load("hub:ylecun/mnist")
    assert {k: len(v) for k, v in ds.items()} == {"train": 27, "validation": 3, "test": 30}
    assert ds["test"].with_format("numpy")[:2]["image"].shape == (2, 28, 28, 1)


def test_hub_cifar_is_rgb_and_a_missing_mirror_folder_is_named(tmp_path, monkeypatch):
    write_image_parquet(tmp_path / "uoft-cs/cifar10", 20, (32, 32, 3), "RGB", image_column="img")
    monkeypatch.setenv("ZOO_HUB_MIRROR", str(tmp_path))
    assert data.load("hub:uoft-cs/cifar10")["train"].with_format("numpy")[:1]["image"].shape == (1, 32, 32, 3)
    with pytest.raises(UserError, match="has no folder zalando-datasets/fashion_mnist"):
        data.load("hub:zalando-datasets/fashion_mnist")


def test_iterator_is_deterministic_and_shards_exactly():
    arrays = {"x": np.arange(103), "y": np.arange(103) * 2}
    one = BatchIterator(arrays, 8, seed=5)
    assert len(one) == 12
    epoch0 = [b["x"] for b in one.batches(0)]
    assert all(np.array_equal(a, b["x"]) for a, b in zip(epoch0, one.batches(0)))
    assert not np.array_equal(epoch0[0], next(one.batches(1))["x"])
    shards = [BatchIterator(arrays, 8, seed=5, rank=r, world_size=2) for r in range(2)]
    for b, (s0, s1) in enumerate(zip(*(s.batches(0) for s in shards))):
        assert np.array_equal(np.concatenate([s0["x"], s1["x"]]), epoch0[b])
    tail = list(BatchIterator(arrays, 8, shuffle=False, drop_last=False).batches(0))
    assert len(tail) == 13 and len(tail[-1]["x"]) == 7
    with pytest.raises(ValueError, match="multiple of world size"):
        BatchIterator(arrays, 7, world_size=2)
