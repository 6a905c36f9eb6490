"""Deployment figures as Markdown: the generated part of docs/PERFORMANCE.md and the "Deployment" section
at the end of every model card, both written from the JSON that tools/bench_export.py (--out) and
tools/loadtest.py (--json) leave in one folder:

    python tools/loadtest.py --write-docs runs/perf

Each JSON carries what the figures need to be read: the command that made it, the date, the machine
(CPU model, cores) and the load average seen before and after the measurement (the machine may be shared
with other jobs). `stamp` and `finish` add those; nothing here measures anything. Framework-free.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from shared.errors import UserError
from shared.markdown import replace_block
from shared.models import get_spec
from shared.recipe import RECIPE_FIELDS, config_to_dict
from zoo.registry import list_models

PERFORMANCE_START, PERFORMANCE_END = "<!-- performance:start -->", "<!-- performance:end -->"
DEPLOYMENT_START, DEPLOYMENT_END = "<!-- deployment:start -->", "<!-- deployment:end -->"
PERCEPTION_TARGET = {"model": "driving/perception", "framework": "onnx", "config": "default", "p99_ms": 50.0}
TARGET_CONCURRENCY = 8
REQUESTS = {  # a request of each task for the model cards' curl line
    "classification": """'{"inputs": [{"image": "'"$(base64 -w0 digit.png)"'"}]}'""",
    "perception": """'{"inputs": [{"image": "'"$(base64 -w0 road.png)"'"}]}'""",
    "translation": """'{"inputs": ["a sentence to translate"]}'""",
    "rating": """'{"inputs": [{"user": 1}], "options": {"top_k": 5}}'""",
    "implicit": """'{"inputs": [{"user": 1}], "options": {"top_k": 5}}'""",
    "multilabel": """'{"inputs": [{"id": "seq1", "sequence": "ACGT..."}]}'""",
}
TFLITE_TASKS = ("classification", "perception")


# ---- what every result file records ----------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the system does not report them)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def stamp(kind: str, tool: str, argv: list[str] | None) -> dict:
    """The header of a result file, taken before measuring: kind, command, date, machine, load average."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return {
        "kind": kind,
        "command": shlex.join(["python", tool, *argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "system": platform.platform(terse=True)},
        "load_average": {"start": load_average()},
    }


def finish(result: dict) -> dict:
    result["load_average"]["end"] = load_average()
    return result


def provenance(entry: dict) -> dict:
    """Where a served model's weights came from (framework, data, epochs; for an export also the checkpoint
    it was made from), read from the checkpoint's meta.json beside the server or from an export's
    export.json; {} when neither is at hand."""
    meta, found = {}, {}
    folder = (entry.get("checkpoint") or {}).get("folder")
    export = (entry.get("export") or {}).get("path")
    if export and (Path(export) / "export.json").is_file():
        info = json.loads((Path(export) / "export.json").read_text())
        meta = info.get("checkpoint", {}).get("meta", {})
        found = {"checkpoint": info.get("checkpoint", {}).get("path"), "export_format": info.get("format")}
    elif folder and (Path(folder) / "meta.json").is_file():
        meta = json.loads((Path(folder) / "meta.json").read_text())
    return {**{k: meta[k] for k in ("framework", "data", "data_kwargs", "epochs") if k in meta}, **found}


def config_label(name: str, config: dict) -> str:
    """ "smoke" or "default" when the model fields its smoke recipe sets (recipe fields aside) have the smoke
    or the default values; else "custom"."""
    spec = get_spec(name)
    keys = [k for k in spec.smoke_config if k not in RECIPE_FIELDS]
    found = {k: _plain(config.get(k)) for k in keys}
    for label, reference in (
        ("smoke", spec.config(**spec.smoke_config)),
        ("default", spec.config()),
    ):
        values = config_to_dict(reference)
        if all(found[k] == _plain(values[k]) for k in keys):
            return label
    return "custom"


def _plain(value):
    return list(value) if isinstance(value, tuple | list) else value


# ---- reading the results ---------------------------------------------------------------------------


