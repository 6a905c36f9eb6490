"""The site's HTML: the index, one page per model, the performance page and the store page.

Every number is written with its source: a `title` on the cell ("from FILE, written by `COMMAND`") and a
numbered note under its table listing the file and the command; a missing figure says what to run.
Columns and rows that belong to one framework carry `fw-torch` / `fw-keras`, which the framework filter
(assets/site.js) hides; tables with class `sortable` sort when a header is clicked.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from shared.frameworks import FRAMEWORKS
from shared.site.facts import Bench, Figure, ModelFacts, Source, StoreVersion, metric_text, size_text

SITE_TITLE = "Zoo"


def e(text) -> str:
    return escape(str(text), quote=True)


class Notes:
    """The numbered notes of one table: one per command (with every file it wrote that the table reads)
    and one per missing figure's hint, each referred to by its number."""

    def __init__(self, key: str):
        self.key = key
        self.items: dict[tuple, tuple[int, list[str]]] = {}  # (kind, text...) -> (number, files)

    def _ref(self, key: tuple, file: str | None) -> str:
        number, files = self.items.setdefault(key, (len(self.items) + 1, []))
        if file and file not in files:
            files.append(file)
        return (
            f'<sup class="ref"><a href="#{self.key}-{number}" aria-label="note {number}">{number}</a></sup>'
        )

    def source(self, source: Source) -> str:
        return self._ref(("source", source.command), source.file)

    def hint(self, missing: str, command: str) -> str:
        return self._ref(("hint", missing, command), None)

    def html(self, heading: str = "Sources") -> str:
        if not self.items:
            return ""
        rows = []
        for key, (number, files) in self.items.items():
            if key[0] == "source":
                named = ", ".join(f"<code>{e(f)}</code>" for f in files)
                text = f"From {named}; written by <code>{e(key[1])}</code>."
            else:
                text = f"{e(key[1].capitalize())}: run <code>{e(key[2])}</code>."
            rows.append(f'<li id="{self.key}-{number}">{text}</li>')
        return f'<div class="sources"><p class="sources-title">{heading}</p><ol>{"".join(rows)}</ol></div>'


def figure_cell(figure: Figure, notes: Notes, cls: str = "", label: str = "") -> str:
    """A table cell for a figure: value, title and note; missing figures say what to run."""
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' data-label="{e(label)}"' if label else ""
    if figure.missing:
        hint = f"{figure.text}: {figure.hint}" if figure.hint else figure.text
        note = notes.hint(figure.text, figure.hint) if figure.hint else ""
        return f'<td{attrs} data-sort="" title="{e(hint)}"><span class="v missing">{e(figure.text)}{note}</span></td>'
    value = "" if figure.value is None else repr(float(figure.value))
    title = f"{figure.text}, {figure.source.text()}" if figure.source else figure.text
    note = notes.source(figure.source) if figure.source else ""
    return f'<td{attrs} data-sort="{value}" title="{e(title)}"><span class="v">{e(figure.text)}{note}</span></td>'


def text_cell(
    text: str, cls: str = "", sort: str | None = None, label: str = "", html: str | None = None
) -> str:
    attrs = f' class="{cls}"' if cls else ""
    attrs += f' data-sort="{e(sort)}"' if sort is not None else ""
    attrs += f' data-label="{e(label)}"' if label else ""
    return f'<td{attrs}><span class="v">{html if html is not None else e(text)}</span></td>'


def header(cells: list[tuple[str, str]]) -> str:
    """<thead> from (label, class) pairs; every header is a button-like sort control."""
    ths = "".join(
        f'<th scope="col"{f" class={chr(34)}{c}{chr(34)}" if c else ""}>{e(t)}</th>' for t, c in cells
    )
    return f"<thead><tr>{ths}</tr></thead>"


