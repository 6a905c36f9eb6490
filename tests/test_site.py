"""tools/site.py: the zoo's offline front page.

Fast: the facts come from the files the tools wrote (run folders, cards, bench JSON, a store), a missing file
reads "not measured" / "not recorded" and says what to run, and the built site is plain offline HTML.
Browser (slow): the site built from a smoke run of every model, opened headless in Debian's chromium through
selenium + chromedriver: no console error, every image loaded, every internal link resolves, the index lists
every model, sorting reorders the rows, the framework switch hides the other framework. Screenshots of the
index and model pages are saved for a person to look at.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared import checkpoint, hub
from shared.site import build_site
from shared.site.facts import find_runs, model_facts, read_bench
from tests.conftest import assert_one_line_error, run_tool
from zoo import registry

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync --disable-quic --hide-scrollbars"
).split()


# ---------------------------------------------------------------- fake runs, written as the tools write them


def png(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 90, 200)).save(path)
    return path


def fake_run(folder: Path, model: str, fw: str, test: dict, created: str, pictures=()) -> Path:
    """A run folder as tools/train.py leaves it: a real checkpoint (tiny weights), result.json, curves.png."""
    spec = registry.get(model)
    recipe = {"epochs": 7, "seed": 0}
    checkpoint.save(
        folder / "checkpoint",
        model_name=model,
        config={"epochs": 3},
        weights={"w": np.arange(250, dtype=np.float32)},
        meta={"framework": fw, "data": spec.dataset, "created": created, "recipe": recipe},
    )
    png(folder / "curves.png")
    for name in pictures:
        png(folder / name)
    result = {
        "model": model,
        "framework": fw,
        "data": spec.dataset,
        "test": test,
        "steps": 12,
        "train_seconds": 3.5,
        "epoch_seconds": [3.5],
        "checkpoint": str(folder / "checkpoint"),
        "curves": str(folder / "curves.png"),
        "pictures": [str(folder / p) for p in pictures],
        "tensorboard": str(folder / "tensorboard"),
        "run": str(folder),
    }
    (folder / "result.json").write_text(json.dumps(result))
    return folder


def parity_tag(model: str, passed: bool = True, error: float = 8.9e-07) -> str:
    summary = {
        "model": model,
        "data": "mnist-5k",
        "smoke": False,
        "steps": 60,
        "seeds": 2,
        "metric": "accuracy",
        "torch_mean": 0.974,
        "torch_std": 0.011,
        "keras_mean": 0.973,
        "keras_std": 0.004,
        "difference": -0.001,
        "tolerance": 0.017,
        "passed": passed,
        "tier1_max_error": error,
        "tier1_check": "forward",
        "tier1_passed": True,
        "created": "2026-11-27T02:51:56+00:00",
        "command": f"python tools/crosscheck.py zoo/{model} --train --update-card",
    }
    return f"<!-- parity-summary {json.dumps(summary, sort_keys=True)} -->"


@pytest.fixture
def checkout(tmp_path):
    """A checkout's cards: vision/cnn with a parity tag; its Results block written by tools/summary.py."""
    root = tmp_path / "checkout"
    card = root / "zoo" / "vision" / "cnn" / "README.md"
    card.parent.mkdir(parents=True)
    card.write_text(
        f"# vision/cnn\n\n## Parity\n\n<!-- parity-card:start -->\n{parity_tag('vision/cnn')}\n<!-- parity-card:end -->\n"
    )
    (root / "README.md").write_text("# Zoo\n")
    return root


# ---------------------------------------------------------------- facts (fast)


