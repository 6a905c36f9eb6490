"""A training request: the run's settings, and every check of them that needs no framework.

The launching process (shared/train/launch.py) makes these checks before any worker starts or any file is
written; each run makes them again when it starts (shared/train/run.py).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from shared.data import available
from shared.errors import UserError
from shared.recipe import config_from_dict, config_to_dict
from shared.train import finetune, snapshot
from shared.train.callbacks import CallbackList, check_monitor, parse_early_stop

PRECISIONS = ("fp32", "bf16", "fp16")
SNAPSHOT_EVERY = 200  # optimizer steps between snapshots (and one at every epoch end)


@dataclass(frozen=True)
class RunSettings:
    """How one run trains, besides the model and its Config.

    fw:             "torch" or "keras".
    out:            the run folder.
    data:           the dataset's name (shared.data.load), data_kwargs its loader's keyword arguments.
    gpus:           GPUs of this node (torch: this process drives one of them, started by
                    torch.distributed.run; Keras: this process drives them all); 0 or None: the CPU.
    cpu_replicas:   data-parallel replicas on the CPU (torch: processes; Keras: logical CPUs).
    threads:        CPU threads for the framework (None: all cores).
    progress:       progress bars and one line per epoch; log_steps: step/* scalars in TensorBoard.
    overwrite:      replace a non-empty run folder.
    precision:      one of PRECISIONS; compile: torch.compile / Keras jit_compile; sync_bn: BatchNorm
                    statistics over the global batch; deterministic: deterministic kernels.
    resume:         continue `out` from its last snapshot (a run its launcher restarted resumes by itself).
    snapshot_every: optimizer steps between exact-resume snapshots (0: only at epoch ends).
    early_stop:     "METRIC[:patience=N][:min_delta=X][:mode=min|max][:restore_best=true]" (callbacks.py).
    keep:           "best" (checkpoint/ = the best epoch by --early-stop's metric, else the task's primary
                    validation metric; last/ = the last epoch) or "last" (checkpoint/ = the last epoch).
    init:           fine-tune from a checkpoint folder, a store URL or a safetensors file (finetune.py).
    freeze:         canonical-name prefixes of the parameters not trained (and their BatchNorm frozen).
    recipe:         the spec's named recipe the config came from (recorded in meta.json).
    callbacks:      callback objects (shared/train/callbacks.py; Keras callbacks for the Keras trainer).
    """

    fw: str
    out: Path
    data: str
    data_kwargs: dict = field(default_factory=dict)
    gpus: int | None = 0
    threads: int | None = None
    progress: bool = True
    log_steps: bool = True
    overwrite: bool = False
    cpu_replicas: int = 1
    precision: str = "fp32"
    compile: bool = False
    sync_bn: bool = False
    deterministic: bool = False
    resume: bool = False
    snapshot_every: int = SNAPSHOT_EVERY
    early_stop: str | None = None
    keep: str = "best"
    init: str | None = None
    freeze: tuple = ()
    recipe: str | None = None
    callbacks: tuple = ()


KEEP = ("best", "last")


MARKER = "run.json"  # written first into every run folder: what --overwrite may replace


def is_run(folder: Path) -> bool:
    """Whether `folder` is recognisably a run folder of tools/train.py: the marker written when it started,
    or (a run from before the marker existed) a result.json written when it finished."""
    for name, keys in (
        (MARKER, {"model", "framework", "started"}),
        ("result.json", {"model", "framework", "run"}),
    ):
        try:
            content = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(content, dict) and keys <= set(content):
            return True
    return False


def check_out_folder(out: Path) -> None:
    """The run folder can be created (or written into): not a file, not under a file, not read-only. Checked
    before any framework is set up or any process started, so a bad --out fails in a second."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder: pass a folder for the run")
    existing = out
    while not existing.exists():
        if existing.is_symlink():  # a link to nowhere
            raise UserError(f"--out {out}: {existing} is a broken symbolic link; pass another --out")
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"--out {out}: {existing} is a file, so no folder can be made under it; pass another --out"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == out else f" in {existing}"
        raise UserError(
            f"--out {out}: cannot write{where} (read-only or no permission); pass a writable --out"
        )


def plain(value):
    """JSON's view of a value (tuples become lists), for comparing a config with a snapshot's."""
    return json.loads(json.dumps(value, default=str))


def check_request(
    spec, config, settings: RunSettings, *, replicas: int = 1, check_out: bool = True
) -> dict | None:
    """Every check of a training request that needs no framework, made before any process starts or any
    file is written. replicas: of the whole run; check_out: whether this process owns the run folder (the
    first node). Returns the snapshot state to resume from (None for a fresh run)."""
    out, data = Path(settings.out), settings.data
    if settings.precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}; found {settings.precision!r}")
    CallbackList(settings.callbacks, settings.fw)  # a Keras callback in a torch run, a non-callback: refused
    if settings.keep not in KEEP:
        raise UserError(f"--keep must be best or last; found {settings.keep!r}")
    if settings.early_stop:
        check_monitor(spec, parse_early_stop(settings.early_stop)["monitor"], "--early-stop")
    if settings.init and not settings.resume:
        finetune.read_source(settings.init, spec)  # a pickle, another model's checkpoint: refused here
    known = available()
    if data not in known and data.partition("@")[0] not in known and data.partition(":")[0] not in known:
        raise UserError(f"unknown dataset {data!r}: expected one of {', '.join(known)}")
    if config.batch_size % replicas:
        raise UserError(
            f"the global batch size {config.batch_size} is not a multiple of the {replicas} replicas; "
            f"pass --batch-size {max(replicas, config.batch_size // replicas * replicas)}"
        )
    if check_out:
        check_out_folder(out)
    if not settings.resume:
        if check_out and out.exists() and any(out.iterdir()):
            if not is_run(out):
                raise UserError(
                    f"--out {out} holds files that are not a training run (it has neither {MARKER} nor "
                    f"result.json){'; --overwrite replaces only a run folder' if settings.overwrite else ''}: "
                    "nothing was changed; pass a new or empty --out"
                )
            if settings.overwrite and out.is_symlink():
                raise UserError(
                    f"--out {out} is a symbolic link to {out.resolve()}: pass that folder itself to replace it"
                )
            if not settings.overwrite:
                raise UserError(
                    f"run folder {out} exists and is not empty: pass another --out, --overwrite, "
                    f"or --resume {out} to continue it"
                )
        return None
    if not out.is_dir():
        raise UserError(f"--resume {out}: no such run folder")
    if (out / "result.json").exists():
        raise UserError(f"--resume {out}: that run finished (it has result.json); train a new run instead")
    _, state = snapshot.read(out, tensors=False)
    snapshot.check_compatible(
        state, out, model=spec.name, fw=settings.fw, world_size=replicas, precision=settings.precision
    )
    differ = sorted(
        k for k, v in plain(config_to_dict(config)).items() if state.get("config", {}).get(k) != v
    )
    if differ:
        shown = ", ".join(f"{k}={state['config'].get(k)!r} (asked {getattr(config, k)!r})" for k in differ)
        raise UserError(f"--resume {out}: the run was trained with {shown}; resume it with the same settings")
    wanted = (data, plain(settings.data_kwargs))
    if (state.get("data"), state.get("data_kwargs")) != wanted:
        raise UserError(
            f"--resume {out}: the run was trained on {state.get('data')} {state.get('data_kwargs')}; "
            f"this command asks for {wanted[0]} {wanted[1]}"
        )
    return state


def resume_request(spec, fw: str, run_dir, overrides: dict, data: str | None, out: str | None):
    """(config, data, data_kwargs) of the run to resume: its snapshot's, with any flag given checked against
    them by check_request. A run of another model or framework, or a damaged snapshot -> UserError."""
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise UserError(
            f"--resume {run_dir} continues that run folder; drop --out {out} (or pass the same folder)"
        )
    if not Path(run_dir).is_dir():
        raise UserError(f"--resume {run_dir}: no such run folder")
    _, state = snapshot.read(run_dir, tensors=False)
    snapshot.check_compatible(
        state,
        run_dir,
        model=spec.name,
        fw=fw,
        world_size=state.get("world_size"),
        precision=state.get("precision"),
    )
    config = config_from_dict(spec.config_cls, {**state["config"], **overrides})
    return config, data or state["data"], state["data_kwargs"]


def check_devices(fw: str, gpus: int, precision: str) -> None:
    """The device checks a launcher makes before it starts worker processes (imports the framework)."""
    importlib.import_module(f"shared.train.{fw}_trainer").check_request(gpus, precision)
