"""Translation datasets (framework-free): the embedded numbers-en-fr generator and hub converters.

Every loader returns a DatasetDict with train / validation / test splits and two string columns,
`source` and `target`, whitespace-normalised (stripped, runs of white space made one space). Subword
tokenizers are trained on the training split by shared/tasks/translation.py and saved with the checkpoint.

    numbers-en-fr        English number words -> French number words (num2words), embedded, deterministic
    multi30k             bentrevett/multi30k (en -> de, 29k / 1k / 1k), hub, pinned revision
    opus-books-en-fr     Helsinki-NLP/opus_books en-fr (127k pairs, one split: validation / test carved out)
    hub:<repo>[@rev]     the same two hub datasets at a revision you name

Hub data loads only when asked, and from ZOO_HUB_MIRROR (a folder of parquet files of the hub's schema)
when that is set, which is how the tests exercise the converters offline.
"""

from __future__ import annotations

import numpy as np

from shared.data import store
from shared.data.catalog import register, register_hub
from shared.data.hub import mirror_files
from shared.errors import UserError

# Pinned hub revisions (commit hashes) used by the named loaders.
MULTI30K_REPO, MULTI30K_REVISION = "bentrevett/multi30k", "b8b9bf42b209b3de6ad42d0f69e01c50c9e08a78"
OPUS_BOOKS_REPO, OPUS_BOOKS_REVISION = "Helsinki-NLP/opus_books", "e911ed6ccfb8459c66eb815f17c7a38c6dcbbf9d"


def clean(text) -> str:
    """Strip and collapse white space: the one text normalisation every loader applies."""
    return " ".join(str(text).split())


def to_dataset_dict(splits: dict[str, tuple[list[str], list[str]]]):
    """{split: (sources, targets)} -> DatasetDict with string columns source and target."""
    import datasets

    features = datasets.Features({"source": datasets.Value("string"), "target": datasets.Value("string")})
    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {"source": [clean(s) for s in sources], "target": [clean(t) for t in targets]},
                features=features,
            )
            for name, (sources, targets) in splits.items()
        }
    )


def carve(pairs: tuple[list[str], list[str]], validation_size: int, test_size: int, seed: int):
    """One split -> train / validation / test by a seeded permutation (for corpora shipped as one split)."""
    sources, targets = pairs
    if validation_size + test_size >= len(sources):
        raise UserError(
            f"validation_size + test_size = {validation_size + test_size} leaves no training pairs "
            f"out of {len(sources)}: pass smaller sizes"
        )
    order = np.random.default_rng(seed).permutation(len(sources))
    parts = {
        "test": order[:test_size],
        "validation": order[test_size : test_size + validation_size],
        "train": order[test_size + validation_size :],
    }
    return {name: ([sources[i] for i in index], [targets[i] for i in index]) for name, index in parts.items()}


@register("numbers-en-fr")
@store.cached("numbers-en-fr")
def numbers_en_fr(
    train_size: int = 20000,
    validation_size: int = 1000,
    test_size: int = 1000,
    max_number: int = 99_999,
    always_train_below: int = 100,
    seed: int = 1234,
):
    """English number words -> French number words, e.g. "ninety-seven" -> "quatre-vingt-dix-sept".

    Numbers are drawn without replacement from 0 .. max_number by a seeded permutation, so the three
    splits hold disjoint numbers. The numbers below always_train_below (the words every larger number is
    built from, and French's irregular ones: "soixante et onze", "quatre-vingts") are all in train;
    validation and test are drawn from the rest.
    """
    from num2words import num2words

    for name, value in (
        ("train_size", train_size),
        ("validation_size", validation_size),
        ("test_size", test_size),
    ):
        if value < 1:
            raise UserError(f"numbers-en-fr: {name} must be >= 1; found {value}")
    if not 0 <= always_train_below <= train_size:
        raise UserError(
            f"numbers-en-fr: always_train_below must be in 0 .. train_size ({train_size}); "
            f"found {always_train_below}"
        )
    available = max_number + 1
    if train_size + validation_size + test_size > available:
        raise UserError(
            f"numbers-en-fr: {train_size} + {validation_size} + {test_size} numbers asked for, but "
            f"0 .. {max_number} holds {available}: raise max_number or ask for fewer"
        )
    rest = always_train_below + np.random.default_rng(seed).permutation(available - always_train_below)
    test, rest = rest[:test_size], rest[test_size:]
    validation, rest = rest[:validation_size], rest[validation_size:]
    train = np.concatenate([np.arange(always_train_below), rest[: train_size - always_train_below]])
    train = train[np.random.default_rng(seed + 1).permutation(len(train))]  # the small numbers not first

    def pairs(numbers):
        return [num2words(int(n), lang="en") for n in numbers], [
            num2words(int(n), lang="fr") for n in numbers
        ]

    return to_dataset_dict({"train": pairs(train), "validation": pairs(validation), "test": pairs(test)})