def test_every_figure_comes_from_its_file_with_the_command_that_wrote_it(tmp_path, checkout):
    runs = tmp_path / "runs"
    fake_run(runs / "old", "vision/cnn", "torch", {"accuracy": 0.5, "loss": 1.0}, "2026-01-01T00:00:00+00:00")
    new = fake_run(
        runs / "new", "vision/cnn", "torch", {"accuracy": 0.9123, "loss": 0.3}, "2026-02-01T00:00:00+00:00"
    )
    # The keras figure comes from the card: tools/summary.py --record writes it from a keras run.
    keras = fake_run(
        tmp_path / "elsewhere" / "cnn-keras", "vision/cnn", "keras", {"accuracy": 0.8765}, "2026-01-05"
    )
    recorded = run_tool("tools/summary.py", str(keras), "--record", "--root", str(checkout))
    assert recorded.returncode == 0, recorded.stderr[-2000:]
    bench = tmp_path / "bench.json"
    command = "python tools/bench.py all --json --threads 2"
    rows = [
        {
            "model": "vision/cnn",
            "framework": "torch",
            "batch_size": 32,
            "threads": 2,
            "examples_per_s": 1234.5,
        }
    ]
    bench.write_text(json.dumps({"machine": "x86_64", "command": command, "results": rows}))

    found, skipped = find_runs(runs)
    assert skipped == [] and len(found) == 2
    facts = model_facts("vision/cnn", found, read_bench(bench), runs_root=runs, root=checkout)

    torch = facts.metrics["torch"]
    assert torch.value == 0.9123 and torch.text == "0.9123"
    assert torch.source.file.endswith("new/result.json")
    assert torch.source.command.startswith("python tools/train.py zoo/vision/cnn --fw torch")
    assert f"--out {new}" in torch.source.command and "--epochs 7" in torch.source.command
    keras_figure = facts.metrics["keras"]
    assert keras_figure.value == 0.8765 and keras_figure.source.file.endswith("zoo/vision/cnn/README.md")
    assert keras_figure.source.command == f"python tools/summary.py {keras} --record"
    assert (facts.verdict.text, facts.tier1.value, facts.tier1.text) == ("PASS", 8.9e-07, "8.9e-07")
    assert facts.tier1.source.command == "python tools/crosscheck.py zoo/vision/cnn --train --update-card"
    assert facts.throughput["torch"].value == 1234.5 and facts.throughput["torch"].source.command == command
    assert facts.throughput["keras"].missing and facts.throughput["keras"].text == "not measured"
    manifest = new / "checkpoint" / "manifest.json"
    listed = sum(f["size"] for f in json.loads(manifest.read_text())["files"].values())
    assert facts.size.value == listed + manifest.stat().st_size
    assert facts.size.source.file.endswith("new/checkpoint/manifest.json")
    assert [p.path.name for p in facts.pictures] == ["curves.png"]
    assert facts.pictures[0].path.parent == new and facts.pictures[0].alt


def test_missing_files_read_not_measured_or_not_recorded_and_say_what_to_run(tmp_path):
    runs = tmp_path / "runs"
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "result.json").write_text("{not json")
    (runs / "alien").mkdir()
    (runs / "alien" / "result.json").write_text(
        json.dumps({"model": "vision/vit", "framework": "torch", "test": {}})
    )
    bare = runs / "bare"  # a result.json with no checkpoint, no curves, no metric
    bare.mkdir()
    (bare / "result.json").write_text(json.dumps({"model": "recsys/mf", "framework": "keras", "test": {}}))

    found, skipped = find_runs(runs)
    assert [r.folder for r in found] == [bare]
    assert any("broken/result.json" in s and "Expecting" in s for s in skipped), skipped
    assert any("alien/result.json" in s and "vision/vit" in s for s in skipped), skipped

    empty = tmp_path / "no-cards"
    facts = model_facts("recsys/mf", found, None, runs_root=runs, root=empty)
    assert facts.metrics["keras"].text == facts.metrics["torch"].text == "not recorded"
    assert "python tools/train.py zoo/recsys/mf --fw torch" in facts.metrics["torch"].hint
    assert facts.verdict.text == facts.tier1.text == "not run"
    assert "tools/crosscheck.py zoo/recsys/mf --train" in facts.verdict.hint
    assert {f.text for f in facts.throughput.values()} == {"not measured"}
    assert "tools/bench.py all --json" in facts.throughput["torch"].hint
    assert facts.size.missing and facts.size.text == "not recorded"
    assert facts.pictures == [] and facts.parity is None

    out = tmp_path / "site"
    built = build_site(out, runs=runs, root=empty)  # builds anyway: the page says what is missing
    index = (out / "index.html").read_text()
    assert "not measured" in index and "not recorded" in index and "broken/result.json" in index
    assert "No model card" in (out / "models" / "recsys-mf.html").read_text()
    assert len(built["skipped"]) == 2


