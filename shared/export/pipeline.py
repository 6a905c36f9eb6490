"""Export a checkpoint: load the twin, write the artefact into a temp folder beside --out, reload it with
its own runtime, verify it against the twin, write export.json, and only then rename the folder into
place. Anything that fails (a verification included) removes the temp folder: no artefact is left.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from shared import hub, models, tasks
from shared.checkpoint import git_commit
from shared.errors import UserError
from shared.export import FORMATS, TOLERANCE, manifest, onnx, tflite
from shared.export import plan as plans
from shared.export.verify import VerificationError, verify
from shared.recipe import config_to_dict

__all__ = ["VerificationError", "check_request", "export", "load_runner"]  # VerificationError: for the CLI

CHECKPOINT_ONLY = {"weights.safetensors", "config.json", "meta.json", "manifest.json", "README.md"}


def check_request(fmt: str, fw: str | None, out: str | Path, overwrite: bool = False) -> tuple[str, Path]:
    """The framework to export from and the output folder; one-line errors before anything is loaded."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    native = FORMATS[fmt][0]
    fw = fw or native
    if fw not in ("torch", "keras"):
        raise UserError(f"unknown --fw {fw!r}: expected torch or keras")
    if fw != native:
        other = [f for f, (framework, _) in FORMATS.items() if framework == fw]
        raise UserError(
            f"--format {fmt} is made from the {native} twin, not the {fw} one (any checkpoint loads into "
            f"either twin): leave --fw out, or pick a {fw} format ({', '.join(other)})"
        )
    out = Path(out)
    blocked = [p for p in out.parents if p.exists() and not p.is_dir()]
    if blocked:
        raise UserError(f"--out {out} is inside {blocked[-1]}, which is a file; name a folder for the export")
    if out.is_file() or out.is_symlink():
        raise UserError(f"--out {out} is a file; name a folder for the export (it is created)")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(
                f"--out {out} already exists and is not empty: pass --overwrite or another folder"
            )
        if not (out / manifest.EXPORT_FILE).is_file():
            raise UserError(
                f"--out {out} is a folder without {manifest.EXPORT_FILE}, not an export: refusing to replace it"
            )
    return fw, out


def export(
    source: str,
    fmt: str,
    out: str | Path,
    fw: str | None = None,
    tolerance: float = TOLERANCE,
    overwrite: bool = False,
) -> dict:
    """Export checkpoint `source` (folder, run folder or store URL) as `fmt` into `out`; returns export.json.
    Raises VerificationError when the reloaded artefact does not reproduce the twin (nothing is written)."""
    fw, out = check_request(fmt, fw, out, overwrite)
    if not tolerance >= 0:
        raise UserError(f"--tolerance must be >= 0; found {tolerance}")
    ckpt = hub.load(source)
    if fmt == "tflite":
        tflite.check(models.get_spec(ckpt["model"]))
    spec, config, model, ckpt = models.load_model(ckpt["folder"], fw)
    try:
        state = tasks.load_state(spec, ckpt)
    except UserError:
        state = None
    plan = plans.plan(spec, config, model, state)
    writer = importlib.import_module(f"shared.export.{FORMATS[fmt][1]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        started = time.perf_counter()
        where, extra = writer.write(plan, spec, model, tmp, fmt)
        copied = []
        for name in ckpt["files"]:
            if name not in CHECKPOINT_ONLY:
                shutil.copyfile(Path(ckpt["folder"]) / name, tmp / name)
                copied.append(name)
        plan.preprocessing["files"] = copied
        written = time.perf_counter()
        graphs = {name: plan.graphs[name].entry(**entry) for name, entry in where.items()}
        run = load_runner(tmp, {"format": fmt, "graphs": graphs})
        figures = verify(plan, spec, model, run, tolerance, fw)
        figures["seconds"] = {
            "export": round(written - started, 2),
            "verify": round(time.perf_counter() - written, 2),
        }
        doc = manifest.document(
            fmt=fmt,
            framework=fw,
            plan=plan,
            config=config_to_dict(config),
            checkpoint=ckpt,
            source=str(source),
            graphs=where,
            extra={
                **extra,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "zoo_commit": git_commit(),
            },
            verification=figures,
            folder=tmp,
        )
        manifest.write(tmp, doc)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private; the export gets the usual permissions
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return doc


def _replace(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder to `out` (an empty folder or an earlier export there is replaced)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def load_runner(folder: str | Path, doc: dict | None = None, threads: int | None = None):
    """run(graph, feeds) -> outputs for an export folder, in the runtime of its format. Without `doc`,
    export.json is read and every file checked against it first."""
    doc = doc or manifest.read(folder)
    fmt, graphs = doc["format"], doc["graphs"]
    if fmt == "onnx":
        return onnx.runner(Path(folder), graphs, threads)
    if fmt == "torch-export":
        from shared.export.torch_export import runner

        return runner(Path(folder), graphs)
    if fmt in ("savedmodel", "keras"):
        from shared.export.keras_export import runner

        return runner(Path(folder), graphs, fmt)
    if fmt == "tflite":
        return tflite.runner(Path(folder), graphs)
    raise UserError(f"{folder}/export.json names format {fmt!r}, which this zoo cannot run")
