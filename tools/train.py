"""Train a model of the zoo in Keras or PyTorch on embedded or hub data, on one device or data parallel.

    python tools/train.py zoo/vision/cnn --fw torch --epochs 3 --out runs/cnn-torch
    python tools/train.py zoo/nlp/seq2seq --fw keras --gpus 2                 # 2 GPUs, global batch split in 2
    python tools/train.py zoo/vision/cnn --fw keras --keras-backend jax --cpu-replicas 2
    python tools/train.py zoo/vision/cnn --fw torch --cpu-replicas 2          # data parallel on the CPU
    python tools/train.py zoo/vision/cnn --fw torch --gpus 8 --nnodes 2 --node-rank 0 --master-addr node0
    python tools/train.py zoo/vision/cnn --fw torch --resume runs/cnn-torch   # continue from the last snapshot
    python tools/train.py zoo/vision/cnn --fw keras --early-stop val_accuracy:patience=2   # checkpoint/ = best
    python tools/train.py zoo/vision/cnn --fw torch --init resnet18.safetensors --set num_classes=10 \
        --set base_width=64 --set stem=imagenet --set image_size=64 --freeze conv1,bn1,layer1   # fine-tune
    python tools/train.py zoo/vision/cnn --list-recipes                        # named recipes of the spec
    python tools/train.py zoo/vision/cnn --fw torch --recipe mnist-5k          # reproduce a card's row

--batch-size is the global batch in both frameworks (see docs/SCALING.md). Keras' backend: --keras-backend,
else KERAS_BACKEND, else JAX with --gpus N and TensorFlow on the CPU (shared/frameworks.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import _path  # noqa: F401

from shared.cli import Parser, check_fw, main_wrapper, positive_int
from shared.errors import UserError
from shared.frameworks import choose_keras_backend, set_keras_backend
from shared.models import get_spec
from shared.recipe import parse_set_flags
from shared.train import launch, recipes, run, snapshot
from shared.train.distributed import Launch
from shared.train.finetune import parse_freeze
from shared.train.request import SNAPSHOT_EVERY, RunSettings, resume_request
from shared.train.threads import passive_openmp


def build_parser() -> Parser:
    parser = Parser(prog="tools/train.py", description=__doc__)
    parser.add_argument("model", help="model folder or name, e.g. zoo/vision/cnn or vision/cnn")
    parser.add_argument("--fw", help="keras or torch (required to train)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=int, help="global batch size (split over the replicas)")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--seed", type=int, help="seed for init, data order and dropout")
    parser.add_argument(
        "--data", help="dataset name (default: the model's embedded dataset), or hub:<repo>[@rev]"
    )
    parser.add_argument("--out", help="run folder (default runs/<model>-<fw>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any Config field")
    parser.add_argument(
        "--threads", type=positive_int, help="CPU threads for the framework, per process (default: all cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    tune = parser.add_argument_group("callbacks, checkpoints, fine-tuning and recipes (docs/TRAINING.md)")
    tune.add_argument(
        "--early-stop",
        metavar="METRIC[:patience=N][:min_delta=X]",
        help="stop when METRIC (e.g. val_accuracy, val_loss; also :mode=min|max, :restore_best=true) has "
        "not improved for N epochs (N=0 or 1: the first epoch without improvement)",
    )
    tune.add_argument(
        "--keep",
        choices=("best", "last"),
        default=None,
        help="checkpoint/ holds the best epoch by --early-stop's metric, else the task's primary "
        "validation metric, and last/ the last epoch (best, the default); or checkpoint/ the last (last)",
    )
    tune.add_argument(
        "--init",
        metavar="SOURCE",
        help="fine-tune from a checkpoint folder, a store URL, or a .safetensors file in the torch twin's "
        "names (a torchvision state_dict); output layers of another shape (--set num_classes=10) are "
        "re-initialised and listed",
    )
    tune.add_argument(
        "--freeze",
        action="append",
        default=[],
        metavar="PREFIX[,PREFIX]",
        help="do not train the parameters under these canonical (torch) name prefixes, e.g. conv1,layer1; "
        "in both frameworks a BatchNorm whose parameters are frozen runs in inference mode (its running "
        "statistics are used and not updated)",
    )
    tune.add_argument(
        "--recipe", metavar="NAME", help="apply the spec's named recipe (--set/--data still override)"
    )
    tune.add_argument("--list-recipes", action="store_true", help="print the model's recipes and exit")
    scale = parser.add_argument_group("scaling (docs/SCALING.md)")
    scale.add_argument(
        "--gpus", type=int, help="GPUs per node (0 = CPU, the default; under torchrun: its GPUs)"
    )
    scale.add_argument(
        "--cpu-replicas",
        type=int,
        default=1,
        help="data-parallel replicas on the CPU (torch: processes over gloo; Keras: logical CPUs)",
    )
    scale.add_argument("--nnodes", type=int, default=1, help="machines taking part (default 1)")
    scale.add_argument("--node-rank", type=int, default=0, help="this machine's index among --nnodes")
    scale.add_argument(
        "--master-addr", default="127.0.0.1", help="address of node 0, reachable from every node"
    )
    scale.add_argument("--master-port", type=int, default=29500, help="a free TCP port on node 0")
    scale.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="torch: join torchrun's c10d rendezvous (elastic) instead of --node-rank/--master-addr",
    )
    scale.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        help="restart failed workers up to K times; they resume from the last snapshot",
    )
    scale.add_argument(
        "--keras-backend",
        help="--fw keras: jax, tensorflow or torch (default: KERAS_BACKEND, else jax with --gpus, "
        "tensorflow on the CPU)",
    )
    scale.add_argument("--precision", default="fp32", help="fp32 (default), bf16, or fp16 (GPU only)")
    scale.add_argument("--compile", action="store_true", help="torch.compile / Keras jit_compile (XLA)")
    scale.add_argument(
        "--sync-bn",
        action="store_true",
        help="BatchNorm statistics over the global batch (default: per replica, as DDP/tf.distribute)",
    )
    scale.add_argument("--deterministic", action="store_true", help="deterministic kernels (slower on GPUs)")
    scale.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last snapshot, exactly")
    scale.add_argument(
        "--snapshot-every",
        type=int,
        default=None,
        metavar="N",
        help="steps between exact-resume snapshots (default 200; 0 = none; one at every epoch end)",
    )
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    passive_openmp()  # before torch or TensorFlow loads (shared/train/threads.py)
    args = build_parser().parse_args(argv)
    if args.list_recipes:
        print(recipes.listing(get_spec(args.model)))
        return 0
    if args.fw is None:
        raise UserError("--fw is required: keras or torch")
    fw = check_fw(args.fw)
    scaling = Launch(
        gpus=args.gpus or 0,
        cpu_replicas=args.cpu_replicas,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        master_addr=args.master_addr,
        master_port=args.master_port,
        rdzv_endpoint=args.rdzv_endpoint,
        max_restarts=args.max_restarts,
    )
    scaling.validate()
    if fw == "keras":  # before anything imports keras: the backend is fixed when it loads
        backend = choose_keras_backend(args.keras_backend, scaling.gpus)
        set_keras_backend(backend, cpu_devices=1 if scaling.gpus else scaling.cpu_replicas)
    elif args.keras_backend:
        raise UserError(f"--keras-backend {args.keras_backend} is for --fw keras; drop it for --fw {fw}")
    spec = get_spec(args.model)
    config, settings = request(spec, fw, args)
    code = launch.start(spec, config, settings, scaling, str(Path(__file__).resolve()), argv)
    if code is not None:
        return code
    result = run.execute(spec, config, settings)
    if result["rank"] != 0:
        return 0
    test = ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items())
    print(f"[{fw}] {spec.name} on {result['data']}: test {test}")
    print(
        f"[{fw}] checkpoint {result['checkpoint']}  curves {result['curves']}  tensorboard {result['tensorboard']}"
    )
    print(json.dumps({"result": result["run"] + "/result.json"}))
    return 0


def request(spec, fw: str, args) -> tuple:
    """(config, RunSettings) of the command line: a new run's from the flags, a resumed run's from its snapshot
    (with the flags given checked against it)."""
    overrides = parse_set_flags(args.set)
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    recipe = spec.recipe(args.recipe) if args.recipe else None
    freeze = parse_freeze(args.freeze)
    if args.resume:
        if recipe or args.init:
            raise UserError(
                f"--resume {args.resume} continues the run as it was started: drop --recipe and --init"
            )
        config, data, data_kwargs = resume_request(spec, fw, args.resume, overrides, args.data, args.out)
        out = args.resume
        _, state = snapshot.read(out, tensors=False)  # the run's own callbacks and freezing, unless given
        early_stop = args.early_stop if args.early_stop is not None else state.get("early_stop")
        keep = args.keep or state.get("keep") or "best"
        freeze = freeze or tuple(state.get("freeze") or ())
    else:
        config, data, data_kwargs = recipes.apply(spec, recipe, overrides, args.data)
        out = args.out or f"runs/{spec.name.replace('/', '-')}-{fw}"
        early_stop, keep = args.early_stop, args.keep or "best"
    if args.snapshot_every is not None and args.snapshot_every < 0:
        raise UserError(
            f"--snapshot-every must be >= 0 (0: none but at epoch ends); found {args.snapshot_every}"
        )
    settings = RunSettings(
        fw,
        Path(out),
        data,
        data_kwargs,
        gpus=args.gpus,
        threads=args.threads,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        cpu_replicas=args.cpu_replicas,
        precision=args.precision,
        compile=args.compile,
        sync_bn=args.sync_bn,
        deterministic=args.deterministic,
        resume=bool(args.resume),
        snapshot_every=SNAPSHOT_EVERY if args.snapshot_every is None else args.snapshot_every,
        early_stop=early_stop,
        keep=keep,
        init=args.init,
        freeze=freeze,
        recipe=recipe.name if recipe else None,
    )
    return config, settings


if __name__ == "__main__":
    main_wrapper(main)()
