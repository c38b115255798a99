"""Samples, manifests and batching."""

from kgmm.data.collator import Collator
from kgmm.data.manifest import read_manifest

__all__ = ["Collator", "read_manifest"]