def read_results(folder: str | Path) -> tuple[dict | None, list[dict]]:
    """(the tools/bench_export.py result or None, the tools/loadtest.py results) of the JSON files in
    `folder`, load tests in the order of the models' registry, then framework, then max batch."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"--write-docs {folder}: no such folder (it holds the tools' JSON results)")
    bench, loads = None, []
    for path in sorted(folder.glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path} is not JSON ({err}): remove it or run the tool again") from None
        kind = result.get("kind") if isinstance(result, dict) else None
        if kind == "bench_export":
            if bench is not None:
                raise UserError(f"{folder} holds two tools/bench_export.py results; keep one")
            bench = result
        elif kind == "loadtest":
            result["config_label"] = config_label(result["model"]["name"], result["model"]["config"])
            loads.append(result)
    if bench is None and not loads:
        raise UserError(
            f"{folder} holds no results: run tools/bench_export.py --out {folder}/bench_export.json and "
            f"tools/loadtest.py ... --json {folder}/NAME.json first"
        )
    order = list_models()
    loads.sort(
        key=lambda r: (
            order.index(r["model"]["name"]),
            r["config_label"],
            r["model"]["framework"],
            r["limits"]["max_batch"],
            r["date"],
        )
    )
    return bench, loads


def level(result: dict, concurrency: int) -> dict | None:
    return next((x for x in result["levels"] if x["concurrency"] == concurrency), None)


def perception_target(loads: list[dict]) -> list[dict]:
    """Every driving/perception ONNX default-config load test: its p99 at concurrency 8 against 50 ms."""
    found = []
    for result in loads:
        model, measured = result["model"], level(result, TARGET_CONCURRENCY)
        if (
            model["name"] == PERCEPTION_TARGET["model"]
            and model["framework"] == PERCEPTION_TARGET["framework"]
            and result["config_label"] == PERCEPTION_TARGET["config"]
            and measured
            and measured["latency_ms"]["p99"] is not None
        ):
            p99 = measured["latency_ms"]["p99"]
            found.append({"p99_ms": p99, "met": p99 <= PERCEPTION_TARGET["p99_ms"], "result": result})
    return found


# ---- Markdown ----------------------------------------------------------------------------------------


def _ms(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _load(result: dict) -> str:
    found = result.get("load_average", {})
    start, end = found.get("start") or [None], found.get("end") or [None]
    if start[0] is None:
        return "not recorded"
    return f"{start[0]:.1f} before, {end[0]:.1f} after" if end[0] is not None else f"{start[0]:.1f} before"


def _machine(result: dict) -> str:
    machine = result.get("machine", {})
    return f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores"


def bench_table(bench: dict, names: list[str] | None = None) -> list[str]:
    lines = [
        "| model | timed | torch eager (ms) | onnxruntime (ms) | onnxruntime / torch | onnxruntime <= torch |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, row in bench["models"].items():
        if names is None or name in names:
            lines.append(
                f"| {name} | {row['what']} | {_ms(row['torch_eager_ms'])} | {_ms(row['onnxruntime_ms'])} | "
                f"{row['onnx_over_torch']:.2f} | {'yes' if row['onnx_over_torch'] <= 1 else 'no'} |"
            )
    return lines


def load_table(loads: list[dict]) -> list[str]:
    levels = sorted({x["concurrency"] for r in loads for x in r["levels"]})
    head = "| model (config) | served by | max batch |" + "".join(
        f" c={c} p50 / p99 ms | c={c} req/s |" for c in levels
    )
    lines = [
        head + " failed | load average |",
        "| --- | --- | ---: |" + " ---: | ---: |" * len(levels) + " ---: | --- |",
    ]
    for result in loads:
        model = result["model"]
        cells = []
        for c in levels:
            found = level(result, c)
            if found is None:
                cells += ["-", "-"]
            else:
                latency = found["latency_ms"]
                cells += [
                    f"{_ms(latency['p50'])} / {_ms(latency['p99'])}",
                    f"{found['throughput_rps'] or 0:.0f}",
                ]
        failed = sum(x["good_errors"] + len(x["bad_not_4xx"]) for x in result["levels"])
        lines.append(
            f"| {model['name']} ({result['config_label']}) | {model['framework']} | {result['limits']['max_batch']} | "
            + " | ".join(cells)
            + f" | {failed} | {_load(result)} |"
        )
    return lines


def _commands(results: list[dict]) -> list[str]:
    return ["```bash", *(r["command"] for r in results), "```"]


def _dates(results: list[dict]) -> str:
    dates = sorted(r["date"] for r in results)
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def _target_line(found: list[dict]) -> str:
    goal = (
        f"{PERCEPTION_TARGET['model']} from ONNX at its default config, p99 <= {PERCEPTION_TARGET['p99_ms']:g} ms "
        f"at concurrency {TARGET_CONCURRENCY}"
    )
    if not found:
        return f"- {goal}: not measured in these results."
    met = sum(f["met"] for f in found)
    verdict = "met" if met == len(found) else "not met" if not met else f"met in {met} of {len(found)} runs"
    runs = "; ".join(
        f"p99 {f['p99_ms']:.1f} ms (max batch {f['result']['limits']['max_batch']}, load average "
        f"{_load(f['result'])})"
        for f in found
    )
    return f"- {goal}: **{verdict}**. {runs}."


def performance_block(bench: dict | None, loads: list[dict], folder: str = "DIR") -> str:
    lines = [
        f"Generated by `python tools/loadtest.py --write-docs {folder}` from the JSON results the commands "
        "below wrote there; do not edit by hand."
    ]
    if bench is not None:
        versions = ", ".join(f"{k} {v}" for k, v in bench.get("versions", {}).items())
        faster = sum(row["onnx_over_torch"] <= 1 for row in bench["models"].values())
        lines += [
            "",
            "### Batch-1 latency: eager torch twin against its ONNX export",
            "",
            f"Measured {bench['date']} on {_machine(bench)}, {bench['threads']} thread(s) for torch and "
            f"onnxruntime, {bench['config']} Configs (random weights), median of {bench['repeats']} runs after "
            f"{bench['warmup']} untimed ones; load average {_load(bench)} ({versions}).",
            "",
            *bench_table(bench),
            "",
            f"onnxruntime at batch 1 was at most the eager torch twin's latency for {faster} of "
            f"{len(bench['models'])} models.",
            "",
            *_commands([bench]),
        ]
    if loads:
        first = loads[0]
        lines += [
            "",
            "### Serving under load: tools/serve.py against tools/loadtest.py",
            "",
            f"Measured {_dates(loads)} on {_machine(first)}; closed loop from the same machine (127.0.0.1), "
            "the request is each model's example from `/v1/models`; p50 / p99 latency at the client and "
            "answered requests per second at each concurrency; `failed` counts good requests not answered "
            "200. Each server ran with the threads and batching its command names; the load average is the "
            "1-minute figure before and after that run.",
            "",
            *load_table(loads),
            "",
            "Checkpoints:",
            "",
            *sorted({f"- {r['model']['name']} ({r['config_label']}): {_weights(r)}" for r in loads}),
            "",
            "Made with (commands rebuilt from each checkpoint's `meta.json` and served Config):",
            "",
            "```bash",
            *dict.fromkeys(c for r in loads for c in made_by(r)),
            "```",
            "",
            "Measured with:",
            "",
            *_commands(loads),
        ]
    lines += ["", "### Targets", "", _target_line(perception_target(loads))]
    if bench is not None:
        slower = [name for name, row in bench["models"].items() if row["onnx_over_torch"] > 1]
        lines.append(
            "- onnxruntime batch-1 latency <= the eager torch twin's for every model: "
            + ("**met**." if not slower else f"**not met** for {', '.join(slower)}.")
        )
    return "\n".join(lines)


def _weights(result: dict) -> str:
    found = result.get("provenance") or {}
    if not found:
        return "weights of unrecorded origin"
    data = found.get("data", "?")
    if found.get("data_kwargs"):
        data += " " + ", ".join(f"{k}={v}" for k, v in found["data_kwargs"].items())
    epochs = found.get("epochs")
    trained = f"trained {epochs} epoch{'s' if epochs != 1 else ''}" if epochs is not None else "trained"
    return f"{trained} in {found.get('framework', '?')} on {data}"


def _set_value(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def made_by(result: dict) -> list[str]:
    """The tools/train.py (and tools/export.py) commands that make a load test's checkpoint (export) again:
    the served Config's fields that differ from the defaults as --set flags, the data and epochs from the
    checkpoint's meta.json. [] when the origin is not recorded or not a tools/train.py run."""
    found, server = result.get("provenance") or {}, result.get("server") or {}
    if not found.get("framework") or "data" not in found or found.get("data_kwargs") or not server:
        return []
    spec = get_spec(result["model"]["name"])
    defaults = config_to_dict(spec.config())
    folder = found.get("checkpoint") or server["source"]
    args = ["python", "tools/train.py", "zoo/" + spec.name, "--fw", found["framework"]]
    if found.get("epochs") is not None:
        args += ["--epochs", str(found["epochs"])]
    if found["data"] != spec.dataset:
        args += ["--data", found["data"]]
    for key, value in result["model"]["config"].items():
        if key != "epochs" and key in defaults and _plain(value) != _plain(defaults[key]):
            args += ["--set", f"{key}={_set_value(value)}"]
    commands = [shlex.join([*args, "--out", folder])]
    if found.get("export_format"):
        commands.append(
            shlex.join(
                [
                    "python",
                    "tools/export.py",
                    folder,
                    "--format",
                    found["export_format"],
                    "--out",
                    server["source"],
                ]
            )
        )
    return commands


