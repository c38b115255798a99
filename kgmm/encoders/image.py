"""Image encoder: a torchvision backbone whose last feature map becomes a token sequence."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from kgmm.encoders.freezing import freeze as freeze_module
from kgmm.encoders.image_backbones import token_backbone
from kgmm.encoders.image_preprocessor import ImagePreprocessor
from kgmm.encoders.output import EncoderOutput
from kgmm.encoders.weights import load_weights_into, looks_like_weights_file
from kgmm.errors import ConfigError


class ImageEncoder(nn.Module):
    """A torchvision backbone returning grid (CNN) or patch (ViT) tokens.

    Args:
        backbone: A torchvision model name, e.g. ``"resnet18"``, ``"mobilenet_v3_small"``,
            ``"efficientnet_b0"``, ``"convnext_tiny"``, ``"vit_b_16"``.
        weights: ``None`` for random initialisation; ``"DEFAULT"`` or a weights name such as
            ``"IMAGENET1K_V1"`` / ``"ResNet18_Weights.IMAGENET1K_V1"`` for torchvision's
            pretrained weights (downloaded by torchvision); or the path of a ``.safetensors``
            / ``.pth`` state dict of the full torchvision model.
        freeze: Train no parameter of the backbone (it also stays in eval mode).
        image_size: Square input size when ``weights`` is not a torchvision weights name
            (those fix their own resize and crop sizes).
        random_init: Build the architecture and preprocessing ``weights`` implies, but read no
            weights (used when a checkpoint supplies them).

    CNNs give ``H'*W'`` tokens with their mean as the pooled vector; ViTs give patch tokens
    with the class token as the pooled vector.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = None,
        freeze: bool = False,
        image_size: int = 224,
        random_init: bool = False,
    ) -> None:
        super().__init__()
        pretrained = _torchvision_weights(backbone, weights)
        if pretrained is not None:
            transforms = pretrained.transforms()
            image_size = transforms.crop_size[0]
            self.preprocessor = ImagePreprocessor(
                image_size, transforms.resize_size[0], transforms.mean, transforms.std
            )
        else:
            self.preprocessor = ImagePreprocessor(image_size)
        model = _build(backbone, None if random_init else pretrained, image_size)
        if weights is not None and pretrained is None and not random_init:
            load_weights_into(model, weights)
        self.backbone = token_backbone(model)
        self.output_dim: int = self.backbone.output_dim
        self.frozen = freeze
        if freeze:
            freeze_module(self.backbone)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        tokens, pooled = self.backbone(images)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self


def _torchvision_weights(backbone: str, weights: str | None) -> models.WeightsEnum | None:
    """The torchvision weights named by ``weights``, or None for no weights / a file path."""
    if weights is None or looks_like_weights_file(weights):
        return None
    try:
        if "." in weights:
            return models.get_weight(weights)
        return models.get_model_weights(backbone)[weights]
    except (KeyError, ValueError) as error:
        raise ConfigError(
            f"unknown weights {weights!r} for image backbone {backbone!r}; use 'DEFAULT', a "
            "torchvision weights name, or the path of a .safetensors/.pth file"
        ) from error


def _build(backbone: str, weights: models.WeightsEnum | None, image_size: int) -> nn.Module:
    available = models.list_models(module=models)
    if backbone not in available:
        raise ConfigError(
            f"unknown image backbone {backbone!r}; torchvision offers {', '.join(available)}"
        )
    options = {"image_size": image_size} if backbone.startswith("vit_") and weights is None else {}
    return models.get_model(backbone, weights=weights, **options)
