"""Generated blocks inside hand-written Markdown: a tool owns what lies between its two markers."""

from __future__ import annotations

import json

# The hidden JSON line `tools/summary.py --record` writes into a card's Results block (the site reads it).
RESULTS_SUMMARY = "results-summary"


def replace_block(text: str, start: str, end: str, block: str, heading: str) -> str:
    """Replace what lies between the start and end markers; without them, append heading + markers."""
    i, j = text.find(start), text.find(end)
    if 0 <= i < j:
        return text[:i] + f"{start}\n{block}\n{end}" + text[j + len(end) :]
    return (text.rstrip("\n") + "\n\n" if text.strip() else "") + f"{heading}\n\n{start}\n{block}\n{end}\n"


def read_json_comment(text: str, tag: str) -> dict | None:
    """The JSON of the first `<!-- <tag> {...} -->` comment in `text` (a tool's hidden summary), or None."""
    start = f"<!-- {tag} "
    i = text.find(start)
    if i < 0:
        return None
    return json.loads(text[i + len(start) : text.index(" -->", i)])
