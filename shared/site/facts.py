"""The site's facts, read from the files the tools wrote; every number keeps the file and command it came from.

    runs = find_runs(Path("runs"))               # every result.json under runs/ (the newest per model and fw wins)
    bench = read_bench(Path("bench.json"))       # `tools/bench.py all --json` output
    store = read_store("file:///shared/zoo")     # a store's index.json (tools/hub.py push)
    models = [model_facts(name, runs, bench, store) for name in registry.list_models()]

Nothing is measured here, and nothing is guessed: a figure whose file is missing reads "not measured" or
"not recorded" and says which command writes it. A result.json that cannot be read is listed as skipped
(with the reason) instead of stopping the build; a --bench file or store the user names must be readable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from shared import hub, tasks
from shared.errors import UserError
from shared.frameworks import FRAMEWORKS
from shared.markdown import RESULTS_SUMMARY, read_json_comment
from shared.parity import report as parity_report
from zoo import registry

ROOT = Path(__file__).resolve().parent.parent.parent
NOT_MEASURED, NOT_RECORDED, NOT_RUN = "not measured", "not recorded", "not run"
BENCH_COMMAND = "python tools/bench.py all --json > bench.json"


def shown(path: Path | str) -> str:
    """A path as a reader would type it: relative to the working folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Source:
    """Where a figure was read (a file, or a store URL) and the command that wrote that file."""

    file: str
    command: str

    def text(self) -> str:
        return f"from {self.file}, written by `{self.command}`"


