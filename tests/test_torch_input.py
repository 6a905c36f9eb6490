"""The torch trainer's input path and loss reads (shared/train/torch_input.py, torch_trainer.Session):
delayed loss reads give on_step every step in order and change no weight; batches reach the device in the
iterator's order (the CUDA prefetcher where a GPU exists); thread defaults."""

from __future__ import annotations

import os

import numpy as np
import pytest

from shared.data.iterator import BatchIterator
from shared.train import threads
from zoo import registry

SPEC = registry.get("vision/cnn")


def train(read_every: int) -> tuple[list, list, dict]:
    """2 epochs of 4 steps of the smoke CNN on fixed random data, the losses read every `read_every` steps;
    returns on_step's calls, the session's step count seen at each call, and the final weights."""
    import torch

    from shared.train import torch_trainer

    config = SPEC.config(**{**SPEC.smoke_config, "epochs": 2, "batch_size": 16})
    iterator = BatchIterator(SPEC.example_batch(config, 64, seed=3), 16, seed=config.seed)
    session = torch_trainer.Session(SPEC, config, torch_trainer.setup(0, 1, config.seed), total_steps=8)
    torch.manual_seed(1)
    session.read_every = read_every
    calls, seen = [], []

    def on_step(step, loss, lr):
        calls.append((step, loss, lr))
        seen.append(session.step)

    for epoch in range(2):
        session.train_epoch(iterator, epoch, 0, on_step, progress=False)
    return calls, seen, SPEC.get_weights(session.model)


def test_delayed_loss_reads_give_every_step_in_order_and_the_same_weights():
    every_step, seen_at_once, weights = train(1)
    delayed, seen_later, delayed_weights = train(3)
    assert [c[0] for c in every_step] == list(range(8)) and delayed == every_step  # loss and lr bitwise
    assert seen_at_once == list(range(1, 9))
    # read after steps 3 and 6 (run counts) and at each epoch's end (4 and 8), not after every step
    assert seen_later == [3, 3, 3, 4, 6, 6, 8, 8]
    assert all(np.array_equal(weights[k], delayed_weights[k]) for k in weights)


def test_device_batches_are_the_iterators_batches_in_order_on_the_cpu():
    import torch

    from shared.data.torch_data import to_tensors
    from shared.train.torch_input import device_batches

    arrays = {"image": np.arange(40, dtype=np.uint8).reshape(10, 2, 2), "label": np.arange(10)}
    iterator = BatchIterator(arrays, 3, seed=5)
    got = list(device_batches(iterator.batches(1), lambda b: to_tensors(b, "cpu"), "cpu"))
    want = list(iterator.batches(1))
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert g["image"].dtype == torch.uint8 and all(np.array_equal(g[k].numpy(), w[k]) for k in w)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_the_cuda_prefetcher_gives_the_batches_in_order_stops_early_and_passes_errors_on():
    import torch

    from shared.data.torch_data import to_tensors
    from shared.train.torch_input import CudaPrefetcher, device_batches

    arrays = {"image": np.random.default_rng(0).integers(0, 255, (64, 8, 8, 3), dtype=np.uint8),
              "label": np.arange(64)}  # fmt: skip
    iterator = BatchIterator(arrays, 8, seed=1)
    convert = lambda b: to_tensors(b, "cuda")  # noqa: E731
    batches = device_batches(iterator.batches(0), convert, "cuda")
    assert isinstance(batches, CudaPrefetcher)
    for got, want in zip(batches, iterator.batches(0), strict=True):
        summed = got["image"].float().sum()  # on the main stream, after the side stream's copy
        assert got["image"].is_cuda and float(summed) == float(want["image"].astype(np.float64).sum())
        assert np.array_equal(got["label"].cpu().numpy(), want["label"])
    early = device_batches(iterator.batches(0), convert, "cuda")
    next(early)
    early.close()
    assert not early.thread.is_alive()

    def broken():
        yield from iterator.batches(0, 6)
        raise RuntimeError("a bad batch")

    with pytest.raises(RuntimeError, match="a bad batch"):
        list(device_batches(broken(), convert, "cuda"))
    torch.cuda.synchronize()


def test_threads_default_to_omp_num_threads_or_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # restored after the test
    monkeypatch.delenv("OMP_WAIT_POLICY")
    threads.passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
