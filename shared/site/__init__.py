"""The zoo's front page: a static, offline site of every model, its results, parity, speed and pictures.

    from shared.site import build_site
    build_site(Path("site"), runs=Path("runs"), bench=Path("bench.json"), store="file:///shared/zoo")

One job per module:

    facts.py    the figures, read from the files the tools wrote (result.json, checkpoint manifests, the
                cards' results and parity tags, tools/bench.py --json output, a store's index.json), each
                with the file it came from and the command that wrote it
    cards.py    a Markdown file of the repository (a model card) as HTML, its images copied into the site
    render.py   the pages: index, one per model, performance, store
    assets.py   the stylesheet and the script (static/), copied as they are
    build.py    all of it written into a folder, replacing only a site this module wrote

Framework-free and offline: plain HTML, CSS and JavaScript, no network, no CDN.
"""

from shared.site.build import build_site

__all__ = ["build_site"]
