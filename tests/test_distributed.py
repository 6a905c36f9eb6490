"""Data parallel: launch plans, rendezvous, restarts, the CPU global BatchNorm, and real runs of 2 CPU
replicas (torch: 2 processes over gloo; Keras: MirroredStrategy over 2 logical CPUs) against 1 replica."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from shared.errors import UserError
from shared.train import distributed
from shared.train.distributed import Launch
from tests.conftest import ROOT, assert_one_line_error, reserved_port, run_tool, smoke_set_flags
from zoo import registry

SPEC = registry.get("vision/cnn")
SMOKE = smoke_set_flags(SPEC)
# The smoke model on digits, one epoch of 5 global batches of 256 with plain SGD: float32 noise grows slowly
# enough here to compare trajectories (a run with 2 threads instead of 1 drifts by up to 1e-3 in the loss
# by step 5, and by up to 8e-3 in the first convolution's weights).
RECIPE = [
    *SMOKE,
    "--data",
    "digits",
    "--epochs",
    "1",
    "--batch-size",
    "256",
    "--set",
    "optimizer=sgd",
    "--lr",
    "0.01",
    "--set",
    "schedule=constant",
    "--set",
    "weight_decay=0",
    "--threads",
    "1",
    "--no-progress",
]
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize(
    "launch,needle",
    [
        (Launch(gpus=-1), "--gpus must be 0"),
        (Launch(cpu_replicas=0), "--cpu-replicas must be >= 1"),
        (Launch(gpus=2, cpu_replicas=2), "exclude each other"),
        (Launch(nnodes=2, node_rank=2), "--node-rank must be in [0, --nnodes)"),
        (Launch(master_port=70000), "--master-port"),
        (Launch(max_restarts=-1), "--max-restarts"),
        (Launch(rdzv_endpoint="node0"), "HOST:PORT"),
    ],
)
def test_bad_scaling_flags_are_refused(launch, needle):
    with pytest.raises(UserError, match=None) as err:
        launch.validate()
    assert needle in str(err.value)


def test_torchrun_command_for_one_node_static_nodes_and_elastic_rendezvous():
    one = distributed.torchrun_command(
        Launch(cpu_replicas=2, max_restarts=1), "tools/train.py", ["m", "--fw", "torch"]
    )
    assert one[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nproc-per-node=2", "--max-restarts=1", "--standalone"} <= set(one)
    assert one[-4:] == ["tools/train.py", "m", "--fw", "torch"]
    static = distributed.torchrun_command(
        Launch(gpus=8, nnodes=2, node_rank=1, master_addr="n0", master_port=1234), "t.py", []
    )
    assert {
        "--nproc-per-node=8",
        "--nnodes=2",
        "--node-rank=1",
        "--master-addr=n0",
        "--master-port=1234",
    } <= set(static)
    assert "--standalone" not in static
    elastic = distributed.torchrun_command(
        Launch(gpus=4, nnodes=3, rdzv_endpoint="n0:29400"), "t.py", [], run_id="r"
    )
    assert {"--rdzv-backend=c10d", "--rdzv-endpoint=n0:29400", "--rdzv-id=r", "--nnodes=3"} <= set(elastic)


def test_worlds_from_torchrun_and_tf_config():
    env = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "1",
        "TORCHELASTIC_RESTART_COUNT": "2",
    }
    world = distributed.torchrun_world(env)
    assert (world.rank, world.world_size, world.local_rank, world.node_rank, world.restart) == (3, 4, 1, 1, 2)
    assert not world.is_main and world.distributed and distributed.launched(env)
    assert distributed.torchrun_world({}) is None and not distributed.launched({})
    assert distributed.launched({"ZOO_RESTART_COUNT": "0"})
    config = distributed.tf_config(["a:1", "b:2"], 1)
    assert distributed.tf_config_world({"TF_CONFIG": config}) == (1, 2)
    assert distributed.tf_config_world({"TF_CONFIG": distributed.tf_config(["a:1"], 0)}) is None
    with pytest.raises(UserError, match="TF_CONFIG is not a valid cluster"):
        distributed.tf_config_world({"TF_CONFIG": "{not json"})


def test_rendezvous_gathers_every_node_in_rank_order():
    found = {}
    with reserved_port() as port:

        def node(rank):
            found[rank] = distributed.rendezvous(2, rank, "127.0.0.1", port, timeout=60)

        threads = [threading.Thread(target=node, args=(r,)) for r in (1, 0)]  # node 1 first: it must wait
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
    assert found[0] == found[1] and len(found[0]) == 2
    assert found[0][0].startswith("127.0.0.1:") and found[0][1].startswith("127.0.0.1:")
    assert len(set(found[0])) == 2


def test_supervise_restarts_a_killed_process_but_not_a_user_error(tmp_path):
    code = (
        "import os, signal, sys\n"
        "n = os.environ['ZOO_RESTART_COUNT']\n"
        "open(sys.argv[1], 'a').write(n)\n"
        "if n == '0': os.kill(os.getpid(), signal.SIGKILL)\n"
        "sys.exit(int(sys.argv[2]))\n"
    )
    log = tmp_path / "attempts"
    assert distributed.supervise([sys.executable, "-c", code, str(log), "0"], max_restarts=1) == 0
    assert log.read_text() == "01"
    log.unlink()
    assert distributed.supervise([sys.executable, "-c", code, str(log), "0"], max_restarts=0) == -9
    assert log.read_text() == "0"
    log.unlink()
    user_error = (
        "import os, sys\nopen(sys.argv[1], 'a').write(os.environ['ZOO_RESTART_COUNT'])\nsys.exit(2)\n"
    )
    assert distributed.supervise([sys.executable, "-c", user_error, str(log)], max_restarts=3) == 2
    assert log.read_text() == "0"


def _global_batch_norm_rank(rank: int, world: int, folder: str) -> None:
    """One rank of test_global_batch_norm_is_batch_norm_of_the_whole_batch (run by torch.multiprocessing)."""
    import torch
    import torch.distributed as dist

    from shared.train.torch_parallel import GlobalBatchNorm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world)
    data = np.load(f"{folder}/inputs.npz")
    per = len(data["x"]) // world
    x = torch.tensor(data["x"][rank * per : (rank + 1) * per], requires_grad=True)
    bn = GlobalBatchNorm(x.shape[1], eps=1e-5, momentum=0.1)
    out = bn(x)
    (out * torch.tensor(data["g"][rank * per : (rank + 1) * per])).sum().backward()
    np.savez(
        f"{folder}/rank{rank}.npz",
        out=out.detach().numpy(),
        dx=x.grad.numpy(),
        dgamma=bn.weight.grad.numpy(),
        dbeta=bn.bias.grad.numpy(),
        mean=bn.running_mean.numpy(),
        var=bn.running_var.numpy(),
    )
    dist.destroy_process_group()


def test_global_batch_norm_is_batch_norm_of_the_whole_batch(tmp_path, frameworks):
    """torch has no CPU SyncBatchNorm; GlobalBatchNorm over 2 gloo ranks, each holding half of a batch, gives
    nn.BatchNorm2d's outputs, gradients and running statistics on the whole batch (float64 reference)."""
    _, torch = frameworks
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3, 4, 4)) * [[[[0.5]], [[2.0]], [[0.1]]]] + [[[[1.0]], [[-3.0]], [[0.0]]]]
    g = rng.standard_normal(x.shape)
    np.savez(tmp_path / "inputs.npz", x=x.astype(np.float32), g=g.astype(np.float32))
    torch.multiprocessing.spawn(_global_batch_norm_rank, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]

    reference = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1).double()
    x64 = torch.tensor(x, requires_grad=True)
    out = reference(x64)
    (out * torch.tensor(g)).sum().backward()

    def close(ours, theirs, what):
        err = np.max(np.abs(ours - theirs)) / max(1.0, np.max(np.abs(theirs)))
        assert err <= 2e-6, f"{what}: {err:.2e}"

    close(np.concatenate([r["out"] for r in ranks]), out.detach().numpy(), "outputs")
    close(np.concatenate([r["dx"] for r in ranks]), x64.grad.numpy(), "input gradients")
    # Each rank's parameter gradient is its share of the loss; DDP's average over ranks (x 2 here) is the whole.
    close(ranks[0]["dgamma"] + ranks[1]["dgamma"], reference.weight.grad.numpy(), "gamma gradient")
    close(ranks[0]["dbeta"] + ranks[1]["dbeta"], reference.bias.grad.numpy(), "beta gradient")
    for r in ranks:
        close(r["mean"], reference.running_mean.numpy(), "running mean")
        close(r["var"], reference.running_var.numpy(), "running variance (unbiased, as nn.BatchNorm)")


