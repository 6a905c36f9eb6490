"""Named training recipes as data (zoo.spec.TrainingRecipe in each model's spec.py): applying one to a
command line, listing them, and the card's Recipes block (written by `tools/summary.py --recipes`).

    python tools/train.py zoo/vision/cnn --list-recipes
    python tools/train.py zoo/vision/cnn --fw torch --recipe mnist-5k     # --set/--data/--epochs override it

Framework-free.
"""

from __future__ import annotations

from shared.markdown import replace_block
from shared.train.callbacks import monitor_mode

START, END = "<!-- recipes:start -->", "<!-- recipes:end -->"
WRITER = "python tools/summary.py --recipes"


def apply(spec, recipe, overrides: dict, data: str | None) -> tuple:
    """(config, data, data_kwargs) of a new run: the recipe's Config overrides under the command line's
    (--set, --epochs ...), and its dataset unless --data names one."""
    config = spec.config(**{**(recipe.config if recipe else {}), **overrides})
    if data:
        return config, data, {}
    if recipe is not None:
        return config, recipe.data or spec.dataset, dict(recipe.data_kwargs)
    return config, spec.dataset, {}


def command(spec, recipe, fw: str = "torch") -> str:
    gpus = " --gpus 1" if recipe.device == "gpu" else ""
    return f"python tools/train.py zoo/{spec.name} --fw {fw}{gpus} --recipe {recipe.name}"


def target(spec, recipe) -> str:
    """ "accuracy >= 0.98" (">=" for a higher-is-better metric), or "not run here"."""
    if recipe.expect is None:
        return "not run here" if recipe.metric else "none"
    higher = lower_is_better(spec, recipe.metric) is False
    return f"{recipe.metric} {'>=' if higher else '<='} {recipe.expect:g}"


def lower_is_better(spec, metric: str) -> bool:
    task = spec.task_module
    return monitor_mode(metric, "auto", {task.PRIMARY_METRIC: task.HIGHER_IS_BETTER}) == "min"


def settings_text(spec, recipe) -> str:
    """The recipe as command-line flags: --data and --set KEY=VALUE."""
    parts = []
    if recipe.data:
        parts.append(f"--data {recipe.data}")
    if recipe.data_kwargs:
        parts.append("data " + ", ".join(f"{k}={v}" for k, v in recipe.data_kwargs.items()))
    parts += [f"--set {k}={_value(v)}" for k, v in recipe.config.items()]
    return " ".join(parts) or "the Config defaults"


def _value(v) -> str:
    if isinstance(v, tuple | list):
        return "(" + ",".join(str(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v).lower() if isinstance(v, bool) else str(v)


def listing(spec) -> str:
    """--list-recipes: one paragraph per recipe."""
    named = spec.named_recipes()
    lines = [f"{spec.name}: {len(named)} recipe(s); run one with --recipe NAME (--set/--data override it)"]
    for recipe in named:
        data = recipe.data or spec.dataset
        lines += [
            "",
            f"{recipe.name}  [{recipe.device}, data {data}, target {target(spec, recipe)}]",
            f"    {recipe.summary}",
            f"    {settings_text(spec, recipe)}",
            f"    {command(spec, recipe)}",
        ]
    return "\n".join(lines)


def card_block(spec) -> str:
    """The card's Recipes block, generated from spec.py."""
    lines = [
        f"Generated from `zoo/{spec.name}/spec.py` by `{WRITER}`; `python tools/train.py zoo/{spec.name} "
        "--list-recipes` prints the same. Run one with `--recipe NAME` (`--fw keras` takes the same "
        "flags); `--set`, `--data` and `--epochs` still override it. The target is the test metric the "
        "recipe is expected to reach, not a result (results are in the Results section).",
        "",
        "| recipe | device | data | settings | target | command |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for recipe in spec.named_recipes():
        lines.append(
            f"| `{recipe.name}` | {recipe.device} | `{recipe.data or spec.dataset}` | {recipe.summary} "
            f"`{settings_text(spec, recipe)}` | {target(spec, recipe)} | `{command(spec, recipe)}` |"
        )
    return "\n".join(lines)


def update_card(spec, card_text: str) -> str:
    """The card with its Recipes block rewritten; a card without one gets it before its first Results
    section (or at its end)."""
    at = card_text.find("\n## Results")
    if START not in card_text and at >= 0:
        card_text = f"{card_text[: at + 1]}## Recipes\n\n{START}\n{END}\n\n{card_text[at + 1 :]}"
    return replace_block(card_text, START, END, card_block(spec), "## Recipes")
