"""Run a checkpoint on your own inputs, in either framework.

    python tools/predict.py runs/cnn-torch --fw keras digit.png --top-k 3
    python tools/predict.py runs/seq2seq --fw torch "three hundred and twelve" --opt beam=4

Inputs are what the model's task reads (image files, sentences, user ids, FASTA files); --opt passes
task options (key=value) such as beam size or an output folder.
"""

from __future__ import annotations

import _path  # noqa: F401

from shared import hub, tasks
from shared.cli import Parser, check_fw, main_wrapper
from shared.errors import UserError
from shared.models import checkpoint_config, load_model
from shared.recipe import parse_set_flags


def task_options(pairs: list[str], top_k: int) -> dict:
    """--opt key=value pairs, with top_k (from --top-k or --opt) checked as a whole number >= 1."""
    options = {"top_k": top_k, **parse_set_flags(pairs)}
    try:
        options["top_k"] = int(options["top_k"])
    except ValueError:
        raise UserError(f"top_k must be a whole number >= 1; found {options['top_k']!r}") from None
    if options["top_k"] < 1:
        raise UserError(f"top_k must be a whole number >= 1; found {options['top_k']}")
    return options


def main(argv=None) -> int:
    parser = Parser(prog="tools/predict.py", description=__doc__)
    parser.add_argument("checkpoint", help="run folder, checkpoint folder or store URL")
    parser.add_argument("--fw", required=True, help="keras or torch")
    parser.add_argument("inputs", nargs="+", help="inputs for the model's task")
    parser.add_argument("--top-k", type=int, default=5, help="how many classes/items to show")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="task option")
    args = parser.parse_args(argv)
    fw = check_fw(args.fw)
    options = task_options(args.opt, args.top_k)

    ckpt = hub.load(args.checkpoint)  # verify (and fetch a store URL) before importing any framework
    spec, _ = checkpoint_config(ckpt)  # an unknown model or a bad config.json fails here, framework-free
    if not hasattr(spec.task_module, "predict"):
        raise UserError(f"task {spec.task!r} of {spec.name} has no predict support")
    spec, config, model, ckpt = load_model(ckpt["folder"], fw)
    task = spec.task_module
    task.predict(spec, model, config, tasks.load_state(spec, ckpt), args.inputs, options)
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