def _load_raw(repo: str, revision: str | None, config_name: str | None = None):
    """A hub dataset's raw DatasetDict: from ZOO_HUB_MIRROR if set, else the hub at `revision`."""
    import datasets

    files = mirror_files(repo)
    if files is not None:
        if config_name:  # a mirror of a multi-config repo keeps each config in a sub-folder, as the hub does
            inside = {s: [p for p in paths if f"/{config_name}/" in p] for s, paths in files.items()}
            files = {s: paths for s, paths in inside.items() if paths} or files
        return datasets.load_dataset("parquet", data_files=files)
    try:
        return datasets.load_dataset(repo, config_name, revision=revision)
    except Exception as err:  # network, auth or a missing revision: all fixable by the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"could not load hub dataset {repo}@{revision or 'main'} ({first}); check the network "
            "or set ZOO_HUB_MIRROR to a folder of its parquet files"
        ) from None


def _column(split, name: str, repo: str) -> list[str]:
    if name not in split.column_names:
        raise UserError(f"{repo}: expected a column {name!r}; found {', '.join(split.column_names)}")
    return list(split[name])


@register_hub(MULTI30K_REPO)
def hub_multi30k(raw, source_lang: str = "en", target_lang: str = "de"):
    """bentrevett/multi30k: splits train / validation / test, one column per language (en, de)."""
    missing = [s for s in ("train", "validation", "test") if s not in raw]
    if missing:
        raise UserError(
            f"{MULTI30K_REPO}: expected train, validation and test splits; {', '.join(missing)} missing"
        )
    return to_dataset_dict(
        {
            split: (
                _column(raw[split], source_lang, MULTI30K_REPO),
                _column(raw[split], target_lang, MULTI30K_REPO),
            )
            for split in ("train", "validation", "test")
        }
    )


@register_hub(OPUS_BOOKS_REPO)
def hub_opus_books(
    raw,
    source_lang: str = "en",
    target_lang: str = "fr",
    validation_size: int = 1000,
    test_size: int = 1000,
    seed: int = 1234,
):
    """Helsinki-NLP/opus_books (config en-fr): one train split of {"translation": {"en": ..., "fr": ...}}."""
    rows = _column(raw["train"], "translation", OPUS_BOOKS_REPO)
    for key in (source_lang, target_lang):
        if rows and key not in rows[0]:
            raise UserError(
                f"{OPUS_BOOKS_REPO}: translation pairs have languages {', '.join(rows[0])}; {key!r} asked for"
            )
    pairs = ([r[source_lang] for r in rows], [r[target_lang] for r in rows])
    return to_dataset_dict(carve(pairs, validation_size, test_size, seed))


@register("multi30k")
def multi30k(source_lang: str = "en", target_lang: str = "de"):
    """Multi30k (Elliott et al. 2016) at the pinned revision; source_lang="de", target_lang="en" reverses it."""
    return hub_multi30k(_load_raw(MULTI30K_REPO, MULTI30K_REVISION), source_lang, target_lang)


@register("opus-books-en-fr")
def opus_books_en_fr(validation_size: int = 1000, test_size: int = 1000, seed: int = 1234):
    """OPUS Books English -> French at the pinned revision, validation and test carved out of its one split."""
    raw = _load_raw(OPUS_BOOKS_REPO, OPUS_BOOKS_REVISION, "en-fr")
    return hub_opus_books(raw, "en", "fr", validation_size, test_size, seed)
