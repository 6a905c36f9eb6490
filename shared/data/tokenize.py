"""Subword tokenizers for translation (Hugging Face `tokenizers`), framework-free.

Each language gets its own BPE tokenizer over NFKC text, words split at spaces and punctuation, so
decoding gives back the text. Ids 0-3 are the same in every vocabulary:

    PAD 0   UNK 1 (characters never seen in training map here; no crash)   BOS 2   EOS 3

A tokenizer travels as its JSON text (`to_str()`); shared/tasks/translation.py keeps both sides in the
preprocessing state, state["tokenizers"] = {"source": json, "target": json}, and saves them with the
checkpoint.
"""

from __future__ import annotations

from functools import lru_cache

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]  # trained first, so they get ids 0-3 in both vocabularies


def train_tokenizer(texts: list[str], vocab_size: int):
    """A BPE tokenizer of at most vocab_size tokens, trained on `texts`; decoding restores the text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.NFKC()
    # Words at spaces (kept as a leading "▁"), then punctuation on its own: "quatre-vingt" -> ▁quatre - vingt.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(prepend_scheme="first"), pre_tokenizers.Punctuation("isolated")]
    )
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        limit_alphabet=max(vocab_size // 2, 1),
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


@lru_cache(maxsize=8)
def tokenizer_from_json(text: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(text)


def tokenizers(state: dict):
    """(source tokenizer, target tokenizer) of a preprocessing state."""
    return tokenizer_from_json(state["tokenizers"]["source"]), tokenizer_from_json(
        state["tokenizers"]["target"]
    )


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, specials left out."""
    return [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]


def decode_ids(tokenizer, ids) -> str:
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def tokens_of(tokenizer, ids) -> list[str]:
    return [tokenizer.id_to_token(int(i)) for i in ids]
