"""Evaluation metrics: classification, translation (sacrebleu), ranking, and table printing."""

from kgmm.metrics.classification import (
    accuracy,
    classification_report,
    confidence_interval,
    macro_f1,
    multilabel_f1,
)
from kgmm.metrics.ranking import auc, f1_at_threshold, topk_metrics
from kgmm.metrics.report import format_table
from kgmm.metrics.translation import TranslationScore, bleu, chrf, tokenized_bleu

__all__ = [
    "TranslationScore",
    "accuracy",
    "auc",
    "bleu",
    "chrf",
    "classification_report",
    "confidence_interval",
    "f1_at_threshold",
    "format_table",
    "macro_f1",
    "multilabel_f1",
    "tokenized_bleu",
    "topk_metrics",
]
