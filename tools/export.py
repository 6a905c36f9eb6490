"""Export a checkpoint for deployment, verified against the zoo twin it came from.

    python tools/export.py runs/cnn-torch --format onnx --out exports/cnn-onnx
    python tools/export.py runs/seq2seq --format savedmodel --out exports/seq2seq-savedmodel
    python tools/export.py s3://bucket/zoo/driving-perception/v1 --format tflite --out exports/roads-tflite

Formats: onnx and torch-export (.pt2) from the torch twin; savedmodel, keras (.keras) and tflite (image
models) from the Keras twin. Any checkpoint exports to any format, whichever framework trained it.
The artefact is reloaded by its own runtime and compared with the twin (max |export - zoo| /
max(1, |zoo|) <= --tolerance; translation models must decode the same tokens); a failed verification
exits 1 and leaves nothing behind. DIR/export.json describes the folder (docs/EXPORT.md).
"""

from __future__ import annotations

import sys

import _path  # noqa: F401

from shared.cli import Parser, main_wrapper
from shared.export import FORMATS, TOLERANCE
from shared.export.pipeline import VerificationError, check_request, export


def main(argv=None) -> int:
    parser = Parser(prog="tools/export.py", description=__doc__)
    parser.add_argument("checkpoint", help="checkpoint folder, run folder or store URL")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="what to export")
    parser.add_argument("--fw", help="twin to export from: torch or keras (default: the format's own)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to create for the export")
    parser.add_argument(
        "--tolerance", type=float, default=TOLERANCE, help=f"max error (default {TOLERANCE:g})"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export in DIR")
    args = parser.parse_args(argv)

    check_request(args.format, args.fw, args.out, args.overwrite)  # one-line errors before a framework loads
    try:
        doc = export(args.checkpoint, args.format, args.out, args.fw, args.tolerance, args.overwrite)
    except VerificationError as err:
        print(f"error: {err}; nothing was written to {args.out}", file=sys.stderr)
        return 1
    figures = doc["verification"]
    decoded = (
        f", greedy decoding identical on {figures['decoded_sources']} sources"
        if "decoded_identical" in figures
        else ""
    )
    print(
        f"exported {doc['model']} ({doc['framework']} twin) as {doc['format']} to {args.out}: "
        f"{', '.join(doc['graphs'])}; verified at batch sizes {', '.join(map(str, figures['batch_sizes']))}: "
        f"max error {figures['max_rel_error']:.3g} (absolute {figures['max_abs_error']:.3g}) <= "
        f"{figures['tolerance']:g}{decoded}"
    )
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
