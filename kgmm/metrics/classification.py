"""Classification metrics: accuracy, F1 (single- and multi-label), reports, Wilson intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from sklearn import metrics as skm

from kgmm.errors import ConfigError, DataError


def _check_pair(y_true: Sequence, y_pred: Sequence) -> None:
    if len(y_true) != len(y_pred):
        raise DataError(
            f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}; "
            "pass one prediction per gold label"
        )
    if len(y_true) == 0:
        raise DataError("y_true and y_pred are empty; there is nothing to score")


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """Fraction of predictions equal to the gold label."""
    _check_pair(y_true, y_pred)
    return float(skm.accuracy_score(y_true, y_pred))


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Unweighted mean of per-class F1 over the classes seen in either argument."""
    _check_pair(y_true, y_pred)
    return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))


def classification_report(
    y_true: Sequence, y_pred: Sequence, labels: Sequence | None = None
) -> str:
    """Per-class precision / recall / F1 / support as a printable table (sklearn's report)."""
    _check_pair(y_true, y_pred)
    return skm.classification_report(y_true, y_pred, labels=labels, digits=3, zero_division=0)


def multilabel_f1(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Micro and macro F1 of multi-label predictions given as 0/1 indicator arrays [N, L]."""
    true = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if true.ndim != 2 or true.shape != pred.shape:
        raise DataError(
            f"multi-label F1 needs two indicator arrays of the same shape [samples, labels]; "
            f"got y_true {true.shape} and y_pred {pred.shape}"
        )
    if true.shape[0] == 0:
        raise DataError("y_true and y_pred are empty; there is nothing to score")
    return {
        "micro_f1": float(skm.f1_score(true, pred, average="micro", zero_division=0)),
        "macro_f1": float(skm.f1_score(true, pred, average="macro", zero_division=0)),
    }


def confidence_interval(correct: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion such as accuracy = correct / total.

    Written by hand: neither numpy, scikit-learn nor sacrebleu provides it (statsmodels'
    ``proportion_confint(method="wilson")`` computes the same interval).
    """
    if total <= 0 or not 0 <= correct <= total:
        raise DataError(
            f"confidence_interval needs 0 <= correct <= total and total > 0; "
            f"got correct={correct}, total={total}"
        )
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level must be strictly between 0 and 1, got {level}")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = correct / total
    denominator = 1.0 + z * z / total
    centre = (p + z * z / (2.0 * total)) / denominator
    half_width = z * math.sqrt(p * (1.0 - p) / total + z * z / (4.0 * total * total)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)