def deployment_block(name: str, bench: dict | None, loads: list[dict]) -> str:
    spec = get_spec(name)
    run = f"runs/{name.replace('/', '-')}-torch"
    exports = f"exports/{name.replace('/', '-')}"
    formats = ["onnx", "savedmodel", *(["tflite"] if spec.task in TFLITE_TASKS else [])]
    lines = [
        "## Deployment",
        "",
        "Export a checkpoint (each export is verified against the twin it came from; "
        "[docs/EXPORT.md](../../../docs/EXPORT.md)) and serve it over HTTP "
        "([docs/SERVING.md](../../../docs/SERVING.md)):",
        "",
        "```bash",
        f"python tools/train.py zoo/{name} --fw torch                   # writes {run}",
        *(f"python tools/export.py {run} --format {fmt} --out {exports}-{fmt}" for fmt in formats),
        f"python tools/serve.py {run} --fw torch --port 8000             # or --fw keras",
        f"python tools/serve.py {exports}-onnx --fw onnx --port 8000",
        f"curl -s localhost:8000/v1/predict -d {REQUESTS[spec.task]}",
        f"python tools/loadtest.py {exports}-onnx --fw onnx --concurrency 1,8,32",
        "```",
    ]
    mine = [r for r in loads if r["model"]["name"] == name]
    if bench is not None and name in bench["models"]:
        lines += [
            "",
            f"Batch-1 latency ({bench['config']} Config, {bench['threads']} thread, {bench['date'][:10]}, "
            f"{_machine(bench)}, load average {_load(bench)}):",
            "",
            *bench_table(bench, [name]),
        ]
    if mine:
        lines += [
            "",
            f"Served under load ({_dates(mine)[:10]}, {_machine(mine[0])}; the commands are in "
            "[docs/PERFORMANCE.md](../../../docs/PERFORMANCE.md)):",
            "",
            *load_table(mine),
        ]
        if name == PERCEPTION_TARGET["model"]:
            lines += ["", _target_line(perception_target(mine))[2:]]
    if bench is None and not mine:
        lines += ["", "No deployment figures were measured for this model yet."]
    return "\n".join(lines)