def test_the_site_is_offline_html_with_every_model_picture_and_store_version(tmp_path, checkout):
    runs = tmp_path / "runs"
    cnn = fake_run(runs / "cnn", "vision/cnn", "torch", {"accuracy": 0.91}, "2026-02-01T00:00:00+00:00")
    fake_run(
        runs / "tr",
        "nlp/transformer",
        "keras",
        {"bleu": 12.5},
        "2026-02-01",
        pictures=["attention/attention_00.png"],
    )
    png(runs / "parity" / "vision-cnn" / "loss_overlay.png")
    report = {
        "model": "vision/cnn",
        "steps": 6,
        "created": "2026-02-02",
        "command": "python tools/crosscheck.py x",
    }
    (runs / "parity" / "vision-cnn" / "parity.json").write_text(json.dumps(report))
    transformer = checkout / "zoo" / "nlp" / "transformer"
    png(transformer / "figures" / "map.png")
    (transformer / "README.md").write_text(
        "# nlp/transformer\n\nSee [torch_impl.py](torch_impl.py), [seq2seq](../seq2seq/README.md), "
        "[the paper](https://arxiv.org/abs/1706.03762) and [DESIGN](../../../docs/DESIGN.md).\n\n"
        "![cross-attention](figures/map.png)\n![](figures/map.png)\n![gone](figures/missing.png)\n\n"
        "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
    )
    (checkout / "docs").mkdir()
    (checkout / "docs" / "PERFORMANCE.md").write_text(
        "# Performance\n\n| model | ex/s |\n| --- | --- |\n| cnn | 12 |\n\nSee [the CNN](../zoo/vision/cnn/README.md).\n"
    )
    store = tmp_path / "store"
    hub.push(cnn, str(store))

    out = tmp_path / "site"
    built = build_site(out, runs=runs, store=str(store), root=checkout, command="python tools/site.py test")
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    models = registry.list_models()
    assert pages == sorted(
        [
            "index.html",
            "performance.html",
            "store.html",
            *(f"models/{m.replace('/', '-')}.html" for m in models),
        ]
    )
    index = (out / "index.html").read_text()
    assert re.findall(r'<tr data-model="([^"]+)"', index) == models
    for page in out.rglob("*.html"):
        html = page.read_text()
        # no network: nothing is fetched from outside the site (links to papers may leave it)
        assert not re.search(r'<(script|link|img)[^>]*(src|href)="(https?:)?//', html), page
        for tag in re.findall(r"<img [^>]*>", html):
            alt = re.search(r'alt="([^"]*)"', tag)
            assert alt and alt.group(1).strip(), (page, tag)
            src = urllib.parse.unquote(re.search(r'src="([^"]+)"', tag).group(1))
            assert (page.parent / src).resolve().is_file(), (page, src)
        for href in re.findall(r'href="([^"#:]+)(?:#[^"]*)?"', html):
            assert (page.parent / urllib.parse.unquote(href)).resolve().exists(), (page, href)
    card = (out / "models" / "nlp-transformer.html").read_text()
    assert '<span class="repo-file" title="zoo/nlp/transformer/torch_impl.py' in card
    assert 'href="../models/nlp-seq2seq.html"' in card and 'href="https://arxiv.org/abs/1706.03762"' in card
    assert "docs/DESIGN.md in the repository" in card
    assert (
        'alt="cross-attention"' in card and 'alt="map"' in card and "figures/missing.png is missing" in card
    )
    assert "<table>" in card and "attention_00.png" in card
    cnn_page = (out / "models" / "vision-cnn.html").read_text()
    assert "loss_overlay.png" in cnn_page and "python tools/crosscheck.py x" in cnn_page
    store_page = (out / "store.html").read_text()
    entry = hub.list_store(str(store))["models"]["vision-cnn"]["versions"]["v1"]
    assert entry["manifest_sha256"] in store_page
    assert checkpoint.sha256_file(cnn / "checkpoint" / "weights.safetensors") in store_page
    assert f"python tools/hub.py pull {store}/vision-cnn@v1 checkpoints/vision-cnn-v1" in store_page
    performance = (out / "performance.html").read_text()
    assert "Throughput not measured" in performance and "tools/bench.py all --json" in performance
    assert "<td>cnn</td>" in performance and 'href="models/vision-cnn.html"' in performance
    assert built["pictures"] == 4  # two curves, one attention map, one parity overlay

    rebuilt = build_site(out, runs=runs, root=checkout)  # a site it wrote is replaced
    assert not (out / "store.html").exists() and rebuilt["out"] == str(out)


