"""The evidence a push records beside a checkpoint, read from the JSON lines other tools print.

`tools/crosscheck.py MODEL --json` prints one check per line (name, passed, max_error); a push keeps how
many passed and each check's largest error. `tools/evaluate.py --json` prints one evaluation; a push keeps
its metrics per framework, beside the training run's own test metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.errors import UserError
from shared.hub.errors import one_line


def parity_summary(path: str | Path, model: str) -> dict:
    """Summarise `tools/crosscheck.py MODEL --json` output: checks passed and each check's max error."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UserError(f"cannot read --parity {path} ({one_line(err)})") from None
    checks = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                checks.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(
                    f"--parity {path} line {n} is not JSON: pass `tools/crosscheck.py --json` output"
                ) from None
    if not checks or any(c.get("model") != model or "max_error" not in c for c in checks):
        raise UserError(f"--parity {path} is not `tools/crosscheck.py --json` output for {model}")
    return {
        "checks": len(checks),
        "passed": sum(bool(c.get("passed")) for c in checks),
        "max_error": {c["name"]: c["max_error"] for c in checks},
    }


def results_by_framework(paths: list[str | Path], model: str, meta: dict) -> dict:
    """Metrics per framework: the training run's test metrics, plus `tools/evaluate.py --json` outputs."""
    results = {}
    if meta.get("framework") and isinstance(meta.get("metrics", {}).get("test"), dict):
        results[meta["framework"]] = {
            "data": meta.get("data"),
            "split": "test",
            "metrics": meta["metrics"]["test"],
        }
    for path in paths:
        try:
            result = json.loads(Path(path).read_text())
            fw, metrics = result["framework"], result["metrics"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(
                f"--results {path} is not `tools/evaluate.py --json` output ({one_line(err)})"
            ) from None
        if result.get("model") != model:
            raise UserError(f"--results {path} evaluates {result.get('model')!r}, not {model!r}")
        results[fw] = {"data": result.get("data"), "split": result.get("split"), "metrics": metrics}
    return results
