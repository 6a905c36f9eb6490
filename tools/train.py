"""Train a model of the zoo in Keras or PyTorch on embedded or hub data.

    python tools/train.py zoo/vision/cnn --fw torch --epochs 3 --out runs/cnn-torch
    python tools/train.py zoo/nlp/seq2seq --fw keras --set hidden_size=128
"""

from __future__ import annotations

import json

import _path  # noqa: F401

from shared.cli import Parser, check_fw, get_spec, main_wrapper
from shared.errors import UserError
from shared.recipe import parse_set_flags


def build_parser() -> Parser:
    parser = Parser(prog="tools/train.py", description=__doc__)
    parser.add_argument("model", help="model folder or name, e.g. zoo/vision/cnn or vision/cnn")
    parser.add_argument("--fw", required=True, help="keras or torch")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs on this machine (0 = CPU)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--seed", type=int, help="seed for init, data order and dropout")
    parser.add_argument("--data", help="dataset name (default: the model's embedded dataset), or hub:<repo>[@rev]")
    parser.add_argument("--out", help="run folder (default runs/<model>-<fw>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any Config field")
    parser.add_argument("--threads", type=int, help="CPU threads for the framework (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    fw = check_fw(args.fw)
    if args.gpus < 0:
        raise UserError(f"--gpus must be 0 (CPU) or a positive number of GPUs; found {args.gpus}")
    spec = get_spec(args.model)
    overrides = parse_set_flags(args.set)
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"), ("seed", "seed")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    config = spec.config(**overrides)
    out = args.out or f"runs/{spec.name.replace('/', '-')}-{fw}"

    from shared.train.run import train

    result = train(spec, config, fw, data=args.data, out=out, gpus=args.gpus, threads=args.threads,
                   progress=not args.no_progress, overwrite=args.overwrite)
    test = ", ".join(f"{k} {v:.4f}" for k, v in result["test"].items())
    print(f"[{fw}] {spec.name} on {result['data']}: test {test}")
    print(f"[{fw}] checkpoint {result['checkpoint']}  curves {result['curves']}  tensorboard {result['tensorboard']}")
    print(json.dumps({"result": result["run"] + "/result.json"}))
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