def place_last(text: str, start: str, end: str, block: str) -> str:
    """`text` with the block between `start` and `end` removed wherever it was, then appended at the end."""
    i, j = text.find(start), text.find(end)
    if 0 <= i < j:
        text = text[:i].rstrip("\n") + "\n" + text[j + len(end) :].lstrip("\n")
    return text.rstrip("\n") + f"\n\n{start}\n{block}\n{end}\n"


def write_docs(folder: str | Path, root: str | Path) -> list[Path]:
    """docs/PERFORMANCE.md's generated section and every model card's Deployment section, from the
    results in `folder`; returns the files written."""
    bench, loads = read_results(folder)
    root = Path(root)
    performance = root / "docs" / "PERFORMANCE.md"
    text = performance.read_text() if performance.is_file() else "# Performance\n"
    performance.write_text(
        replace_block(
            text,
            PERFORMANCE_START,
            PERFORMANCE_END,
            performance_block(bench, loads, str(folder)),
            "## Figures",
        ).rstrip("\n")
        + "\n"
    )
    written = [performance]
    measured = set(bench["models"] if bench else []) | {r["model"]["name"] for r in loads}
    for name in [n for n in list_models() if n in measured]:
        spec = get_spec(name)
        card = root / Path(*spec.package.split(".")) / "README.md"
        if card.is_file():
            card.write_text(
                place_last(
                    card.read_text(), DEPLOYMENT_START, DEPLOYMENT_END, deployment_block(name, bench, loads)
                )
            )
            written.append(card)
    return written
