"""A Markdown file of the repository (a model card, docs/PERFORMANCE.md) as HTML for the site.

Python-Markdown with tables, fenced code and heading ids, plus one tree pass over the links and images:
- an image the card shows (`![...](figures/x.png)`) is copied into the site and keeps (or gets) alt text;
- a link to another model's card or folder goes to that model's page;
- a link to an image file is copied along; a link to any other file of the repository (the twins, shared/,
  tests/, docs) becomes plain text naming the file, since the site holds no copy of it;
- links leaving the repository and links inside the page stay as they are.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as etree
from pathlib import Path

import markdown
from markdown.extensions import Extension
from markdown.extensions.toc import TocExtension
from markdown.treeprocessors import Treeprocessor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}


class Linker:
    """Resolves a card's relative links and images against the repository and the site being written."""

    def __init__(self, source: Path, root: Path, out: Path, page: Path, images: Path, model_pages: dict):
        self.source, self.root, self.out, self.page, self.images = source, root, out, page, images
        self.model_pages = model_pages  # model folder (absolute) -> its page (absolute, inside out)
        self.copied: list[Path] = []

    def href(self, target: Path) -> str:
        """`target` (inside the site) as a link relative to the page being written."""
        depth = len(self.page.parent.relative_to(self.out).parts)
        return "../" * depth + target.relative_to(self.out).as_posix()

    def repo_name(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def copy_image(self, path: Path) -> str:
        try:
            name = path.relative_to(self.source.parent)
        except ValueError:
            name = Path("repository") / self.repo_name(path)
        dest = self.images / name
        if dest not in self.copied:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            self.copied.append(dest)
        return self.href(dest)

    def resolve(self, link: str) -> Path | None:
        """The repository file a relative link names, or None for an absolute URL or an in-page anchor."""
        if not link or link.startswith(("#", "/")) or ":" in link.split("/")[0]:
            return None
        return (self.source.parent / link.split("#")[0].split("?")[0]).resolve()

    def model_page(self, target: Path) -> Path | None:
        folder = target.parent if target.name == "README.md" else target
        return self.model_pages.get(folder)


class LinkPass(Treeprocessor):
    def __init__(self, md, linker: Linker):
        super().__init__(md)
        self.linker = linker

    def run(self, root: etree.Element) -> None:
        for element in list(root.iter()):
            if element.tag == "img":
                self.image(element)
            elif element.tag == "a":
                self.link(element)

    def image(self, img: etree.Element) -> None:
        src = img.get("src", "")
        target = self.linker.resolve(src)
        if not img.get("alt"):
            img.set("alt", Path(src).stem.replace("_", " ") or "figure")
        if target is None:
            return
        if target.is_file() and target.suffix.lower() in IMAGE_SUFFIXES:
            img.set("src", self.linker.copy_image(target))
            return
        # A picture the card names but the repository lacks: say so instead of showing a broken image.
        img.tag, img.text = "span", f"[picture {self.linker.repo_name(target)} is missing: {img.get('alt')}]"
        for key in list(img.attrib):
            del img.attrib[key]
        img.set("class", "missing")

    def link(self, a: etree.Element) -> None:
        href = a.get("href", "")
        target = self.linker.resolve(href)
        if target is None:
            if not href.startswith("#"):
                a.set("rel", "noopener")
                a.set("class", "external")
            return
        fragment = "#" + href.split("#", 1)[1] if "#" in href else ""
        page = self.linker.model_page(target)
        if page is not None:
            a.set("href", self.linker.href(page) + fragment)
            return
        if target.is_file() and target.suffix.lower() in IMAGE_SUFFIXES:
            a.set("href", self.linker.copy_image(target))
            return
        # Any other file of the repository: plain text naming it (the site holds no copy).
        a.tag = "span"
        del a.attrib["href"]
        a.set("class", "repo-file")
        a.set("title", f"{self.linker.repo_name(target)} in the repository (not part of this site)")


class LinkExtension(Extension):
    def __init__(self, linker: Linker):
        super().__init__()
        self.linker = linker

    def extendMarkdown(self, md):  # noqa: N802 (Python-Markdown's name)
        md.treeprocessors.register(LinkPass(md, self.linker), "zoo-site-links", 5)


def render_markdown(text: str, linker: Linker, baselevel: int = 3) -> str:
    """`text` as HTML; headings start at <h{baselevel}> (under the page's <h1> and its section's <h2>)."""
    md = markdown.Markdown(
        extensions=[
            "tables",
            "fenced_code",
            "sane_lists",
            TocExtension(baselevel=baselevel),
            LinkExtension(linker),
        ],
        output_format="html",
    )
    return md.convert(text)
