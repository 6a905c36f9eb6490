"""Data-parallel launch, rendezvous and ranks, framework-free.

PyTorch: `--gpus N` / `--cpu-replicas N` re-executes the same command under torch.distributed.run (what
`torchrun` runs), which starts N workers per node and restarts them (`--max-restarts`); each worker reads
its rank from the environment torchrun sets. Launching tools/train.py under torchrun by hand works the
same way: a worker never launches again.

Keras: one process per node drives its replicas with tf.distribute. Several nodes need TF_CONFIG; when it
is not set, `rendezvous` gathers every node's address through node 0 (the same --master-addr/--master-port
flags torch uses) and `tf_config` writes it.

Nothing here imports torch or TensorFlow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from shared.errors import UserError

# The restart counter a worker reads: torchrun sets the first; the Keras supervisor below sets the second.
RESTART_ENV = ("TORCHELASTIC_RESTART_COUNT", "ZOO_RESTART_COUNT")


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes of a run (torch: one per replica; Keras: one per node)."""

    rank: int = 0  # rank 0 alone writes the run folder
    world_size: int = 1  # processes in all
    local_rank: int = 0  # index on this node (torch: the GPU it drives)
    local_world_size: int = 1
    node_rank: int = 0
    restart: int = 0  # how many times the launcher has restarted this run after a failure

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def restart_count(env=None) -> int:
    env = os.environ if env is None else env
    return max(int(env.get(name, 0) or 0) for name in RESTART_ENV)


def launched(env=None) -> bool:
    """Whether a launcher started this process (torchrun's worker, or the Keras supervisor's child)."""
    env = os.environ if env is None else env
    return torchrun_world(env) is not None or "ZOO_RESTART_COUNT" in env


def torchrun_world(env=None) -> World | None:
    """The world torch.distributed.run describes in a worker's environment; None outside a torchrun worker."""
    env = os.environ if env is None else env
    if "LOCAL_RANK" not in env or "WORLD_SIZE" not in env:
        return None
    return World(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env["LOCAL_RANK"]),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
        node_rank=int(env.get("GROUP_RANK", 0)),
        restart=restart_count(env),
    )


@dataclass(frozen=True)
class Launch:
    """The scaling a user asked for: replicas per node (GPUs, or CPU replicas), nodes, restarts."""

    gpus: int = 0  # GPUs per node; 0 trains on the CPU
    cpu_replicas: int = 1  # torch: processes over gloo; Keras: logical CPU devices
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    rdzv_endpoint: str | None = None  # torch only: HOST:PORT of a c10d rendezvous (elastic ranks)
    max_restarts: int = 0

    @property
    def per_node(self) -> int:
        return self.gpus if self.gpus else self.cpu_replicas

    @property
    def world_size(self) -> int:
        return self.per_node * self.nnodes

    def validate(self) -> None:
        if self.gpus < 0:
            raise UserError(f"--gpus must be 0 (CPU) or a positive number of GPUs; found {self.gpus}")
        if self.cpu_replicas < 1:
            raise UserError(f"--cpu-replicas must be >= 1; found {self.cpu_replicas}")
        if self.gpus and self.cpu_replicas > 1:
            raise UserError(
                f"--gpus {self.gpus} and --cpu-replicas {self.cpu_replicas} exclude each other: "
                "pass --gpus N for GPUs or --cpu-replicas N for the CPU"
            )
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise UserError(
                f"--node-rank must be in [0, --nnodes); found --node-rank {self.node_rank} "
                f"with --nnodes {self.nnodes}"
            )
        if not 0 < self.master_port < 65536:
            raise UserError(f"--master-port must be a TCP port (1-65535); found {self.master_port}")
        if self.max_restarts < 0:
            raise UserError(f"--max-restarts must be >= 0; found {self.max_restarts}")
        if self.rdzv_endpoint is not None and ":" not in self.rdzv_endpoint:
            raise UserError(f"--rdzv-endpoint expects HOST:PORT; found {self.rdzv_endpoint!r}")


def torchrun_command(launch: Launch, script: str, argv: list[str], run_id: str = "zoo") -> list[str]:
    """`python -m torch.distributed.run ... script argv`: the workers run the same command line."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={launch.per_node}",
        f"--max-restarts={launch.max_restarts}",
    ]
    if launch.rdzv_endpoint:  # elastic: nodes join through the c10d store; ranks are assigned on arrival
        cmd += [
            f"--nnodes={launch.nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={launch.rdzv_endpoint}",
            f"--rdzv-id={run_id}",
        ]
    elif launch.nnodes > 1:  # static: every node names its rank and node 0's address
        cmd += [
            f"--nnodes={launch.nnodes}",
            f"--node-rank={launch.node_rank}",
            f"--master-addr={launch.master_addr}",
            f"--master-port={launch.master_port}",
        ]
    else:  # one node: a private rendezvous on a free local port
        cmd += ["--standalone"]
    return cmd + [script, *argv]


def exec_command(cmd: list[str]) -> None:
    """Replace this process with `cmd` (signals and the exit status then belong to the launcher)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)


