"""Corpus BLEU and chrF through sacrebleu, with the signature that makes a score comparable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric

from kgmm.errors import DataError

References = Sequence[str] | Sequence[Sequence[str]]


@dataclass(frozen=True)
class TranslationScore:
    """A corpus score, sacrebleu's signature, and sacrebleu's one-line summary of the score.

    For BLEU the summary holds the n-gram precisions, brevity penalty and hypothesis/reference
    lengths, which is what to compare when a number differs from a published one.
    """

    score: float
    signature: str
    details: str = ""


def _reference_streams(hypotheses: Sequence[str], references: References) -> list[list]:
    """Turn one reference (str) or several (list of str) per hypothesis into sacrebleu streams.

    Hypotheses with fewer references than the most are padded with None, which sacrebleu skips.
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise DataError("hypotheses and references must be lists of sentences, not one string")
    if len(hypotheses) != len(references):
        raise DataError(
            f"got {len(hypotheses)} hypotheses but {len(references)} references; "
            "pass one reference (or one list of references) per hypothesis"
        )
    if len(hypotheses) == 0:
        raise DataError("no hypotheses given; there is nothing to score")
    per_sentence = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    for index, refs in enumerate(per_sentence):
        if not refs:
            raise DataError(f"hypothesis {index} has an empty list of references")
    most = max(len(refs) for refs in per_sentence)
    return [[refs[k] if k < len(refs) else None for refs in per_sentence] for k in range(most)]


def _score(metric: Metric, hypotheses: Sequence[str], references: References) -> TranslationScore:
    streams = _reference_streams(hypotheses, references)
    result = metric.corpus_score(list(hypotheses), streams)
    return TranslationScore(
        score=float(result.score),
        signature=str(metric.get_signature()),
        details=result.format(),
    )


def bleu(
    hypotheses: Sequence[str],
    references: References,
    tokenize: str = "13a",
    lowercase: bool = False,
) -> TranslationScore:
    """sacreBLEU on detokenised text; ``references[i]`` is a string or a list of strings."""
    return _score(BLEU(tokenize=tokenize, lowercase=lowercase), hypotheses, references)


def chrf(
    hypotheses: Sequence[str],
    references: References,
    lowercase: bool = False,
    word_order: int = 0,
) -> TranslationScore:
    """sacrebleu chrF (``word_order=2`` gives chrF++); references as in :func:`bleu`."""
    return _score(CHRF(lowercase=lowercase, word_order=word_order), hypotheses, references)


def tokenized_bleu(
    hypotheses: Sequence[str],
    references: References,
    pretokenized: bool = False,
) -> TranslationScore:
    """BLEU on lower-cased, tokenised text, the way multimodal-MT papers report Multi30K.

    The published Multi30K numbers (e.g. Transformer-tiny 41.02 on test2016 En->De, Wu et al.
    2021) come from fairseq's built-in BLEU scorer: the Multi30K ``tok/`` pipeline
    (``lowercase.perl | normalize-punctuation.perl | tokenizer.perl`` from Moses) is applied to
    both sides, BPE is merged back, and corpus BLEU-4 is computed on whitespace-split tokens
    with one reference, the standard brevity penalty and no smoothing.

    This function computes the same statistic with sacrebleu: lower-casing, then
    - ``pretokenized=True``: whitespace splitting only (``tokenize="none"``), for text that is
      already Moses-tokenised, e.g. the ``tok/`` files and models trained on them; this is the
      fairseq computation exactly;
    - ``pretokenized=False`` (default): sacrebleu's ``13a`` tokeniser applied to raw text as the
      closest installed stand-in for the Moses tokeniser. The two differ in a few places
      (Moses splits apostrophes in German and keeps ``E.S.E.`` whole); on the raw German
      test2016 references 13a yields 12,106 tokens against Moses' 12,103.

    ``smooth_method="none"`` and ``force=True`` match fairseq: a zero n-gram precision gives 0,
    and tokenised-looking input is not a warning here but the point.
    """
    metric = BLEU(
        tokenize="none" if pretokenized else "13a",
        lowercase=True,
        smooth_method="none",
        force=True,
    )
    return _score(metric, hypotheses, references)