@dataclass(frozen=True)
class Figure:
    """One figure: its value (None when missing), its text, its source; `hint` says how to get a missing one."""

    value: float | None
    text: str
    source: Source | None = None
    hint: str = ""

    @property
    def missing(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class Picture:
    """An image file to copy into the site, with its alt text, caption and source."""

    path: Path
    alt: str
    caption: str
    group: str  # where it belongs on the model page: "torch", "keras", "parity"
    source: Source


@dataclass
class Run:
    """One training run folder (tools/train.py --out): result.json, its checkpoint's meta and manifest."""

    folder: Path
    result: dict
    meta: dict
    manifest_file: Path

    @property
    def model(self) -> str:
        return self.result["model"]

    @property
    def framework(self) -> str:
        return self.result["framework"]

    @property
    def created(self) -> str:
        """meta.json's creation time; else result.json's modification time (ISO 8601 either way)."""
        if self.meta.get("created"):
            return str(self.meta["created"])
        mtime = (self.folder / "result.json").stat().st_mtime
        return dt.datetime.fromtimestamp(mtime, dt.UTC).isoformat(timespec="seconds")

    @property
    def source(self) -> Source:
        return Source(shown(self.folder / "result.json"), train_command(self))

    def inside(self, recorded: str) -> Path:
        """A path result.json recorded, moved along with the run folder if the folder was moved."""
        path = Path(recorded)
        run = Path(self.result.get("run") or self.folder)
        try:
            return self.folder / path.relative_to(run)
        except ValueError:
            return path if path.is_absolute() else self.folder / path


def train_command(run: Run) -> str:
    """The tools/train.py command that trains this run again, rebuilt from its checkpoint's meta.json."""
    spec = registry.get(run.model)
    words = ["python", "tools/train.py", f"zoo/{run.model}", "--fw", run.framework]
    data = run.meta.get("data") or run.result.get("data")
    if data and data != spec.dataset:
        words += ["--data", str(data)]
    recipe = run.meta.get("recipe") or {}
    defaults = dataclasses.asdict(spec.config())
    for key, value in recipe.items():
        if key in defaults and defaults[key] != value:
            words += ["--epochs", str(value)] if key == "epochs" else ["--set", f"{key}={value}"]
    words += ["--out", shown(run.folder)]
    command = shlex.join(words)
    if run.meta.get("data_kwargs"):
        command += f"  (data options {json.dumps(run.meta['data_kwargs'], sort_keys=True)})"
    return command


def train_hint(name: str, fw: str) -> str:
    return f"python tools/train.py zoo/{name} --fw {fw} --out runs/{name.replace('/', '-')}-{fw}"


def _read_json(path: Path) -> dict:
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, found {type(value).__name__}")
    return value


def find_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Every run under `root` (each folder holding a result.json), and one line per result.json skipped."""
    if not root.is_dir():
        raise UserError(f"--runs {root} is not a folder: pass the folder tools/train.py wrote runs into")
    known = set(registry.list_models())
    runs, skipped = [], []
    for path in sorted(root.rglob("result.json")):
        if "snapshots" in path.relative_to(root).parts:
            continue
        try:
            result = _read_json(path)
            missing = [k for k in ("model", "framework", "test") if k not in result]
            if missing:
                raise ValueError(f"no {', '.join(missing)}: not written by tools/train.py")
            if result["model"] not in known:
                raise ValueError(f"model {result['model']!r} is not in this zoo")
            if result["framework"] not in FRAMEWORKS:
                raise ValueError(f"framework {result['framework']!r} is neither torch nor keras")
            checkpoint = path.parent / "checkpoint"
            meta = _read_json(checkpoint / "meta.json") if (checkpoint / "meta.json").is_file() else {}
        except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
            skipped.append(f"{shown(path)}: {str(err).splitlines()[0]}")
            continue
        runs.append(Run(path.parent, result, meta, checkpoint / "manifest.json"))
    return runs, skipped


def newest_runs(runs: list[Run], model: str) -> dict[str, Run]:
    """The newest run of `model` per framework (by the checkpoint's creation time)."""
    newest: dict[str, Run] = {}
    for run in sorted((r for r in runs if r.model == model), key=lambda r: r.created):
        newest[run.framework] = run
    return newest


# ---------------------------------------------------------------- formatting


def metric_text(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"


def size_text(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def rate_text(rate: float) -> str:
    """Examples per second (the unit is in the column header)."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"


# ---------------------------------------------------------------- per-model figures


def card_path(name: str, root: Path = ROOT) -> Path:
    return root / "zoo" / name / "README.md"


def metric_figure(name: str, fw: str, metric: str, run: Run | None, root: Path = ROOT) -> Figure:
    """The primary test metric of `fw`: the newest run's result.json, else the card's recorded Results."""
    if run is not None and isinstance(run.result["test"].get(metric), int | float):
        value = float(run.result["test"][metric])
        return Figure(value, metric_text(value), run.source)
    card = card_path(name, root)
    recorded = read_json_comment(card.read_text(), RESULTS_SUMMARY) if card.is_file() else None
    entry = (recorded or {}).get("runs", {}).get(fw, {})
    if isinstance(entry.get("test", {}).get(metric), int | float):
        value = float(entry["test"][metric])
        return Figure(value, metric_text(value), Source(shown(card), recorded["command"]))
    return Figure(
        None,
        NOT_RECORDED,
        hint=f"{train_hint(name, fw)} && python tools/site.py --runs runs",
    )


def parity_figures(name: str, root: Path = ROOT) -> tuple[Figure, Figure, dict | None]:
    """(verdict, tier-1 max error, the card's parity summary) from the card's parity-summary tag."""
    card = card_path(name, root)
    summary = parity_report.read_summary(card)
    if summary is None:
        hint = f"python tools/crosscheck.py zoo/{name} --train --update-card"
        return Figure(None, NOT_RUN, hint=hint), Figure(None, NOT_RUN, hint=hint), None
    source = Source(shown(card), summary["command"])
    passed = bool(summary.get("passed"))
    verdict = Figure(1.0 if passed else 0.0, ("PASS" if passed else "FAIL"), source)
    error = summary.get("tier1_max_error")
    if error is None:
        tier1 = Figure(None, NOT_RECORDED, source, hint=f"python tools/crosscheck.py zoo/{name}")
    else:
        tier1 = Figure(
            float(error), f"{error:.1e}" + ("" if summary.get("tier1_passed") else " (FAIL)"), source
        )
    return verdict, tier1, summary


@dataclass(frozen=True)
class Bench:
    """`tools/bench.py all --json` output: examples/s per (model, framework)."""

    file: str
    command: str
    machine: str
    rows: list[dict]

    def rate(self, model: str, fw: str) -> Figure:
        for row in self.rows:
            if row["model"] == model and row["framework"] == fw:
                return Figure(float(row["examples_per_s"]), rate_text(row["examples_per_s"]), self.source)
        return Figure(None, NOT_MEASURED, hint=f"{BENCH_COMMAND} ({self.file} has no row for it)")

    @property
    def source(self) -> Source:
        return Source(self.file, self.command)


def read_bench(path: Path) -> Bench:
    """A --bench file: the JSON `tools/bench.py ... --json` prints; anything else is a one-line error."""
    fix = f"pass the output of `{BENCH_COMMAND}`"
    try:
        data = _read_json(path)
        rows = data["results"]
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and {"model", "framework", "examples_per_s"} <= set(r) for r in rows
        ):
            raise ValueError("'results' is not a list of {model, framework, examples_per_s} rows")
    except FileNotFoundError:
        raise UserError(f"--bench {path} does not exist: {fix}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = f"no {err}" if isinstance(err, KeyError) else str(err).splitlines()[0]
        raise UserError(f"--bench {path} is not tools/bench.py --json output ({reason}): {fix}") from None
    command = data.get("command") or f"python tools/bench.py all --json > {shown(path)}"
    return Bench(shown(path), command, str(data.get("machine", "")), rows)


def throughput(name: str, fw: str, bench: Bench | None) -> Figure:
    if bench is None:
        return Figure(None, NOT_MEASURED, hint=f"{BENCH_COMMAND} && python tools/site.py --bench bench.json")
    return bench.rate(name, fw)


def checkpoint_size(name: str, runs: dict[str, Run]) -> Figure:
    """Bytes of the newest run's checkpoint (every file its manifest lists, plus the manifest)."""
    for run in sorted(runs.values(), key=lambda r: r.created, reverse=True):
        try:
            manifest = _read_json(run.manifest_file)
            size = sum(int(f["size"]) for f in manifest["files"].values()) + run.manifest_file.stat().st_size
        except (OSError, ValueError, KeyError, TypeError):
            continue
        source = Source(shown(run.manifest_file), train_command(run))
        return Figure(float(size), size_text(size), source)
    return Figure(None, NOT_RECORDED, hint=f"{train_hint(name, 'torch')} && python tools/site.py --runs runs")


# ---------------------------------------------------------------- pictures

PICTURE_KINDS = (  # (file name start, what it shows)
    ("curves", "training curves (loss and metrics per epoch)"),
    ("attention", "attention map"),
    ("scene", "segmentation overlay and steering"),
    ("filters", "first-layer filters as sequence logos"),
    ("ism", "in-silico mutagenesis map"),
    ("loss_overlay", "training loss of the torch and keras twins, overlaid"),
    ("loss_difference", "per-step loss difference of the twins"),
)


def kind_of(path: Path) -> str:
    return next((what for start, what in PICTURE_KINDS if path.stem.startswith(start)), "figure")


def describe(path: Path, model: str, where: str) -> str:
    """Alt text for a picture: what kind of figure it is, of which model, from which run."""
    return f"{model}, {where}: {kind_of(path)} ({path.stem.replace('_', ' ')})"


def run_pictures(run: Run) -> list[Picture]:
    """curves.png, the task's pictures (result.json "pictures") and interpretation figures (interpret-*/)."""
    found = [run.inside(run.result["curves"]) if run.result.get("curves") else run.folder / "curves.png"]
    found += [run.inside(p) for p in run.result.get("pictures", [])]
    found += sorted(run.folder.glob("interpret-*/*.png"))
    pictures, seen = [], set()
    for path in found:
        if path in seen or path.suffix != ".png" or not path.is_file():
            continue
        seen.add(path)
        source = run.source
        if path.parent.name.startswith("interpret-"):
            fw = path.parent.name.removeprefix("interpret-")
            source = Source(
                shown(path),
                f"python -m {registry.get(run.model).package}.interpret {shown(run.folder)} --fw {fw}",
            )
        where = f"trained in {run.framework}"
        caption = f"{path.name}: {kind_of(path)}"
        pictures.append(Picture(path, describe(path, run.model, where), caption, run.framework, source))
    return pictures


def parity_pictures(runs_root: Path | None, name: str) -> list[Picture]:
    """The loss overlays of the newest parity report (parity.json) for `name` under the runs folder."""
    if runs_root is None:
        return []
    reports = []
    for path in runs_root.rglob("parity.json"):
        try:
            report = _read_json(path)
        except (OSError, ValueError):
            continue
        if report.get("model") == name:
            reports.append((str(report.get("created", "")), path, report))
    if not reports:
        return []
    _, path, report = max(reports, key=lambda r: r[0])
    command = (
        report.get("command") or f"python tools/crosscheck.py zoo/{name} --train --out {shown(path.parent)}"
    )
    pictures = []
    for file in ("loss_overlay.png", "loss_difference.png"):
        image = path.parent / file
        if image.is_file():
            alt = describe(image, name, f"trained parity, {report.get('steps', '?')} steps")
            caption = f"{image.name}: {kind_of(image)}"
            pictures.append(Picture(image, alt, caption, "parity", Source(shown(image), command)))
    return pictures


# ---------------------------------------------------------------- the store


@dataclass(frozen=True)
class StoreVersion:
    name: str
    version: str
    entry: dict
    weights_sha256: str | None

    def pull_command(self, url: str) -> str:
        return f"python tools/hub.py pull {url.rstrip('/')}/{self.name}@{self.version} checkpoints/{self.name}-{self.version}"


def read_store(url: str) -> tuple[str, list[StoreVersion]]:
    """Every version a store's index.json lists, with the weights' sha256 from each version's manifest."""
    index = hub.list_store(url)
    versions = []
    for name, model in sorted(index["models"].items()):
        for version, entry in model.get("versions", {}).items():
            files = hub.show(f"{url.rstrip('/')}/{name}/{version}")["files"]
            weights = files.get("weights.safetensors", {}).get("sha256")
            versions.append(StoreVersion(name, version, entry, weights))
    return url, versions


# ---------------------------------------------------------------- everything about one model


@dataclass
class ModelFacts:
    name: str
    task: str
    dataset: str
    metric: str
    higher_is_better: bool
    card: Path
    metrics: dict[str, Figure]
    verdict: Figure
    tier1: Figure
    parity: dict | None
    throughput: dict[str, Figure]
    size: Figure
    runs: list[Run] = field(default_factory=list)  # every run of this model, newest first
    pictures: list[Picture] = field(default_factory=list)
    store: list[StoreVersion] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return self.name.replace("/", "-")


def model_facts(
    name: str,
    runs: list[Run] | None = None,
    bench: Bench | None = None,
    store: list[StoreVersion] | None = None,
    runs_root: Path | None = None,
    root: Path = ROOT,
) -> ModelFacts:
    spec = registry.get(name)
    task = tasks.get(spec.task)
    mine = sorted((r for r in runs or [] if r.model == name), key=lambda r: r.created, reverse=True)
    newest = newest_runs(mine, name)
    verdict, tier1, summary = parity_figures(name, root)
    pictures = [p for fw in FRAMEWORKS if fw in newest for p in run_pictures(newest[fw])]
    return ModelFacts(
        name=name,
        task=spec.task,
        dataset=spec.dataset,
        metric=task.PRIMARY_METRIC,
        higher_is_better=task.HIGHER_IS_BETTER,
        card=card_path(name, root),
        metrics={fw: metric_figure(name, fw, task.PRIMARY_METRIC, newest.get(fw), root) for fw in FRAMEWORKS},
        verdict=verdict,
        tier1=tier1,
        parity=summary,
        throughput={fw: throughput(name, fw, bench) for fw in FRAMEWORKS},
        size=checkpoint_size(name, newest),
        runs=mine,
        pictures=pictures + parity_pictures(runs_root, name),
        store=[v for v in store or [] if v.entry.get("model") == name],
    )
