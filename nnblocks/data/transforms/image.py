"""Image augmentation for training batches: random crop, flip, small affine, noise.

Each transform works on a whole batch ``[B, C, H, W]`` at once (one random draw per image,
no Python loop over images), draws from torch's global generator (so a seeded run, and a
resumed run that restores the RNG state, sees the same augmentations) and keeps the
batch's dtype and device. They are augmentations: ``AugmentedData`` applies them to the
training split only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from nnblocks.data.transforms.base import Transform, received
from nnblocks.errors import DataError, ShapeError
from nnblocks.registry import register

__all__ = ["RandomCrop", "Flip", "Affine", "Noise"]


def _images(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ShapeError(
            f"transform `{name}` expects a float batch of images [B, C, H, W]. Received: {received(x)}"
        )
    return x


def _check_prob(p: float, name: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise DataError(f"`p` of transform `{name}` must be in [0, 1]. Received: p={p}")
    return p


class _Augmentation(Transform):
    augmentation = True

    def __init__(self) -> None:
        super().__init__()
        self.fitted = True  # nothing to learn


@register("transform", "random_crop")
class RandomCrop(_Augmentation):
    """Pad each image by ``padding`` pixels, then crop it back at a random offset.

    The classic CIFAR augmentation (Krizhevsky et al. 2012; He et al. 2016 pad by 4 on
    32x32): a random shift of up to ``padding`` pixels in each direction.

    Args:
        padding: pixels added on each side before cropping.
        mode: padding mode of ``F.pad``: ``"replicate"`` (repeat the edge pixels),
            ``"reflect"``, or ``"constant"`` (zeros). Images here are already normalised,
            where zero is the *mean* colour, not the background: repeating the edge keeps
            the background a background.

    Raises:
        DataError: negative padding or an unknown mode.

    Example:
        >>> RandomCrop(padding=2)(torch.rand(4, 3, 8, 8)).shape
        torch.Size([4, 3, 8, 8])
    """

    name = "random_crop"

    def __init__(self, padding: int = 2, mode: str = "replicate"):
        super().__init__()
        if padding < 0 or mode not in ("constant", "reflect", "replicate"):
            raise DataError(
                "transform `random_crop` expects padding >= 0 and mode in constant/reflect/replicate. "
                f"Received: padding={padding}, mode={mode!r}"
            )
        self.padding, self.mode = padding, mode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _images(x, self.name)
        if self.padding == 0:
            return x
        B, C, H, W = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p), mode=self.mode)  # [B, C, H+2p, W+2p]
        dy = torch.randint(0, 2 * p + 1, (B, 1), device=x.device)
        dx = torch.randint(0, 2 * p + 1, (B, 1), device=x.device)
        rows = dy + torch.arange(H, device=x.device)  # [B, H]
        cols = dx + torch.arange(W, device=x.device)  # [B, W]
        b = torch.arange(B, device=x.device)[:, None, None]
        # advanced indexing on dims 0, 2, 3 gathers every image's own window: [B, H, W, C]
        out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()  # [B, C, H, W]

    def options(self) -> dict[str, Any]:
        return {"padding": self.padding, "mode": self.mode}


@register("transform", "flip")
class Flip(_Augmentation):
    """Mirror each image with probability ``p`` (left-right, or top-bottom if ``vertical``).

    Only for images whose meaning survives mirroring (photos of objects) — not for digits
    or text.

    Args:
        p: probability of flipping an image.
        vertical: flip top-bottom instead of left-right.

    Example:
        >>> Flip(p=1.0)(torch.arange(4.0).view(1, 1, 1, 4)).flatten().tolist()
        [3.0, 2.0, 1.0, 0.0]
    """

    name = "flip"

    def __init__(self, p: float = 0.5, vertical: bool = False):
        super().__init__()
        self.p = _check_prob(p, self.name)
        self.vertical = vertical

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _images(x, self.name)
        chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p  # [B, 1, 1, 1]
        return torch.where(chosen, x.flip(-2 if self.vertical else -1), x)

    def options(self) -> dict[str, Any]:
        return {"p": self.p, "vertical": self.vertical}


@register("transform", "affine")
class Affine(_Augmentation):
    """A small random rotation, scaling and translation per image (bilinear resampling).

    Args:
        degrees: rotation drawn uniformly from ``[-degrees, degrees]``.
        translate: shift drawn from ``[-translate, translate]`` times the image size.
        scale: zoom factor drawn from ``[scale[0], scale[1]]``.
        p: probability that an image is transformed at all.

    Raises:
        DataError: negative ranges, or a bad scale interval.

    Example:
        >>> Affine(degrees=10)(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    name = "affine"

    def __init__(
        self,
        degrees: float = 10.0,
        translate: float = 0.1,
        scale: tuple[float, float] | list[float] = (0.9, 1.1),
        p: float = 1.0,
    ):
        super().__init__()
        lo, hi = (float(s) for s in scale)
        if degrees < 0 or translate < 0 or not 0 < lo <= hi:
            raise DataError(
                "transform `affine` expects degrees >= 0, translate >= 0 and 0 < scale[0] <= scale[1]. "
                f"Received: degrees={degrees}, translate={translate}, scale={tuple(scale)}"
            )
        self.degrees, self.translate, self.scale = degrees, translate, (lo, hi)
        self.p = _check_prob(p, self.name)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _images(x, self.name)
        B = x.shape[0]

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return torch.rand(B, device=x.device, dtype=x.dtype) * (hi - lo) + lo

        angle = uniform(-self.degrees, self.degrees) * (math.pi / 180)
        zoom = uniform(*self.scale)
        shift = (
            torch.stack([uniform(-self.translate, self.translate) for _ in range(2)], 1) * 2
        )  # [B, 2]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # theta maps output coordinates to input coordinates in [-1, 1] (F.affine_grid)
        theta = torch.stack(
            [torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1
        )  # [B, 2, 2]
        theta = torch.cat([theta, shift[:, :, None]], dim=2)  # [B, 2, 3]
        keep = torch.rand(B, device=x.device) >= self.p
        identity = torch.tensor([[1, 0, 0], [0, 1, 0]], dtype=x.dtype, device=x.device)
        theta = torch.where(keep[:, None, None], identity, theta)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # "border" fills uncovered corners with edge pixels: in normalised images zero would
        # be the mean colour, a visible frame rather than background
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def options(self) -> dict[str, Any]:
        return {
            "degrees": self.degrees,
            "translate": self.translate,
            "scale": list(self.scale),
            "p": self.p,
        }


@register("transform", "noise")
class Noise(_Augmentation):
    """Add Gaussian noise with standard deviation ``std`` (in the data's own units).

    Args:
        std: noise standard deviation.

    Example:
        >>> Noise(std=0.0)(torch.ones(1, 1, 2, 2)).sum().item()
        4.0
    """

    name = "noise"

    def __init__(self, std: float = 0.1):
        super().__init__()
        if std < 0:
            raise DataError(f"`std` of transform `noise` must be >= 0. Received: std={std}")
        self.std = std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ShapeError(
                f"transform `noise` expects a float tensor. Received: {type(x).__name__}"
            )
        return x + torch.randn_like(x) * self.std

    def options(self) -> dict[str, Any]:
        return {"std": self.std}
