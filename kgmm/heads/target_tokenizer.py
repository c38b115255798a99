"""The target-side tokenizer of the translation head (a `tokenizers` BPE model)."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]


def train_target_tokenizer(
    texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = False
) -> Tokenizer:
    """Train a BPE tokenizer on ``texts``: NFKC (+ lowercase), metaspace split and decoding.

    The special tokens ``<pad> <s> </s> <unk>`` get ids 0-3. ``tokenizer.decode(ids)`` gives the
    normalised text back, spaces included.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer
