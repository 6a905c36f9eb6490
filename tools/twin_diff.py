"""How closely each model's twins read as a pair: `diff -y torch_impl.py keras_impl.py`, counted.

    python tools/twin_diff.py                 # print the table
    python tools/twin_diff.py --json          # the counts as JSON
    python tools/twin_diff.py --update        # write the table into README.md and each model card

GNU diff's side-by-side view pairs the two files line by line. Each row is one of: the same line on both
sides, a changed line (`|`: the API swap we want), or a line on one side only (`<` torch only, `>` Keras
only). A pair of twins that mirror each other shows mostly same and changed rows; "paired" below is their
share of all rows. Exit 0; 2 when `diff` is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import _path  # noqa: F401

from shared.cli import Parser, main_wrapper
from shared.errors import UserError
from shared.markdown import replace_block

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 250  # each side gets 122 columns: more than the 110-character line limit, so nothing is cut
GUTTER = WIDTH // 2 - 1  # 0-based column of diff -y's marker for this width
START, END = "<!-- twin-diff:start -->", "<!-- twin-diff:end -->"


def count(folder: Path) -> dict:
    """Rows of `diff -y` over the folder's twins, by kind."""
    if shutil.which("diff") is None:
        raise UserError("GNU diff is not installed; install diffutils")
    proc = subprocess.run(
        ["diff", "-y", "-t", f"--width={WIDTH}", "torch_impl.py", "keras_impl.py"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    if proc.returncode > 1:
        raise UserError(f"diff failed in {folder}: {proc.stderr.strip()}")
    kinds = {"same": 0, "changed": 0, "torch_only": 0, "keras_only": 0}
    for line in proc.stdout.splitlines():
        marker = line[GUTTER] if len(line) > GUTTER else " "
        kinds[{"|": "changed", "<": "torch_only", ">": "keras_only"}.get(marker, "same")] += 1
    rows = sum(kinds.values())
    return {**kinds, "rows": rows, "paired": round((kinds["same"] + kinds["changed"]) / max(rows, 1), 3)}


def folders() -> dict[str, Path]:
    return {
        f"{p.parent.parent.name}/{p.parent.name}": p.parent
        for p in sorted((ROOT / "zoo").glob("*/*/keras_impl.py"))
        if (p.parent / "torch_impl.py").exists()
    }


def table(counts: dict[str, dict]) -> str:
    lines = [
        "Rows of `diff -y torch_impl.py keras_impl.py`, written by `python tools/twin_diff.py --update`.",
        "",
        "| model | rows | same | changed (`\\|`) | torch only (`<`) | Keras only (`>`) | paired |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in counts.items():
        lines.append(
            f"| {name} | {c['rows']} | {c['same']} | {c['changed']} | {c['torch_only']} | "
            f"{c['keras_only']} | {c['paired']:.0%} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = Parser(prog="tools/twin_diff.py", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.add_argument("--update", action="store_true", help="write the table into README.md and the cards")
    args = parser.parse_args(argv)
    counts = {name: count(folder) for name, folder in folders().items()}
    print(json.dumps(counts, indent=2) if args.json else table(counts))
    if args.update:
        readme = ROOT / "README.md"
        readme.write_text(
            replace_block(readme.read_text(), START, END, table(counts), "## The twins side by side")
        )
        for name, folder in folders().items():
            card = folder / "README.md"
            text = card.read_text() if card.exists() else f"# {name}\n"
            card.write_text(
                replace_block(text, START, END, table({name: counts[name]}), "## The twins side by side")
            )
    return 0


if __name__ == "__main__":
    main_wrapper(main)()
