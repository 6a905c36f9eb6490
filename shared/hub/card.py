"""Model card text: the YAML front matter of a checkpoint's README.md, and the store's own README.md.

The store card is Hugging Face front matter (library, license, tags, datasets, metrics gathered from
every version's card) and, per model, a table of results per framework, generated from the index.
"""

from __future__ import annotations

from typing import Any

from shared.errors import UserError
from shared.hub.errors import one_line


def front_matter(text: str, where: str) -> dict:
    """The YAML front matter of a model card ({} when it has none); malformed YAML is refused."""
    import yaml

    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    try:
        if end < 0:
            raise ValueError("no closing '---' line")
        data = yaml.safe_load(text[4:end]) or {}
        if not isinstance(data, dict):
            raise ValueError("front matter is not a mapping")
    except (ValueError, yaml.YAMLError) as err:
        raise UserError(
            f"{where} has malformed YAML front matter ({one_line(err)}); the Hub would not "
            "render it: fix the card and re-save the checkpoint"
        ) from None
    return data


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value] if value else [])]


def store_card(index: dict) -> str:
    """The store's README.md: Hugging Face front matter and, per model, a results table per framework."""
    import yaml

    cards = [v.get("card", {}) for m in index["models"].values() for v in m["versions"].values()]
    licenses = sorted({c.get("license") for c in cards if c.get("license")})
    meta = {
        "library_name": "zoo",
        "license": licenses[0] if len(licenses) == 1 else "other",
        "tags": sorted({"zoo", *(t for c in cards for t in _as_list(c.get("tags")))}),
        "datasets": sorted({d for c in cards for d in _as_list(c.get("datasets"))}),
        "metrics": sorted({m for c in cards for m in _as_list(c.get("metrics"))}),
    }
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        "# Zoo checkpoints",
        "",
        "Each model below is a framework-neutral checkpoint (safetensors + JSON) usable from Keras or "
        "PyTorch: `python tools/evaluate.py <store>/<name>/<version> --fw keras|torch`, or pull it with "
        "`python tools/hub.py pull <store>/<name>/<version> DEST` (sha256 verified).",
        "",
    ]
    for name, model in index["models"].items():
        rows = [
            (version, fw, result)
            for version, entry in model["versions"].items()
            for fw, result in entry.get("results", {}).items()
        ]
        metrics = sorted({k for _, _, r in rows for k in r.get("metrics", {})})
        lines += [
            f"## {name} ({model['model']})",
            "",
            "| version | evaluated in | trained in | data | split | " + " | ".join(metrics) + " |",
            "| --- " * (5 + len(metrics)) + "|",
        ]
        for version, fw, r in rows:
            values = [
                f"{r['metrics'][k]:.4f}" if isinstance(r["metrics"].get(k), int | float) else "-"
                for k in metrics
            ]
            trained = model["versions"][version].get("framework")
            lines.append(
                f"| {version} | {fw} | {trained} | {r.get('data')} | {r.get('split')} | "
                + " | ".join(values)
                + " |"
            )
        for version, entry in model["versions"].items():
            parity = entry.get("parity")
            if parity:
                worst = max(parity["max_error"].items(), key=lambda kv: kv[1])
                lines.append(
                    f"\n{version} parity (tools/crosscheck.py): {parity['passed']}/{parity['checks']} "
                    f"checks passed; largest error {worst[1]:.2e} ({worst[0]})."
                )
        lines.append("")
    return "\n".join(lines)
