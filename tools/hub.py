"""Share checkpoints: push to, pull from and list a store (a folder, file://, s3://, hf:// or any fsspec URL).

    python tools/hub.py push runs/cnn-torch s3://bucket/zoo                 # -> s3://bucket/zoo/vision-cnn/v1
    python tools/hub.py push runs/cnn-torch hf://me/zoo --version v2 --parity crosscheck.jsonl
    python tools/hub.py ls s3://bucket/zoo
    python tools/hub.py show s3://bucket/zoo/vision-cnn/v1
    python tools/hub.py pull s3://bucket/zoo/vision-cnn@v1 checkpoints/cnn  # sha256-verified
    python tools/evaluate.py s3://bucket/zoo/vision-cnn/v1 --fw keras       # pulled into the cache first

S3 reads the usual AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_ENDPOINT_URL);
hf:// reads HF_TOKEN and HF_ENDPOINT. --endpoint-url and --option KEY=VALUE (fsspec storage options) override.
"""

from __future__ import annotations

import json

import _path  # noqa: F401

from shared import hub
from shared.cli import Parser, main_wrapper
from shared.models import check_weights_fit


def build_parser() -> Parser:
    parser = Parser(prog="tools/hub.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    push = commands.add_parser("push", help="publish a checkpoint or run folder as <name>/<version>/")
    push.add_argument("checkpoint", help="run folder, checkpoint folder or store URL")
    push.add_argument("url", help="store root, e.g. s3://bucket/zoo, hf://user/repo or a local folder")
    push.add_argument("--name", help="model name in the store (default: the model, e.g. vision-cnn)")
    push.add_argument("--version", help="version name (default: the next vN)")
    push.add_argument("--force", action="store_true", help="replace an existing version")
    push.add_argument("--parity", help="`tools/crosscheck.py MODEL --json` output to list in the index")
    push.add_argument(
        "--results", action="append", default=[], help="`tools/evaluate.py --json` output (repeatable)"
    )
    pull = commands.add_parser("pull", help="download a version into DEST, verified")
    pull.add_argument(
        "url", help="<store>/<name>/<version>, <store>/<name>@<version> or <store>/<name> (latest)"
    )
    pull.add_argument("dest", help="a new or empty folder")
    ls = commands.add_parser("ls", help="list every model and version of a store (one read)")
    ls.add_argument("url", help="store root")
    show = commands.add_parser("show", help="one version with its files, or every version of a model")
    show.add_argument("url", help="<store>/<name>[/<version>]")
    for sub in (push, pull, ls, show):
        sub.add_argument(
            "--endpoint-url", help="S3 or Hugging Face endpoint (default: AWS_ENDPOINT_URL / HF_ENDPOINT)"
        )
        sub.add_argument(
            "--option", action="append", default=[], metavar="KEY=VALUE", help="fsspec storage option"
        )
        sub.add_argument("--json", action="store_true", help="print JSON")
    return parser


def print_index(index: dict) -> None:
    print(
        f"{'name':<24} {'version':<10} {'trained in':<10} {'data':<14} {'size':>10}  metrics (test)   parity"
    )
    for name, model in index["models"].items():
        for version, entry in model["versions"].items():
            metrics = ", ".join(
                f"{k} {v:.4f}" for k, v in entry.get("metrics", {}).items() if isinstance(v, float)
            )
            parity = entry.get("parity")
            shown = (
                f"{parity['passed']}/{parity['checks']} max {max(parity['max_error'].values()):.1e}"
                if parity
                else "-"
            )
            print(
                f"{name:<24} {version:<10} {entry.get('framework') or '-':<10} {entry.get('data') or '-':<14} "
                f"{entry['size']:>10,}  {metrics or '-'}   {shown}"
            )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    options = hub.storage_options(args.url, args.endpoint_url, args.option)
    if args.command == "push":
        entry = hub.push(
            args.checkpoint,
            args.url,
            name=args.name,
            version=args.version,
            force=args.force,
            parity=args.parity,
            results=args.results,
            options=options,
            check=check_weights_fit,  # the weights fit the model config.json describes
        )
        print(
            json.dumps(entry, indent=2)
            if args.json
            else f"pushed {entry['model']} ({entry['files']} files, "
            f"{entry['size']:,} bytes, trained in {entry['framework']}) to {entry['url']}"
        )
    elif args.command == "pull":
        dest = hub.pull(args.url, args.dest, options)
        print(
            json.dumps({"checkpoint": str(dest)})
            if args.json
            else f"pulled {args.url} into {dest} (verified)"
        )
    elif args.command == "ls":
        index = hub.list_store(args.url, options)
        if args.json:
            print(json.dumps(index, indent=2))
        else:
            print_index(index)
    else:
        print(json.dumps(hub.show(args.url, options), indent=2))
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