def page(
    title: str, body: str, *, depth: int, active: str, has_store: bool, generated: str, heading: str = ""
) -> str:
    up = "../" * depth
    links = [("index.html", "models", "Models"), ("performance.html", "performance", "Performance")]
    links += [("store.html", "store", "Store")] if has_store else []
    nav = "".join(
        f'<a href="{up}{href}"{" aria-current=" + chr(34) + "page" + chr(34) if key == active else ""}>{label}</a>'
        for href, key, label in links
    )
    choices = "".join(
        f'<label><input type="radio" name="fw" value="{v}"{" checked" if v == "both" else ""}> {v}</label>'
        for v in ("both", *FRAMEWORKS)
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · {SITE_TITLE}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{up}assets/site.css">
<script src="{up}assets/site.js" defer></script>
</head>
<body data-fw="both">
<header class="top">
<a class="brand" href="{up}index.html">{SITE_TITLE}</a>
<nav>{nav}</nav>
<fieldset class="fw-filter" data-fw-filter><legend>framework</legend>{choices}</fieldset>
</header>
<main>
{heading or f"<h1>{e(title)}</h1>"}
{body}
</main>
<footer>{generated}</footer>
</body>
</html>
"""


def generated_line(command: str) -> str:
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return (
        f"Generated by <code>{e(command)}</code> on {when} from the files named under each table. "
        "Plain HTML, CSS and JavaScript: no network."
    )


# ---------------------------------------------------------------- the index


def index_body(models: list[ModelFacts], inputs: list[str], skipped: list[str]) -> str:
    notes = Notes("src")
    cols = [
        ("model", ""),
        ("task", ""),
        ("data", ""),
        ("metric", ""),
        ("torch", "fw-torch num"),
        ("keras", "fw-keras num"),
        ("parity", ""),
        ("tier-1 error", "num"),
        ("torch ex/s", "fw-torch num"),
        ("keras ex/s", "fw-keras num"),
        ("checkpoint", "num"),
    ]
    rows = []
    for m in models:
        page = f"models/{m.slug}.html"
        better = ("higher", "\u2191") if m.higher_is_better else ("lower", "\u2193")
        verdict_cls = {"PASS": "pass", "FAIL": "fail"}.get(m.verdict.text, "")
        links = []
        if m.pictures:
            count = len(m.pictures)
            links.append(f'<a href="{page}#run-pictures">{count} picture{"s" if count > 1 else ""}</a>')
        if m.parity:
            links.append(f'<a href="{page}#figures-summary">parity</a>')
        if m.store:
            links.append(f'<a href="store.html#store-{e(m.store[0].name)}">store</a>')
        model_html = f'<a href="{page}">{e(m.name)}</a><span class="sub">{" · ".join(links)}</span>'
        metric_html = f'<span title="{better[0]} is better">{e(m.metric)} {better[1]}</span>'
        cells = [
            text_cell(m.name, "model", sort=m.name, html=model_html),
            text_cell(m.task, "nowrap", label="task"),
            text_cell(m.dataset, "nowrap", label="data"),
            text_cell(m.metric, "nowrap", label="metric", html=metric_html),
            *(figure_cell(m.metrics[fw], notes, f"fw-{fw} num", f"{fw} {m.metric}") for fw in FRAMEWORKS),
            figure_cell(m.verdict, notes, f"verdict {verdict_cls}".strip(), "parity"),
            figure_cell(m.tier1, notes, "num", "tier-1 max error"),
            *(figure_cell(m.throughput[fw], notes, f"fw-{fw} num", f"{fw} examples/s") for fw in FRAMEWORKS),
            figure_cell(m.size, notes, "num", "checkpoint size"),
        ]
        rows.append(f'<tr data-model="{e(m.name)}">{"".join(cells)}</tr>')
    table = (
        f'<div class="table-wrap"><table id="models" class="sortable models stack">{header(cols)}'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    intro = (
        f"<p class=lead>{len(models)} models, each written twice (PyTorch and Keras 3) and proven to be the same "
        "model. The metric columns hold each framework's primary test metric; parity is the trained "
        "cross-framework check of the model card; throughput is training examples per second of the plain "
        "loop. Click a column header to sort; the framework switch above hides the other framework's "
        "columns.</p>"
    )
    read = "".join(f"<li>{item}</li>" for item in inputs)
    skipped_html = (
        '<div class="skipped"><p class="sources-title">Skipped (not read)</p><ul>'
        + "".join(f"<li><code>{e(s)}</code></li>" for s in skipped)
        + "</ul></div>"
        if skipped
        else ""
    )
    return f'{intro}{table}{notes.html()}<div class="inputs"><p class="sources-title">Read</p><ul>{read}</ul></div>{skipped_html}'


# ---------------------------------------------------------------- a model page


def model_body(m: ModelFacts, card_html: str, picture_src: dict, bench: Bench | None) -> str:
    notes = Notes("note")
    rows = []
    for label, getter in (
        (f"{m.metric} (test)", lambda fw: m.metrics[fw]),
        ("training examples/s", lambda fw: m.throughput[fw]),
    ):
        cells = "".join(figure_cell(getter(fw), notes, f"fw-{fw}", fw) for fw in FRAMEWORKS)
        rows.append(f'<tr><th scope="row">{e(label)}</th>{cells}</tr>')
    verdict_cls = {"PASS": "verdict pass", "FAIL": "verdict fail"}.get(m.verdict.text, "")
    both = [
        ("trained parity (both twins)", m.verdict, verdict_cls),
        ("tier-1 max error", m.tier1, ""),
        ("checkpoint size", m.size, ""),
    ]
    for label, figure, cls in both:
        cell = figure_cell(figure, notes, cls).replace("<td", '<td colspan="2"', 1)
        rows.append(f'<tr><th scope="row">{e(label)}</th>{cell}</tr>')
    facts = (
        '<section id="figures-summary"><h2>At a glance</h2><div class="table-wrap fit"><table class="facts">'
        f'<thead><tr><th scope="col"></th><th scope="col" class="fw-torch">torch</th>'
        f'<th scope="col" class="fw-keras">keras</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )
    if m.parity:
        p = m.parity
        facts += (
            f'<p class="detail">Parity: {p["steps"]} steps × {p["seeds"]} seeds on <code>{e(p["data"])}</code>'
            f"{' (smoke)' if p.get('smoke') else ''}; {e(p['metric'])} torch {p['torch_mean']:.4f} ± "
            f"{p['torch_std']:.4f}, keras {p['keras_mean']:.4f} ± {p['keras_std']:.4f} (difference "
            f"{p['difference']:+.4f}, tolerance {p['tolerance']:.4f}); {e(str(p['created'])[:10])}."
            f"{notes.source(m.verdict.source)}</p>"
        )
    facts += notes.html() + "</section>"

    return (
        facts
        + runs_section(m)
        + pictures_section(m, picture_src)
        + store_section(m)
        + (
            f'<section id="model-card"><h2>Model card</h2><p class="detail">Rendered from '
            f"<code>zoo/{e(m.name)}/README.md</code>; links to files of the repository appear as plain text.</p>"
            f'<article class="card">{card_html}</article></section>'
        )
    )


def runs_section(m: ModelFacts) -> str:
    if not m.runs:
        return (
            '<section id="runs-found"><h2>Runs</h2><p class="missing">No run of this model was read: train one '
            f"with <code>python tools/train.py zoo/{e(m.name)} --fw torch</code> and pass "
            "<code>--runs runs</code>.</p></section>"
        )
    notes = Notes("run")
    cols = [
        ("framework", ""),
        ("run folder", ""),
        ("data", ""),
        ("steps", "num"),
        ("train s", "num"),
        (m.metric, "num"),
        ("other test metrics", ""),
        ("created", ""),
    ]
    rows = []
    for run in m.runs:
        r = run.result
        note = notes.source(run.source)
        other = ", ".join(
            f"{k} {metric_text(v)}"
            for k, v in r["test"].items()
            if k not in ("loss", m.metric) and isinstance(v, int | float)
        )
        value = r["test"].get(m.metric)
        cells = [
            text_cell(run.framework, label="framework"),
            text_cell(
                "",
                label="run folder",
                html=f"<code>{e(run.source.file.removesuffix('/result.json'))}</code>{note}",
            ),
            text_cell(r.get("data", ""), label="data"),
            text_cell(str(r.get("steps", "")), "num", sort=str(r.get("steps", "")), label="steps"),
            text_cell(
                f"{r['train_seconds']:.1f}"
                if isinstance(r.get("train_seconds"), int | float)
                else "not recorded",
                "num",
                sort=str(r.get("train_seconds", "")),
                label="train s",
            ),
            text_cell(
                metric_text(value) if isinstance(value, int | float) else "not recorded",
                "num",
                sort=repr(value) if isinstance(value, int | float) else "",
                label=m.metric,
            ),
            text_cell(other, label="other test metrics"),
            text_cell(run.created[:19].replace("T", " "), sort=run.created, label="created"),
        ]
        rows.append(f'<tr class="fw-{run.framework}">{"".join(cells)}</tr>')
    return (
        f'<section id="runs-found"><h2>Runs</h2><div class="table-wrap"><table class="sortable runs stack">{header(cols)}'
        f"<tbody>{''.join(rows)}</tbody></table></div>{notes.html()}</section>"
    )


def pictures_section(m: ModelFacts, picture_src: dict) -> str:
    runs = [p for p in m.pictures if p.group in FRAMEWORKS]
    parity = [p for p in m.pictures if p.group not in FRAMEWORKS]
    if not m.pictures:
        return (
            '<section id="run-pictures"><h2>Pictures</h2><p class="missing">No run pictures were read '
            "(each run writes curves.png; pass <code>--runs</code>).</p></section>"
        )
    notes = Notes("pic")

    def gallery(pictures) -> str:
        figures = []
        for p in pictures:
            badge = f'<span class="badge {e(p.group)}">{e(p.group)}</span> ' if p.group in FRAMEWORKS else ""
            cls = f' class="fw-{e(p.group)}"' if p.group in FRAMEWORKS else ""
            figures.append(
                f'<figure{cls}><img src="{e(picture_src[p.path])}" alt="{e(p.alt)}">'
                f"<figcaption>{badge}{e(p.caption)}{notes.source(p.source)}</figcaption></figure>"
            )
        return f'<div class="gallery">{"".join(figures)}</div>'

    parts = [gallery(runs)] if runs else []
    if parity:
        parts.append(
            f'<div id="parity-plots"><h3>Trained parity: the torch and keras twins</h3>{gallery(parity)}</div>'
        )
    return f'<section id="run-pictures"><h2>Pictures</h2>{"".join(parts)}{notes.html()}</section>'


def store_section(m: ModelFacts) -> str:
    if not m.store:
        return ""
    items = "".join(
        f'<li><a href="../store.html#store-{e(v.name)}-{e(v.version)}">{e(v.name)}@{e(v.version)}</a> '
        f"(trained in {e(v.entry.get('framework', '?'))})</li>"
        for v in m.store
    )
    return f'<section id="store-versions"><h2>In the store</h2><ul>{items}</ul></section>'


# ---------------------------------------------------------------- performance


def performance_body(bench: Bench | None, models: list[ModelFacts], docs_html: str) -> str:
    if bench is None:
        body = (
            '<p class="missing">Throughput not measured: run <code>python tools/bench.py all --json &gt; '
            "bench.json</code>, then <code>python tools/site.py --bench bench.json</code>.</p>"
        )
    else:
        notes = Notes("perf")
        note = notes.source(bench.source)
        cols = [
            ("model", ""),
            ("framework", ""),
            ("batch size", "num"),
            ("threads", "num"),
            ("examples/s", "num"),
            ("slowest–fastest block", "num"),
            ("final loss", "num"),
        ]
        rows = []
        for r in bench.rows:
            spread = r.get("spread") or []
            cells = [
                text_cell(
                    r["model"],
                    label="model",
                    html=f'<a href="models/{e(r["model"].replace("/", "-"))}.html">{e(r["model"])}</a>',
                )
                if any(m.name == r["model"] for m in models)
                else text_cell(r["model"], label="model"),
                text_cell(r["framework"], label="framework"),
                text_cell(
                    str(r.get("batch_size", "")), "num", sort=str(r.get("batch_size", "")), label="batch size"
                ),
                text_cell(str(r.get("threads", "")), "num", sort=str(r.get("threads", "")), label="threads"),
                text_cell(
                    "",
                    "num",
                    sort=repr(float(r["examples_per_s"])),
                    label="examples/s",
                    html=f'<span title="{e(bench.source.text())}">{float(r["examples_per_s"]):,.1f}</span>{note}',
                ),
                text_cell(
                    f"{spread[0]:,.1f}–{spread[1]:,.1f}" if len(spread) == 2 else "not recorded",
                    "num",
                    sort=repr(float(spread[0])) if len(spread) == 2 else "",
                    label="spread",
                ),
                text_cell(
                    f"{r['last_loss']:.4f}"
                    if isinstance(r.get("last_loss"), int | float)
                    else "not recorded",
                    "num",
                    sort=repr(r.get("last_loss", "")),
                    label="final loss",
                ),
            ]
            rows.append(f'<tr class="fw-{e(r["framework"])}">{"".join(cells)}</tr>')
        machine = f" on <code>{e(bench.machine)}</code>" if bench.machine else ""
        body = (
            f"<p>Training throughput of the plain loop (forward, loss, backward, optimizer step on one batch in "
            f"memory), median of the timed blocks{machine}.</p>"
            f'<div class="table-wrap"><table id="bench" class="sortable stack">{header(cols)}<tbody>{"".join(rows)}</tbody>'
            f"</table></div>{notes.html()}"
        )
    if docs_html:
        body += (
            '<section id="performance-notes"><h2>Notes (docs/PERFORMANCE.md)</h2>'
            f'<article class="card">{docs_html}</article></section>'
        )
    return body


# ---------------------------------------------------------------- the store


def store_body(url: str, versions: list[StoreVersion], models: list[ModelFacts]) -> str:
    notes = Notes("store")
    note = notes.source(Source(f"{url.rstrip('/')}/index.json", "python tools/hub.py push RUN " + url))
    pages = {m.name: m.slug for m in models}
    cols = [
        ("version", ""),
        ("model", ""),
        ("trained in", ""),
        ("data", ""),
        ("test metrics", ""),
        ("size", "num"),
        ("pushed", ""),
        ("sha256", ""),
        ("pull", ""),
    ]
    rows = []
    for v in versions:
        entry = v.entry
        model = entry.get("model", "")
        metrics = ", ".join(
            f"{k} {metric_text(x)}"
            for k, x in (entry.get("metrics") or {}).items()
            if k != "loss" and isinstance(x, int | float)
        )
        sha = (
            '<span class="hash" title="sha256 of manifest.json, as index.json recorded it">manifest.json '
            f"{e(entry.get('manifest_sha256', ''))}</span>"
        )
        if v.weights_sha256:
            sha += (
                '<span class="hash" title="sha256 of weights.safetensors, from the manifest">'
                f"weights.safetensors {e(v.weights_sha256)}</span>"
            )
        size = entry.get("size")
        model_html = f'<a href="models/{pages[model]}.html">{e(model)}</a>' if model in pages else e(model)
        pushed = str(entry.get("pushed", ""))
        cells = [
            text_cell(f"{v.name}@{v.version}", "nowrap", label="version"),
            text_cell(model, "nowrap", label="model", html=model_html),
            text_cell(entry.get("framework", ""), label="trained in"),
            text_cell(entry.get("data", ""), label="data"),
            text_cell(metrics or "not recorded", label="test metrics"),
            text_cell(
                size_text(size) if isinstance(size, int) else "not recorded",
                "num",
                sort=str(size or ""),
                label="size",
            ),
            text_cell(
                pushed[:10],
                "nowrap",
                sort=pushed,
                label="pushed",
                html=f'<span title="{e(pushed)}">{e(pushed[:10])}</span>',
            ),
            text_cell("", "hashes", label="sha256", html=sha + note),
            text_cell("", "pull", label="pull", html=f"<code>{e(v.pull_command(url))}</code>"),
        ]
        fw = entry.get("framework")
        cls = f' class="fw-{e(fw)}"' if fw in FRAMEWORKS else ""
        rows.append(f'<tr id="store-{e(v.name)}-{e(v.version)}"{cls}>{"".join(cells)}</tr>')
    anchors = "".join(f'<span id="store-{e(name)}"></span>' for name in sorted({v.name for v in versions}))
    if not rows:
        return f'<p class="missing">The store at <code>{e(url)}</code> lists no versions yet (tools/hub.py push).</p>'
    return (
        f"<p>Every version listed in <code>{e(url)}</code>'s index.json. A pull checks each file's sha256 "
        f"against the manifest and the manifest's against the index.</p>{anchors}"
        f'<div class="table-wrap"><table id="store" class="sortable store stack">{header(cols)}'
        f"<tbody>{''.join(rows)}</tbody></table></div>{notes.html()}"
    )