@pytest.mark.parametrize(
    "fw,args,needles",
    [
        ("torch", ["--gpus", "2"], ["--gpus 2", "torch finds 0 on this machine", "--cpu-replicas N"]),
        # --gpus N defaults Keras to its JAX backend (shared/frameworks.py)
        ("keras", ["--gpus", "2"], ["--gpus 2", "JAX finds 0 on this machine", "--cpu-replicas N"]),
        ("torch", ["--gpus", "1", "--cpu-replicas", "2"], ["exclude each other"]),
        ("keras", ["--cpu-replicas", "0"], ["--cpu-replicas must be >= 1"]),
        (
            "torch",
            ["--cpu-replicas", "2", "--batch-size", "33"],
            ["not a multiple of the 2 replicas", "--batch-size 32"],
        ),
        ("torch", ["--nnodes", "2", "--node-rank", "2"], ["--node-rank must be in"]),
    ],
)
def test_scaling_requests_the_machine_cannot_serve_are_one_line_errors(fw, args, needles, tmp_path):
    proc = run_tool(
        "tools/train.py", "zoo/vision/cnn", "--fw", fw, *args, "--out", str(tmp_path / "run"), env=ENV
    )
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "run").exists()


def train(fw: str, out, *extra: str) -> dict:
    proc = run_tool(
        "tools/train.py", "zoo/vision/cnn", "--fw", fw, *RECIPE, "--out", str(out), *extra, env=ENV
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


def losses(run) -> list[float]:
    with open(run / "steps.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def weights(run) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(run / "checkpoint" / "weights.safetensors"))


def layout(run) -> list[str]:
    """The run folder's files, event file names normalised (they carry a timestamp)."""
    names = []
    for path in sorted(run.rglob("*")):
        name = str(path.relative_to(run))
        names.append("tensorboard/events" if name.startswith("tensorboard/events.out.tfevents.") else name)
    return names


def assert_written_once(run, steps: int) -> None:
    """Rank 0 alone wrote: no temporary or hidden files, one event file, every step logged once."""
    assert not [p for p in run.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    assert len(list((run / "tensorboard").iterdir())) == 1
    with open(run / "steps.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(steps))
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header + one epoch


FIRST_STEPS_RTOL = 1e-5  # the first 2 losses: float32 rounding of the same sums in another order
LOSS_RTOL = 5e-3  # every loss: rounding grows as it does between thread counts
WEIGHT_RTOL = 2e-2  # final weights, relative to each tensor's largest value (was 5e-3; see below)


def weights_apart(w1: dict, w2: dict) -> tuple[float, str]:
    """(largest difference, tensor name) over the float tensors of two weight dicts, in float64, each
    relative to its tensor's largest value (at least 1)."""
    return max(
        (
            float(np.max(np.abs(w1[k].astype(np.float64) - w2[k])) / max(1.0, float(np.max(np.abs(w1[k]))))),
            k,
        )
        for k in w1
        if w1[k].dtype.kind == "f"
    )


def replicas_disagree(one, two, w1: dict, w2: dict) -> list[str]:
    """How a run on 2 replicas departs from the same run on 1 (empty: they agree); `one`, `two`: per-step
    losses, `w1`, `w2`: final weights. tests/test_tolerances.py feeds it runs with injected bugs."""
    failures = []
    if len(one) != len(two):
        return [f"{len(one)} steps against {len(two)}"]
    relative = [abs(a - b) / abs(a) for a, b in zip(one, two)]
    if max(relative[:2]) > FIRST_STEPS_RTOL:
        failures.append(f"first losses differ by {max(relative[:2]):.2e} > {FIRST_STEPS_RTOL:g}")
    if max(relative) > LOSS_RTOL:
        failures.append(
            f"losses differ by {max(relative):.2e} > {LOSS_RTOL:g} (step {int(np.argmax(relative))})"
        )
    # Float32 drift, not a data-parallel effect: on 2026-11-27 the same 1-replica run with 2 threads instead
    # of 1 ended 7.8e-3 apart (conv1.weight, relative to its largest value); 2 replicas ended 6.6e-3 apart.
    worst, where = weights_apart(w1, w2)
    if worst > WEIGHT_RTOL:
        failures.append(f"final weights differ by {worst:.2e} > {WEIGHT_RTOL:g} ({where})")
    return failures


def runs_disagree(one, two) -> list[str]:
    """replicas_disagree for two run folders: their logged losses and final weights."""
    return replicas_disagree(losses(one), losses(two), weights(one), weights(two))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("fw", ["torch", pytest.param("keras", marks=pytest.mark.slow)])
def test_two_cpu_replicas_follow_one_replica(fw, tmp_path):
    """Global batch 256 on 1 replica, and as 2 x 128 on 2 CPU replicas with BatchNorm over the global batch
    (--sync-bn), through tools/train.py: the same loss at every step (within float32 noise) and the same
    final weights. torch: 2 processes over gloo; Keras: MirroredStrategy over 2 logical CPUs.

    Keras on TensorFlow is held to the step-0 loss only: its float32 gradients of BatchNorm scales differ by
    up to 7e-4 (relative) between the two runs, and the losses then drift apart by 3e-5 at step 1 and
    4.5e-3 at step 4, above this check's bounds. That is float32 reduction order around ReLU kinks, not data
    parallelism: in float64 the same runs agree to 6e-16 (the next test holds that in make test)."""
    one = train(fw, tmp_path / "one", "--sync-bn")
    two = train(fw, tmp_path / "two", "--sync-bn", "--cpu-replicas", "2")
    assert two["replicas"] == 2 and one["replicas"] == 1 and two["steps"] == one["steps"] == 5
    if fw == "torch":
        failures = runs_disagree(tmp_path / "one", tmp_path / "two")
        assert not failures, failures
    else:
        first, second = losses(tmp_path / "one"), losses(tmp_path / "two")
        assert abs(first[0] - second[0]) <= FIRST_STEPS_RTOL * abs(first[0]), (first, second)
    assert layout(tmp_path / "two") == layout(tmp_path / "one")
    assert_written_once(tmp_path / "two", steps=5)


# The Keras trainer's session on MirroredStrategy (argv: replicas as logical CPUs, 1/0 for BatchNorm over the
# global batch, the .npz to write), computing in float64 as shared/parity/trainers.py does: the recipe
# above, one epoch.
KERAS_REPLICAS_FLOAT64 = """
import sys
import numpy as np
from shared.data import load
from shared.data.iterator import BatchIterator
from shared.parity.trainers import keras_float64
from shared.train import keras_trainer
from zoo import registry

replicas, sync_bn, out = int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3]
spec = registry.get("vision/cnn")
config = spec.config(**{**spec.smoke_config, "optimizer": "sgd", "lr": 0.01, "schedule": "constant",
                        "weight_decay": 0.0, "batch_size": 256})
runtime = keras_trainer.setup(0, 1, config.seed, cpu_replicas=replicas)
splits, _ = spec.task_module.prepare(load("digits"), config)
iterator = BatchIterator(splits["train"], config.batch_size, seed=config.seed, drop_last=True)
with keras_float64():
    session = keras_trainer.Session(spec, config, runtime, total_steps=len(iterator), sync_bn=sync_bn)
assert session.runtime.replicas == replicas, session.runtime.replicas
found = []
session.train_epoch(iterator, 0, 0, lambda step, loss, lr: found.append(loss), progress=False)
np.savez(out, losses=np.array(found), **spec.get_weights(session.model))
"""

# losses and final weights; measured 2e-16 and 6e-16 on 2026-11-28 (unsynchronised BatchNorm: 5.6e-3)
FLOAT64_RTOL = 1e-9


def keras_float64_run(out, replicas: int, sync_bn: bool = True) -> tuple[list[float], dict]:
    proc = subprocess.run(
        [sys.executable, "-c", KERAS_REPLICAS_FLOAT64, str(replicas), "1" if sync_bn else "0", str(out)],
        cwd=ROOT,
        env={**os.environ, **ENV, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = dict(np.load(out))
    return list(found.pop("losses")), found


def float64_disagreement(one, two) -> list[str]:
    """How two float64 runs ((losses, weights) each) differ beyond FLOAT64_RTOL (empty: they agree)."""
    (l1, w1), (l2, w2) = one, two
    failures = []
    if len(l1) != len(l2):
        return [f"{len(l1)} steps against {len(l2)}"]
    worst = max(abs(a - b) / abs(a) for a, b in zip(l1, l2))
    if worst > FLOAT64_RTOL:
        failures.append(f"losses differ by {worst:.2e} > {FLOAT64_RTOL:g}")
    worst, where = weights_apart(w1, w2)
    if worst > FLOAT64_RTOL:
        failures.append(f"final weights differ by {worst:.2e} > {FLOAT64_RTOL:g} ({where})")
    return failures


@pytest.fixture(scope="module")
def keras_one_replica_float64(tmp_path_factory):
    return keras_float64_run(tmp_path_factory.mktemp("keras64") / "one.npz", 1)


@pytest.mark.timeout(600)
def test_two_keras_cpu_replicas_follow_one_replica_in_float64(keras_one_replica_float64, tmp_path):
    """Keras' tf.distribute path in float64, where float32 rounding cannot hide a difference: 2 replicas
    (MirroredStrategy over 2 logical CPUs, the gradients summed over replicas of each replica's loss / 2,
    BatchNorm synchronised) give the 1-replica run's losses and weights at every one of the 5 steps."""
    one = keras_one_replica_float64
    assert len(one[0]) == 5 and np.isfinite(one[0]).all() and one[0][-1] < one[0][0]  # it trains
    failures = float64_disagreement(one, keras_float64_run(tmp_path / "two.npz", 2))
    assert not failures, failures


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_float64_replica_check_tells_unsynchronised_batch_norm_apart(keras_one_replica_float64, tmp_path):
    """The float64 check can fail: 2 Keras replicas that normalise over their own 128 examples."""
    failures = float64_disagreement(
        keras_one_replica_float64, keras_float64_run(tmp_path / "two.npz", 2, False)
    )
    assert any(f.startswith("losses differ") for f in failures), failures


@pytest.mark.slow
def test_two_replicas_without_sync_bn_are_told_apart(tmp_path):
    """The check above can fail: without --sync-bn each torch replica normalises over its own 128 examples,
    a different function of the batch, and replicas_disagree says so from the first step. (make test holds
    the in-process versions: tests/test_tolerances.py.)"""
    one = tmp_path / "one"
    train("torch", one, "--sync-bn")
    train("torch", tmp_path / "two", "--cpu-replicas", "2")
    failures = runs_disagree(one, tmp_path / "two")
    assert any(f.startswith("first losses differ") for f in failures), failures


@pytest.mark.slow
@pytest.mark.parametrize("fw", ["torch", "keras"])
def test_two_nodes_on_one_machine(fw, tmp_path):
    """--nnodes 2 through the torch-style flags: torchrun's static rendezvous, or for Keras our rendezvous
    into TF_CONFIG and MultiWorkerMirroredStrategy. Node 0's rank 0 alone writes, and the 2 nodes train as
    1 replica on the whole batch does (replicas_disagree)."""
    with reserved_port() as reserved:  # held until both nodes have bound it (SO_REUSEADDR on both sides)
        port = str(reserved)
        command = [
            sys.executable,
            "tools/train.py",
            "zoo/vision/cnn",
            "--fw",
            fw,
            *RECIPE,
            "--out",
            str(tmp_path / "run"),
            "--nnodes",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            port,
        ]
        env = {**os.environ, **ENV, "TF_CPP_MIN_LOG_LEVEL": "3"}
        nodes = [
            subprocess.Popen(
                [*command, "--node-rank", str(r)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in (0, 1)
        ]
        outputs = [node.communicate(timeout=1200) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-3000:] for _, err in outputs]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["replicas"] == 2 and result["steps"] == 5
    assert "result.json" in outputs[0][0] and "result.json" not in outputs[1][0]
    assert_written_once(tmp_path / "run", steps=5)
    # The same run as 2 replicas on one node (BatchNorm per replica on both sides, as no --sync-bn is
    # passed): two nodes must not change the numbers beyond float32 rounding.
    reference = train(fw, tmp_path / "reference", "--cpu-replicas", "2")
    assert reference["replicas"] == 2
    failures = runs_disagree(tmp_path / "reference", tmp_path / "run")
    assert not failures, failures
    assert result["test"] == pytest.approx(reference["test"], rel=1e-2)
