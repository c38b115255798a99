"""Turning a torchvision classifier into a module that returns tokens and a pooled vector."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from kgmm.errors import ConfigError


class GridTokens(nn.Module):
    """A CNN trunk whose last feature map ``[B, C, H, W]`` becomes ``H*W`` tokens of size C."""

    def __init__(self, trunk: nn.Module, output_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.output_dim = output_dim

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.trunk(images).flatten(2).transpose(1, 2)
        return tokens, tokens.mean(dim=1)


class PatchTokens(nn.Module):
    """A vision transformer's patch tokens, with its class token as the pooled vector."""

    def __init__(self, vit: models.VisionTransformer) -> None:
        super().__init__()
        vit.heads = nn.Identity()
        self.vit = vit
        self.output_dim = vit.hidden_dim

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patches = self.vit._process_input(images)
        class_token = self.vit.class_token.expand(patches.shape[0], -1, -1)
        encoded = self.vit.encoder(torch.cat([class_token, patches], dim=1))
        return encoded[:, 1:], encoded[:, 0]


def token_backbone(model: nn.Module) -> GridTokens | PatchTokens:
    """Strip the classifier off a torchvision model, keeping what produces its last features."""
    if isinstance(model, models.VisionTransformer):
        return PatchTokens(model)
    if isinstance(model, models.ResNet):
        trunk = nn.Sequential(
            model.conv1,
            model.bn1,
            model.relu,
            model.maxpool,
            model.layer1,
            model.layer2,
            model.layer3,
            model.layer4,
        )
        return GridTokens(trunk, model.fc.in_features)
    if isinstance(model, models.RegNet):
        return GridTokens(nn.Sequential(model.stem, model.trunk_output), model.fc.in_features)
    if isinstance(model, models.ConvNeXt):
        # classifier = [LayerNorm2d, Flatten, Linear]; the norm acts per position.
        trunk = nn.Sequential(model.features, model.classifier[0])
        return GridTokens(trunk, model.classifier[2].in_features)
    if isinstance(model, models.MobileNetV3):
        return GridTokens(model.features, model.classifier[0].in_features)
    if isinstance(model, (models.MobileNetV2, models.EfficientNet)):
        return GridTokens(model.features, model.classifier[1].in_features)
    raise ConfigError(
        f"image backbone {type(model).__name__} is not supported; use a ResNet/ResNeXt, RegNet, "
        "MobileNetV2/V3, EfficientNet, ConvNeXt or ViT model from torchvision"
    )
