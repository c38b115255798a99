"""Modality encoders: each returns tokens, a mask and a pooled vector, fed by a preprocessor."""

from kgmm.encoders.audio import AudioEncoder
from kgmm.encoders.audio_preprocessor import AudioPreprocessor
from kgmm.encoders.image import ImageEncoder
from kgmm.encoders.image_preprocessor import ImagePreprocessor
from kgmm.encoders.output import EncoderOutput
from kgmm.encoders.text import TextEncoder, TextPreprocessor, default_text_model_path

__all__ = [
    "AudioEncoder",
    "AudioPreprocessor",
    "EncoderOutput",
    "ImageEncoder",
    "ImagePreprocessor",
    "TextEncoder",
    "TextPreprocessor",
    "default_text_model_path",
]
