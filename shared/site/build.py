"""Write the whole site into a folder: read the facts, copy the pictures, render every page.

The site is written into a hidden folder beside --out and moved into place when complete; an existing
--out is replaced only when it is empty or is a site this module wrote (it holds .zoo-site), so a
mistyped --out never deletes someone's folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from html import escape
from pathlib import Path

from shared.errors import UserError
from shared.site import render
from shared.site.assets import write_assets
from shared.site.cards import Linker, render_markdown
from shared.site.facts import ROOT, ModelFacts, find_runs, model_facts, read_bench, read_store, shown
from zoo import registry

MARKER = ".zoo-site"


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: pass a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(
            f"--out {out} holds files that tools/site.py did not write: pass a new or empty folder "
            "(nothing was changed)"
        )


def copy_pictures(m: ModelFacts, site: Path) -> dict[Path, str]:
    """Copy a model's pictures to images/<model>/<group>/...; returns picture path -> link from its page."""
    links = {}
    for picture in m.pictures:
        run = next((r.folder for r in m.runs if picture.path.is_relative_to(r.folder)), None)
        name = picture.path.relative_to(run) if run else Path(picture.path.name)
        dest = site / "images" / m.slug / picture.group / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture.path, dest)
        links[picture.path] = "../" + dest.relative_to(site).as_posix()
    return links


def card_html(m: ModelFacts, site: Path, root: Path, model_pages: dict[Path, Path]) -> str:
    if not m.card.is_file():
        return f'<p class="missing">No model card: zoo/{escape(m.name)}/README.md is missing.</p>'
    linker = Linker(
        m.card, root, site, model_pages[m.card.parent], site / "images" / m.slug / "card", model_pages
    )
    return render_markdown(m.card.read_text(), linker)


def build_site(
    out: Path,
    runs: Path | None = None,
    store: str | None = None,
    bench: Path | None = None,
    root: Path = ROOT,
    command: str = "python tools/site.py",
) -> dict:
    """Build the site into `out`; returns what was written (pages, pictures, models, runs, skipped)."""
    out = Path(out)
    check_out(out)
    run_list, skipped = find_runs(Path(runs)) if runs is not None else ([], [])
    bench_facts = read_bench(Path(bench)) if bench is not None else None
    versions = read_store(store)[1] if store else []
    names = registry.list_models()
    models = [
        model_facts(n, run_list, bench_facts, versions, Path(runs) if runs else None, root) for n in names
    ]

    out.parent.mkdir(parents=True, exist_ok=True)
    site = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        pages = write_pages(
            site, models, run_list, skipped, bench_facts, store, versions, runs, root, command
        )
        (site / MARKER).write_text(json.dumps({"command": command, "pages": len(pages)}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        site.rename(out)
    except BaseException:
        shutil.rmtree(site, ignore_errors=True)
        raise
    return {
        "out": str(out),
        "pages": [str(out / p.relative_to(site)) for p in pages],
        "pictures": sum(len(m.pictures) for m in models),
        "models": names,
        "runs": len(run_list),
        "skipped": skipped,
    }


def write_pages(site, models, run_list, skipped, bench, store, versions, runs, root, command) -> list[Path]:
    write_assets(site)
    generated = render.generated_line(command)
    has_store = store is not None
    model_pages = {root / "zoo" / m.name: site / "models" / f"{m.slug}.html" for m in models}
    pages = []

    def write(path: Path, html: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html)
        pages.append(path)

    for m in models:
        pictures = copy_pictures(m, site)
        heading = (
            f"<h1>{escape(m.name)}</h1><p class=subtitle>{escape(m.task)} on <code>{escape(m.dataset)}</code>; "
            f"primary metric {escape(m.metric)} ({'higher' if m.higher_is_better else 'lower'} is better)</p>"
        )
        body = render.model_body(m, card_html(m, site, root, model_pages), pictures, bench)
        write(
            model_pages[root / "zoo" / m.name],
            render.page(
                m.name, body, depth=1, active="", has_store=has_store, generated=generated, heading=heading
            ),
        )

    inputs = [
        f"runs: <code>{escape(shown(runs))}</code> ({len(run_list)} run(s) read, {len(skipped)} skipped)"
        if runs is not None
        else "runs: not given (pass <code>--runs runs</code>: the folder tools/train.py writes into)",
        "model cards: <code>zoo/*/*/README.md</code> (the parity tags of tools/crosscheck.py --update-card, the "
        "results tags of tools/summary.py --record)",
        f"throughput: <code>{escape(bench.file)}</code>"
        if bench
        else "throughput: not measured (pass <code>--bench FILE</code>, the output of "
        "<code>python tools/bench.py all --json</code>)",
        f"store: <code>{escape(store)}</code>"
        if has_store
        else "store: not given (pass <code>--store URL</code>)",
    ]
    write(
        site / "index.html",
        render.page(
            "Models",
            render.index_body(models, inputs, skipped),
            depth=0,
            active="models",
            has_store=has_store,
            generated=generated,
        ),
    )

    docs = root / "docs" / "PERFORMANCE.md"
    docs_html = ""
    if docs.is_file():
        linker = Linker(docs, root, site, site / "performance.html", site / "images" / "docs", model_pages)
        docs_html = render_markdown(docs.read_text(), linker)
    write(
        site / "performance.html",
        render.page(
            "Performance",
            render.performance_body(bench, models, docs_html),
            depth=0,
            active="performance",
            has_store=has_store,
            generated=generated,
        ),
    )
    if has_store:
        write(
            site / "store.html",
            render.page(
                "Store",
                render.store_body(store, versions, models),
                depth=0,
                active="store",
                has_store=True,
                generated=generated,
            ),
        )
    return pages
