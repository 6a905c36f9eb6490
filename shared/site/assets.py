"""The site's static files (static/site.css, static/site.js), copied into <out>/assets/ as they are."""

from __future__ import annotations

import shutil
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = ("site.css", "site.js")


def write_assets(out: Path) -> list[Path]:
    folder = out / "assets"
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(STATIC / name, folder / name)) for name in ASSETS]
