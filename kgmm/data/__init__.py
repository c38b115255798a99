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
from kgmm.data.lengths import longest_first, text_lengths
from kgmm.data.lexicon import lexicon_graph, read_lexicon, vocabulary
from kgmm.data.manifest import read_manifest
from kgmm.data.noise import character_noise, noisy_samples
from kgmm.data.parallel import load_parallel, parallel_file, parallel_splits, read_sentences

__all__ = [
    "Collator",
    "KGCNSplits",
    "KGRecData",
    "TextAugmenter",
    "character_noise",
    "kgcn_protocol",
    "lexicon_graph",
    "load_kgrec",
    "load_kgrec_preprocessed",
    "load_kgrec_raw",
    "load_parallel",
    "longest_first",
    "noisy_samples",
    "parallel_file",
    "parallel_splits",
    "read_lexicon",
    "read_manifest",
    "read_sentences",
    "text_lengths",
    "vocabulary",
]