def supervise(cmd: list[str], max_restarts: int, env: dict | None = None) -> int:
    """Run `cmd`; when it dies of anything but success or a user error (exit 2), run it again up to
    `max_restarts` times with ZOO_RESTART_COUNT set, so that it resumes from its last snapshot.
    This is what torchrun's elastic agent does for torch workers, for the one Keras process per node."""
    env = dict(os.environ if env is None else env)
    for attempt in range(max_restarts + 1):
        env["ZOO_RESTART_COUNT"] = str(attempt)
        proc = subprocess.Popen(cmd, env=env)
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait()
            raise
        if code in (0, 2) or attempt == max_restarts:
            return code
        reason = f"signal {-code}" if code < 0 else f"exit status {code}"
        print(
            f"[launcher] the training process ended with {reason}; restarting from the last snapshot "
            f"({attempt + 1}/{max_restarts})",
            file=sys.stderr,
            flush=True,
        )
    return 1


# Keras across nodes: TF_CONFIG from the torch-style flags.


def free_port(host: str = "") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _send(sock: socket.socket, value) -> None:
    sock.sendall(json.dumps(value).encode() + b"\n")


def _receive(sock: socket.socket):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        data += chunk
    return json.loads(data)


def rendezvous(
    nnodes: int, node_rank: int, master_addr: str, master_port: int, timeout: float = 300.0
) -> list[str]:
    """Every node's 'host:port' for TensorFlow's collective workers, in node-rank order.

    Node 0 listens on master_addr:master_port and answers once all nodes have reported; every node reports
    the address by which node 0 reached it and a free port for its worker. JSON lines over TCP.
    """
    if nnodes == 1:
        return [f"localhost:{free_port()}"]
    deadline = time.monotonic() + timeout
    if node_rank == 0:
        with socket.create_server((master_addr, master_port), reuse_port=False) as server:
            server.settimeout(timeout)
            addresses, peers = {0: f"{master_addr}:{free_port(master_addr)}"}, []
            try:
                while len(addresses) < nnodes:
                    conn, _ = server.accept()
                    message = _receive(conn)
                    addresses[int(message["node_rank"])] = message["address"]
                    peers.append(conn)
                ordered = [addresses[r] for r in range(nnodes)]
                for conn in peers:
                    _send(conn, ordered)
            except TimeoutError:
                raise UserError(
                    f"rendezvous on {master_addr}:{master_port}: {len(addresses)} of {nnodes} nodes "
                    f"arrived within {timeout:.0f}s; start every node with the same --nnodes"
                ) from None
            finally:
                for conn in peers:
                    conn.close()
        return ordered
    while True:
        try:
            with socket.create_connection((master_addr, master_port), timeout=10) as sock:
                host = sock.getsockname()[0]  # this node's address on the route to node 0
                _send(sock, {"node_rank": node_rank, "address": f"{host}:{free_port(host)}"})
                sock.settimeout(max(deadline - time.monotonic(), 1.0))
                return _receive(sock)
        except (ConnectionRefusedError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise UserError(
                    f"node {node_rank} could not reach node 0 at {master_addr}:{master_port} within "
                    f"{timeout:.0f}s; check --master-addr/--master-port and start node 0"
                ) from None
            time.sleep(1.0)


def tf_config(workers: list[str], index: int) -> str:
    """TF_CONFIG for worker `index` of `workers` (MultiWorkerMirroredStrategy reads it)."""
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


def tf_config_world(env=None) -> tuple[int, int] | None:
    """(worker index, number of workers) from TF_CONFIG, or None when it is absent or names one worker."""
    env = os.environ if env is None else env
    if not env.get("TF_CONFIG"):
        return None
    try:
        config = json.loads(env["TF_CONFIG"])
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = int(task["index"]) + (1 if "chief" in config["cluster"] and task["type"] == "worker" else 0)
        count = len(workers) + len(config["cluster"].get("chief", []))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise UserError(f"TF_CONFIG is not a valid cluster description ({err}); unset it or fix it") from None
    return (index, count) if count > 1 else None
