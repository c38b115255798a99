"""Knowledge fusion: modality tokens self-attend, then cross-attend to KG entities via a gate."""

from kgmm.fusion.config import FusionConfig
from kgmm.fusion.fusion import KnowledgeFusion
from kgmm.fusion.output import FusionOutput

__all__ = ["FusionConfig", "FusionOutput", "KnowledgeFusion"]