def test_user_errors_are_one_line(tmp_path):
    site = tmp_path / "site"
    assert_one_line_error(
        run_tool("tools/site.py", "--runs", str(tmp_path / "nope"), "--out", str(site)), "--runs"
    )
    bad = tmp_path / "bench.json"
    bad.write_text(json.dumps({"results": [{"model": "vision/cnn"}]}))
    assert_one_line_error(
        run_tool("tools/site.py", "--bench", str(bad), "--out", str(site)), "tools/bench.py"
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert_one_line_error(run_tool("tools/site.py", "--out", str(mine)), "did not write")
    assert (mine / "notes.txt").read_text() == "keep me" and sorted(os.listdir(mine)) == ["notes.txt"]
    assert_one_line_error(
        run_tool("tools/site.py", "--store", str(tmp_path / "no-store"), "--out", str(site))
    )
    assert not site.exists()


# ---------------------------------------------------------------- the browser test (slow)


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium and chromedriver, installed with apt-get when missing (CI runs as root on Debian)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.skip(
                "the browser test needs Debian's chromium and chromium-driver (/usr/bin/chromium, "
                "/usr/bin/chromedriver) and apt-get is not available to install them"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [apt, "install", "-y", "chromium", "chromium-driver"]
        proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:  # a fresh container has no package lists yet
            subprocess.run([apt, "update"], env=env, capture_output=True, text=True, timeout=600)
            proc = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (
            f"apt-get install chromium chromium-driver failed:\n{proc.stderr[-3000:]}"
        )
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def smoke_site(tmp_path_factory, frameworks):
    """Smoke runs of every model (torch; keras too for vision/cnn), DanQ's logos and mutagenesis maps, a short
    parity report, a torch throughput file and a store, built into a site."""
    from shared.parity import engine, report
    from shared.train.run import train
    from zoo.bio.danq.interpret import interpret

    tmp = tmp_path_factory.mktemp("site")
    runs = tmp / "runs"
    for name in registry.list_models():
        spec = registry.get(name)
        data_kwargs = dict(spec.smoke_data)
        data = data_kwargs.pop("dataset", spec.dataset)
        for fw in ("torch", "keras") if name == "vision/cnn" else ("torch",):
            out = runs / f"{name.replace('/', '-')}-{fw}"
            train(spec, spec.config(**spec.smoke_config), fw, data=data, data_kwargs=data_kwargs, out=out,
                  threads=2, progress=False)  # fmt: skip
    interpret(str(runs / "bio-danq-torch"), "torch", top=4, examples=1, threads=2)
    cnn = registry.get("vision/cnn")
    result = engine.run_parity(cnn, cnn.config(**cnn.smoke_config), steps=4, seeds=1, smoke=True, early_steps=2,
                               command="python tools/crosscheck.py zoo/vision/cnn --train --smoke --steps 4")  # fmt: skip
    report.write_report(result, runs / "parity" / "vision-cnn")
    bench = run_tool("tools/bench.py", "all", "--fw", "torch", "--smoke", "--steps", "1", "--repeats", "2",
                     "--warmup", "0", "--json")  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-2000:]
    (tmp / "bench.json").write_text(bench.stdout.strip().splitlines()[-1])
    store = tmp / "store"
    for fw in ("torch", "keras"):
        hub.push(runs / f"vision-cnn-{fw}", str(store))
    site = tmp / "site"
    built = run_tool("tools/site.py", "--runs", str(runs), "--bench", str(tmp / "bench.json"), "--store",
                     str(store), "--out", str(site))  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return tmp, runs, site


@pytest.fixture(scope="module")
def served(smoke_site):
    """The site over HTTP on 127.0.0.1 (a free port), as a person would open it from a local server."""
    _, _, site = smoke_site

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = str(binary)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="zoo-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(driver_path)))
    driver.set_window_size(1366, 900)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def screenshot(driver, url: str, width: int, paths: list[Path]) -> None:
    """A full-page screenshot at `width` CSS pixels, saved to every path."""
    driver.set_window_size(width, 900)
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 120, 12000))
    time.sleep(0.2)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(path))
    driver.set_window_size(1366, 900)


def row_order(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#models tbody tr')].map(r => r.dataset.model)"
    )


def column_keys(driver, table: str, column: int) -> list[str]:
    return driver.execute_script(
        f"return [...document.querySelectorAll('{table} tbody tr')].map(r => r.cells[{column}].dataset.sort)"
    )


