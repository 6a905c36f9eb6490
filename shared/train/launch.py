"""Starting a run's processes: what the process a user started does before it trains (framework-free).

    code = launch.start(spec, config, settings, scaling, script, argv)
    if code is None:        # this process trains
        result = run.execute(spec, config, settings)

The process a user started (not one a launcher started) first refuses a bad request, before any process
starts or any file is written. Then:
- torch with several replicas, restarts or a rendezvous: it re-executes `script argv` under
  torch.distributed.run, which starts one worker per replica (and restarts them); it does not return;
- Keras with restarts: it runs `script argv` as a child and starts it again when it fails (each restart
  resumes from the last snapshot); it returns the child's exit status;
- Keras on several nodes without TF_CONFIG: every node's address is gathered through node 0 and TF_CONFIG
  written, then this process trains (tf.distribute drives the replicas).
shared/train/distributed.py holds the pieces (torchrun's command, the supervisor, the rendezvous).
"""

from __future__ import annotations

import os
import sys

from shared.train import distributed
from shared.train.distributed import Launch
from shared.train.request import RunSettings, check_devices, check_request


def start(spec, config, settings: RunSettings, scaling: Launch, script: str, argv: list[str]) -> int | None:
    """Launch the run `script argv` describes (settings: what it asks; scaling: its replicas, nodes and
    restarts). Returns an exit status when a supervisor ran the run, None when this process is to train."""
    fw = settings.fw
    if not distributed.launched():
        check_request(spec, config, settings, replicas=scaling.world_size, check_out=scaling.node_rank == 0)
        if fw == "torch" and (scaling.world_size > 1 or scaling.max_restarts or scaling.rdzv_endpoint):
            check_devices(fw, scaling.gpus, settings.precision)
            command = distributed.torchrun_command(scaling, script, argv, run_id=settings.out.name)
            distributed.exec_command(command)  # does not return
        if fw == "keras" and scaling.max_restarts:
            return distributed.supervise([sys.executable, script, *argv], scaling.max_restarts)
    if fw == "keras" and scaling.nnodes > 1 and distributed.tf_config_world() is None:
        workers = distributed.rendezvous(
            scaling.nnodes, scaling.node_rank, scaling.master_addr, scaling.master_port
        )
        os.environ["TF_CONFIG"] = distributed.tf_config(workers, scaling.node_rank)
    return None
