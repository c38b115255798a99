"""Samples, manifests and batching."""

from kgmm.data.augment import TextAugmenter
from kgmm.data.collator import Collator
from kgmm.data.kgrec import (
    KGCNSplits,
    KGRecData,
    kgcn_protocol,
    load_kgrec,
    load_kgrec_preprocessed,
    load_kgrec_raw,
)
from kgmm.data.manifest import read_manifest
from kgmm.data.noise import character_noise, noisy_samples

__all__ = [
    "Collator",
    "KGCNSplits",
    "KGRecData",
    "TextAugmenter",
    "character_noise",
    "kgcn_protocol",
    "load_kgrec",
    "load_kgrec_preprocessed",
    "load_kgrec_raw",
    "noisy_samples",
    "read_manifest",
]
