"""Decoding images (paths, PIL, numpy, tensors) into a normalised, fixed-size batch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from kgmm.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImagePreprocessor:
    """Turns a list of images into ``{"images": [B, 3, image_size, image_size]}``.

    Items may be file paths, PIL images, numpy arrays ``HxW``/``HxWxC`` (uint8, or float in
    [0, 1]) or tensors ``CxH xW``/``HxW`` (uint8, or float in [0, 1]). Grey and RGBA images
    become RGB. Images are resized to ``image_size`` square, or, when ``resize_size`` is given,
    resized to ``resize_size`` on the short side and centre-cropped (as torchvision's pretrained
    weights expect), then normalised with ``mean``/``std``.
    """

    def __init__(
        self,
        image_size: int = 224,
        resize_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.image_size = image_size
        self.resize_size = resize_size
        self.mean = tuple(mean)
        self.std = tuple(std)
        if resize_size is None:
            resize = [v2.Resize((image_size, image_size), antialias=True)]
        else:
            resize = [v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)]
        self.transform = v2.Compose(
            [v2.ToDtype(torch.float32, scale=True), *resize, v2.Normalize(self.mean, self.std)]
        )

    def __call__(self, items: list[Any]) -> dict[str, torch.Tensor]:
        if not items:
            raise DataError("cannot preprocess an empty batch of images")
        return {"images": torch.stack([self.transform(to_rgb_tensor(item)) for item in items])}


def to_rgb_tensor(item: Any) -> torch.Tensor:
    """An image as a ``[3, H, W]`` uint8 tensor, or float tensor with values in [0, 1]."""
    if isinstance(item, (str, Path)):
        return _from_pil(_open(Path(item)))
    if isinstance(item, Image.Image):
        return _from_pil(item)
    if isinstance(item, np.ndarray):
        return _rgb(_channels_first(torch.from_numpy(np.ascontiguousarray(item)), last=True))
    if isinstance(item, torch.Tensor):
        return _rgb(_channels_first(item.detach().cpu(), last=False))
    raise DataError(
        f"cannot use a {type(item).__name__} as an image; pass a file path, PIL image, "
        "numpy array or tensor"
    )


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"cannot read image file {path}: {error}") from error


def _from_pil(image: Image.Image) -> torch.Tensor:
    return v2.functional.pil_to_tensor(image.convert("RGB"))


def _channels_first(array: torch.Tensor, last: bool) -> torch.Tensor:
    """``[C, H, W]`` from ``[H, W]``, ``[H, W, C]`` (numpy) or ``[C, H, W]`` (torch) layouts."""
    if array.ndim == 2:
        return array.unsqueeze(0)
    if array.ndim == 3 and last and array.shape[-1] in (1, 3, 4):
        return array.permute(2, 0, 1)
    if array.ndim == 3 and not last and array.shape[0] in (1, 3, 4):
        return array
    layout = "HxW or HxWxC" if last else "HxW or CxHxW"
    raise DataError(
        f"image array has shape {tuple(array.shape)}; expected {layout} with 1, 3 or 4 channels"
    )


def _rgb(image: torch.Tensor) -> torch.Tensor:
    if image.dtype != torch.uint8:
        image = image.float()
        low, high = image.min().item(), image.max().item()
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"float image values span [{low:g}, {high:g}]; scale them to [0, 1] "
                "(for example divide by the maximum) or pass uint8 pixels"
            )
    if image.shape[0] == 1:
        return image.expand(3, -1, -1)
    return image[:3]