@pytest.mark.slow
def test_the_site_in_a_real_browser(smoke_site, served, browser):
    from selenium.webdriver.common.by import By

    tmp, runs, site = smoke_site
    driver = browser
    pages = {served + p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    visited, queue, anchors, files = set(), [served + "index.html"], [], set()
    while queue:  # every page, reached by following the site's own links from the index
        url = queue.pop()
        if url in visited:
            continue
        visited.add(url)
        driver.get(url)
        assert driver.execute_script("return document.readyState") == "complete"
        assert console_errors(driver) == [], url
        images = driver.execute_script(
            "return [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.alt])"
        )
        for src, complete, width, alt in images:
            assert complete and width > 0, (url, src)
            assert alt.strip(), (url, src)
        for href in driver.execute_script(
            "return [...document.querySelectorAll('a[href]')].map(a => a.href)"
        ):
            if not href.startswith(served):
                continue
            target, _, fragment = href.partition("#")
            if fragment:
                anchors.append((target, fragment, url))
            if target.endswith(".html"):
                queue.append(target)
            else:
                files.add(target)
    assert visited == pages, sorted(pages ^ visited)
    for target, fragment, origin in anchors:  # every in-page link names an element of its page
        driver.get(target)
        assert driver.execute_script("return document.getElementById(arguments[0]) !== null", fragment), (
            origin,
            f"{target}#{fragment}",
        )
    for target in files:  # links to pictures and other files of the site
        with urllib.request.urlopen(target, timeout=10) as response:
            assert response.status == 200, target

    driver.get(served + "index.html")
    assert row_order(driver) == registry.list_models()
    # Sorting: the model column (already ascending) reverses on its second click; the torch metric
    # column sorts numerically, missing values last.
    model_header = driver.find_element(By.CSS_SELECTOR, "#models thead th:nth-child(1)")
    model_header.click()
    model_header.click()
    assert model_header.get_attribute("aria-sort") == "descending"
    assert row_order(driver) == sorted(registry.list_models(), reverse=True)
    before = row_order(driver)
    torch_header = driver.find_element(By.XPATH, "//table[@id='models']//th[normalize-space()='torch']")
    torch_header.click()
    after = row_order(driver)
    assert after != before and sorted(after) == sorted(before)
    column = driver.execute_script(
        "return [...arguments[0].parentNode.children].indexOf(arguments[0])", torch_header
    )
    keys = [float(k) for k in column_keys(driver, "#models", column) if k]
    assert keys == sorted(keys) and len(keys) == len(registry.list_models())
    torch_header.click()
    keys = [float(k) for k in column_keys(driver, "#models", column) if k]
    assert keys == sorted(keys, reverse=True)

    # The framework switch hides the other framework's columns here, and its runs on a model page.
    def shown(selector: str) -> list[bool]:
        return [e.is_displayed() for e in driver.find_elements(By.CSS_SELECTOR, selector)]

    driver.find_element(By.CSS_SELECTOR, "input[name=fw][value=torch]").click()
    assert shown("#models th.fw-torch") == [True, True] and shown("#models th.fw-keras") == [False, False]
    assert not any(shown("#models td.fw-keras"))
    driver.get(served + "models/vision-cnn.html")  # the choice carries over to the next page
    assert shown("table.runs tr.fw-torch") == [True] and shown("table.runs tr.fw-keras") == [False]
    driver.find_element(By.CSS_SELECTOR, "input[name=fw][value=keras]").click()
    assert shown("table.runs tr.fw-torch") == [False] and shown("table.runs tr.fw-keras") == [True]
    driver.find_element(By.CSS_SELECTOR, "input[name=fw][value=both]").click()
    assert all(shown("table.runs tbody tr")) and len(shown("table.runs tbody tr")) == 2
    assert console_errors(driver) == []

    shots = []
    for name, page, width in (
        ("index", "index.html", 1366),
        ("index-phone", "index.html", 390),
        ("model-vision-cnn", "models/vision-cnn.html", 1366),
        ("model-bio-danq", "models/bio-danq.html", 1366),
        ("model-nlp-transformer-phone", "models/nlp-transformer.html", 390),
    ):
        paths = [runs / "site-screenshots" / f"{name}.png", tmp / "site-screenshots" / f"{name}.png"]
        screenshot(driver, served + page, width, paths)
        shots += paths
    for path in shots:
        with Image.open(path) as image:
            assert image.width >= 390 and image.height >= 600, path
    print(f"\nscreenshots: {tmp / 'site-screenshots'} and {runs / 'site-screenshots'}")
