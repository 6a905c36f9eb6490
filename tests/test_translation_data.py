"""Translation data, tokenizers, task arrays and the framework-free decoding driver (no framework imported)."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from shared import checkpoint, decoding
from shared.data import load, tokenize
from shared.errors import UserError
from shared.tasks import translation as task
from zoo.nlp.seq2seq.config import Config

SMALL = {"train_size": 300, "validation_size": 40, "test_size": 40, "max_number": 1999}


@pytest.fixture(scope="module")
def numbers():
    return load("numbers-en-fr", **SMALL)


@pytest.fixture(scope="module")
def prepared(numbers):
    return task.prepare(numbers, Config())


# ---- data -------------------------------------------------------------------------------------------


def test_numbers_en_fr_is_deterministic_disjoint_and_real_french(numbers):
    assert {k: len(v) for k, v in numbers.items()} == {"train": 300, "validation": 40, "test": 40}
    assert list(numbers["test"]["source"]) == list(load("numbers-en-fr", **SMALL)["test"]["source"])
    splits = {name: set(numbers[name]["source"]) for name in numbers}
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["validation"])
    assert not (splits["validation"] & splits["test"])
    pairs = dict(zip(numbers["train"]["source"], numbers["train"]["target"]))
    assert pairs["ninety-seven"] == "quatre-vingt-dix-sept"  # every number below 100 is in train
    assert pairs["seventy-one"] == "soixante et onze" and pairs["eighty"] == "quatre-vingts"
    other_seed = load("numbers-en-fr", **SMALL, seed=7)
    assert list(other_seed["test"]["source"]) != list(numbers["test"]["source"])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"train_size": 900, "validation_size": 100, "test_size": 100, "max_number": 999},
            "raise max_number",
        ),
        ({"train_size": 50, "always_train_below": 100}, "always_train_below"),
        ({"test_size": 0}, "test_size must be >= 1"),
    ],
)
def test_numbers_en_fr_refuses_impossible_sizes(kwargs, message):
    with pytest.raises(UserError, match=message):
        load("numbers-en-fr", **kwargs)


def test_multi30k_converter_reads_hub_parquet(tmp_path, monkeypatch):
    folder = tmp_path / "bentrevett" / "multi30k"
    folder.mkdir(parents=True)
    rows = {"train": 5, "validation": 2, "test": 3}
    for split, n in rows.items():
        pd.DataFrame(
            {"en": [f"A  dog runs {i}. " for i in range(n)], "de": [f"Ein Hund läuft {i}." for i in range(n)]}
        ).to_parquet(folder / f"{split}-00000-of-00001.parquet")
    monkeypatch.setenv("ZOO_HUB_MIRROR", str(tmp_path))
    for data in (load("multi30k"), load("hub:bentrevett/multi30k")):
        assert {k: len(v) for k, v in data.items()} == rows
        assert data["train"][1] == {
            "source": "A dog runs 1.",
            "target": "Ein Hund läuft 1.",
        }  # spaces cleaned
    reverse = load("multi30k", source_lang="de", target_lang="en")
    assert reverse["test"][0]["source"].startswith("Ein Hund")


def test_opus_books_converter_carves_validation_and_test(tmp_path, monkeypatch):
    repo = tmp_path / "Helsinki-NLP" / "opus_books"
    for config, (a, b) in {"en-fr": ("en", "fr"), "de-en": ("de", "en")}.items():
        (repo / config).mkdir(parents=True)
        pd.DataFrame(
            {
                "id": [str(i) for i in range(20)],
                "translation": [{a: f"{a} {i}", b: f"{b} {i}"} for i in range(20)],
            }
        ).to_parquet(repo / config / "train-00000-of-00001.parquet")
    monkeypatch.setenv("ZOO_HUB_MIRROR", str(tmp_path))
    data = load("opus-books-en-fr", validation_size=3, test_size=4)
    assert {k: len(v) for k, v in data.items()} == {"train": 13, "validation": 3, "test": 4}
    assert all(s.replace("en", "fr") == t for s, t in zip(data["train"]["source"], data["train"]["target"]))
    everything = sorted(s for split in data.values() for s in split["source"])
    assert everything == sorted(f"en {i}" for i in range(20))  # the de-en folder was not read
    with pytest.raises(UserError, match="leaves no training pairs"):
        load("opus-books-en-fr", validation_size=10, test_size=10)


# ---- tokenizers and arrays --------------------------------------------------------------------------


def test_tokenizer_round_trips_and_maps_unseen_characters_to_unknown(prepared):
    splits, state = prepared
    source, target = tokenize.tokenizers(state)
    for tokenizer in (source, target):
        assert [tokenizer.token_to_id(t) for t in tokenize.SPECIAL_TOKENS] == [0, 1, 2, 3]
    for text in splits["test"].targets:
        assert tokenize.decode_ids(target, tokenize.encode_texts(target, [text])[0]) == text
    ids = tokenize.encode_texts(source, ["deux ☃ ünïcode"])[0]  # never-seen characters
    assert tokenize.UNK_ID in ids
    assert target.encode("quatre-vingt-dix-sept").tokens.count("-") == 3  # punctuation is its own token


def test_prepare_builds_teacher_forcing_arrays(prepared):
    splits, state = prepared
    test = splits["test"]
    assert isinstance(test, task.Split) and len(test.sources) == len(test["src"]) == 40
    assert test["src"].dtype == np.int64 and test["src_mask"].dtype == bool
    _, target = tokenize.tokenizers(state)
    for i in range(len(test["src"])):
        n_src, n_tgt = int(test["src_mask"][i].sum()), int(test["tgt_mask"][i].sum())
        assert test["src"][i, n_src - 1] == tokenize.EOS_ID and np.all(
            test["src"][i, n_src:] == tokenize.PAD_ID
        )
        assert test["tgt_in"][i, 0] == tokenize.BOS_ID and test["tgt_out"][i, n_tgt - 1] == tokenize.EOS_ID
        assert np.array_equal(test["tgt_in"][i, 1:n_tgt], test["tgt_out"][i, : n_tgt - 1])  # shifted by one
        assert tokenize.decode_ids(target, test["tgt_out"][i, : n_tgt - 1]) == test.targets[i]
    assert state["src_vocab_size"] <= Config().src_vocab_size and state["dropped"] == {
        "train": 0,
        "validation": 0,
        "test": 0,
    }


def test_length_policy_leaves_out_long_pairs_and_counts_them(numbers, capsys):
    splits, state = task.prepare(numbers, Config(max_src_len=6, max_tgt_len=6))
    assert state["dropped"]["train"] > 0
    assert len(splits["train"]["src"]) == 300 - state["dropped"]["train"]
    assert splits["train"]["src"].shape[1] <= 6 and splits["train"]["tgt_in"].shape[1] <= 6
    assert "left out" in capsys.readouterr().err


def test_prepare_refuses_what_cannot_work(numbers, prepared):
    _, state = prepared
    with pytest.raises(UserError, match="--set tgt_vocab_size="):
        task.prepare(numbers, Config(tgt_vocab_size=50), state)
    with pytest.raises(UserError, match="needs 'source' and 'target'"):
        task.prepare(numbers.rename_column("target", "french"), Config())
    with pytest.raises(UserError, match="pad_id must be 0"):
        task.prepare(numbers, Config(pad_id=1))


def test_state_travels_in_tokenizer_json(prepared, tmp_path):
    _, state = prepared
    files = task.checkpoint_files(state)
    assert "tokenizers" not in files["preprocessing.json"]
    saved = checkpoint.save(
        tmp_path / "ckpt",
        model_name="nlp/seq2seq",
        config={},
        meta={},
        weights={"w": np.zeros(1, np.float32)},
        extra_files=files,
    )
    loaded = task.load_state(checkpoint.load(saved))
    assert (
        loaded["tokenizers"]["target"]
        and tokenize.tokenizers(loaded)[1].encode("douze").ids
        == tokenize.tokenizers(state)[1].encode("douze").ids
    )
    assert json.loads((saved / "tokenizer.json").read_text())["target"]["model"]["type"] == "BPE"
    # Saved without it: a one-line error naming the file.
    bare = checkpoint.save(
        tmp_path / "bare",
        model_name="nlp/seq2seq",
        config={},
        meta={},
        weights={"w": np.zeros(1, np.float32)},
        extra_files={"preprocessing.json": files["preprocessing.json"]},
    )
    with pytest.raises(UserError, match="lacks tokenizer.json"):
        task.load_state(checkpoint.load(bare))
    # Deleted afterwards: the manifest check names it.
    (saved / "tokenizer.json").unlink()
    with pytest.raises(UserError, match="tokenizer.json is missing"):
        checkpoint.load(saved)


def test_encode_sources_refuses_empty_and_over_long_sentences(prepared):
    _, state = prepared
    config = Config(max_src_len=8)
    batch = task.encode_sources(["twelve", "three hundred and ☃"], config, state)
    assert (
        batch["src"].shape == batch["src_mask"].shape and batch["src"][1].tolist().count(tokenize.UNK_ID) == 1
    )
    with pytest.raises(UserError, match="empty source"):
        task.encode_sources(["twelve", "   "], config, state)
    with pytest.raises(UserError, match="max_src_len=8"):
        task.encode_sources(["one two three four five six seven eight nine"], config, state)


def test_metrics_count_only_real_target_tokens():
    batch = {"tgt_out": np.array([[5, 3, 0]]), "tgt_mask": np.array([[True, True, False]])}
    logits = np.full((1, 3, 6), -10.0)
    logits[0, 0, 5] = logits[0, 1, 4] = logits[0, 2, 0] = 10.0  # right, wrong, padding
    result = task.metrics({"logits": logits}, batch)
    assert result["token_accuracy"] == 0.5
    assert result["loss"] == pytest.approx(20.0 / 2, rel=1e-3)


def test_example_batch_respects_the_config():
    config = Config(src_vocab_size=20, tgt_vocab_size=30, max_src_len=5, max_tgt_len=4)
    batch = task.example_batch(config, batch_size=7, seed=3)
    task.check_batch(config, batch)
    assert batch["src"].shape == (7, 5) and batch["tgt_in"].shape == (7, 4)
    assert batch["src"].max() < 20 and batch["tgt_out"].max() < 30
    with pytest.raises(ValueError, match="tgt_vocab_size is 10"):
        task.check_batch(Config(tgt_vocab_size=10), batch)


# ---- decoding driver --------------------------------------------------------------------------------

BOS, EOS, V = 2, 3, 5


def markov_stepper(seed: int = 0, attention: bool = True):
    """A toy model whose next-token logits depend on the previous token only; attention is uniform."""
    table = np.random.default_rng(seed).normal(size=(V, V)).astype(np.float32) * 2

    def encode(src, src_mask):
        return {"mask": src_mask}, {"steps": np.zeros((len(src), 1), np.int64)}

    def step(memory, state, tokens):
        weights = memory["mask"] / memory["mask"].sum(1, keepdims=True)
        return table[tokens], {"steps": state["steps"] + 1}, weights.astype(np.float32) if attention else None

    return decoding.Stepper(encode, step), decoding.log_softmax(table)


def exhaustive(logp, max_len, alpha):
    """Every sequence: ended by EOS before max_len, or stopped at max_len; best normalized score first."""
    found = []
    for length in range(max_len + 1):
        for body in itertools.product([t for t in range(V) if t != EOS], repeat=length):
            score, previous = 0.0, BOS
            for token in body:
                score, previous = score + logp[previous, token], token
            if length < max_len:
                found.append((score + logp[previous, EOS], list(body), True, length + 1))
            else:
                found.append((score, list(body), False, length))
    return sorted(found, key=lambda f: -f[0] / decoding.length_penalty(f[3], alpha))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_search_equals_exhaustive_search(alpha, seed):
    stepper, logp = markov_stepper(seed)
    src, mask = np.ones((2, 3), np.int64), np.array([[True, True, True], [True, False, False]])
    best = exhaustive(logp, 4, alpha)[:3]
    for hyps in decoding.beam_search(
        stepper, src, mask, bos_id=BOS, eos_id=EOS, max_len=4, beam_size=V**4, alpha=alpha
    ):
        assert [(h.tokens, h.finished) for h in hyps[:3]] == [(b[1], b[2]) for b in best]
        assert [h.score for h in hyps[:3]] == pytest.approx([b[0] for b in best])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_narrow_beam_is_at_least_as_good_as_greedy_and_sorted(seed):
    stepper, logp = markov_stepper(seed)
    src, mask = np.ones((1, 4), np.int64), np.ones((1, 4), bool)
    greedy = decoding.greedy(stepper, src, mask, bos_id=BOS, eos_id=EOS, max_len=6)[0]
    beams = decoding.beam_search(stepper, src, mask, bos_id=BOS, eos_id=EOS, max_len=6, beam_size=3)[0]
    assert len(beams) == 3 and [h.normalized for h in beams] == sorted(
        (h.normalized for h in beams), reverse=True
    )
    assert beams[0].score >= greedy.score - 1e-12
    for h in beams + [greedy]:
        assert h.attention.shape == (len(h.tokens) + h.finished, 4)  # a row per generated token, EOS too


def test_greedy_follows_the_argmax_and_stops_at_eos():
    stepper, logp = markov_stepper(0)
    src, mask = np.ones((3, 2), np.int64), np.ones((3, 2), bool)
    for h in decoding.greedy(stepper, src, mask, bos_id=BOS, eos_id=EOS, max_len=7):
        previous, expected, score = BOS, [], 0.0
        for _ in range(7):
            token = int(np.argmax(logp[previous]))
            score += logp[previous, token]
            if token == EOS:
                break
            expected.append(token)
            previous = token
        assert h.tokens == expected and h.score == pytest.approx(score) and h.finished == (token == EOS)


def test_decoding_without_attention_and_bad_input():
    stepper, _ = markov_stepper(1, attention=False)
    src, mask = np.ones((1, 2), np.int64), np.ones((1, 2), bool)
    assert decoding.greedy(stepper, src, mask, bos_id=BOS, eos_id=EOS, max_len=3)[0].attention is None
    assert (
        decoding.beam_search(stepper, src, mask, bos_id=BOS, eos_id=EOS, max_len=3, beam_size=2)[0][
            0
        ].attention
        is None
    )
    with pytest.raises(ValueError, match="at least one real token"):
        decoding.greedy(stepper, src, np.zeros((1, 2), bool), bos_id=BOS, eos_id=EOS, max_len=3)
    with pytest.raises(ValueError, match="beam_size must be >= 1"):
        decoding.beam_search(stepper, src, mask, bos_id=BOS, eos_id=EOS, max_len=3, beam_size=0)
