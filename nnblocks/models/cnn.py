"""Model `cnn`: a ResNet-style image classifier with swappable norm and activation slots.

Architecture (He et al. 2016, "Deep Residual Learning for Image Recognition", the CIFAR
variant: 3x3 stem, no max pooling, so 8x8 and 32x32 images keep enough resolution):

    stem:    conv3x3 -> norm -> activation
    stages:  per stage, `blocks` basic residual blocks; the first block of every stage after
             the first halves the resolution (stride 2) and widens the channels
    block:   conv3x3 -> norm -> act -> conv3x3 -> norm, + shortcut -> act
             (shortcut: identity, or conv1x1 with stride -> norm when the shape changes)
    head:    global average pooling -> dropout -> linear

Slots (module paths): ``stem.conv``, ``stem.norm``, ``stem.activation``,
``stages.{i}.{j}.conv1|norm1|activation1|conv2|norm2|activation2``,
``stages.{i}.{j}.shortcut_conv|shortcut_norm``, ``dropout`` and ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from nnblocks.errors import ShapeError, SpecError
from nnblocks.models._checks import is_none, positive_int, received
from nnblocks.registry import build, register, spec_of
from nnblocks.spec import current_path, spec_path

__all__ = ["CNN"]

_NAME = "cnn"
_DEFAULT_STAGES = ((32, 1), (64, 1), (128, 1))


def _build_norm(spec: Any, channels: int, at: str) -> tuple[nn.Module | None, bool]:
    """Build a norm for ``[B, C, H, W]`` maps; returns it and whether it takes channels first.

    Built-in norms accept ``channels_first=True``; a norm part that does not (it normalises
    the last axis, as the norm contract says) gets its input permuted to channels-last.
    """
    if is_none(spec):
        return None, False
    norm = build(spec, "norm", at=at, dim=channels, channels_first=True)
    try:
        channels_first = spec_of(norm).get("channels_first") is True
    except SpecError:  # a ready module: trust an attribute, else assume the contract's default
        channels_first = bool(getattr(norm, "channels_first", False))
    return norm, channels_first


def _normalise(norm: nn.Module | None, x: Tensor, channels_first: bool) -> Tensor:
    if norm is None:
        return x
    if channels_first:
        return norm(x)
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # [B, H, W, C] and back


def _conv(c_in: int, c_out: int, kernel: int, stride: int, bias: bool) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=bias)
    # He et al. 2015 ("Delving Deep into Rectifiers") init for ReLU-family networks.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class _Stem(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: Any, act: Any):
        super().__init__()
        self.norm, self._norm_cf = _build_norm(norm, c_out, "norm")
        self.conv = _conv(c_in, c_out, kernel, stride, bias=self.norm is None)
        self.activation = build(act, "activation", at="activation")

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(_normalise(self.norm, self.conv(x), self._norm_cf))


class _BasicBlock(nn.Module):
    """The basic residual block of He et al. 2016 (two 3x3 convolutions)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: Any, act: Any, zero_init: bool):
        super().__init__()
        self.norm1, self._cf1 = _build_norm(norm, c_out, "norm1")
        self.conv1 = _conv(c_in, c_out, 3, stride, bias=self.norm1 is None)
        self.activation1 = build(act, "activation", at="activation1")
        self.norm2, self._cf2 = _build_norm(norm, c_out, "norm2")
        self.conv2 = _conv(c_out, c_out, 3, 1, bias=self.norm2 is None)
        self.activation2 = build(act, "activation", at="activation2")
        self.shortcut_conv = self.shortcut_norm = None
        self._cfs = False
        if stride != 1 or c_in != c_out:
            self.shortcut_norm, self._cfs = _build_norm(norm, c_out, "shortcut_norm")
            self.shortcut_conv = _conv(c_in, c_out, 1, stride, bias=self.shortcut_norm is None)
        weight = getattr(self.norm2, "weight", None)
        if zero_init and isinstance(weight, nn.Parameter):
            # Goyal et al. 2017: each block starts as the identity, which eases early training.
            nn.init.zeros_(weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.activation1(_normalise(self.norm1, self.conv1(x), self._cf1))
        out = _normalise(self.norm2, self.conv2(out), self._cf2)  # [B, C_out, H', W']
        if self.shortcut_conv is not None:
            x = _normalise(self.shortcut_norm, self.shortcut_conv(x), self._cfs)
        return self.activation2(out + x)


def _check_stages(stages: Any, path: str) -> list[tuple[int, int]]:
    def ok(n: Any) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and n > 0

    if (
        not isinstance(stages, Sequence)
        or isinstance(stages, str)
        or not stages
        or not all(
            isinstance(s, Sequence) and len(s) == 2 and ok(s[0]) and ok(s[1]) for s in stages
        )
    ):
        raise SpecError(
            f"Received an invalid value for `stages` of model `{_NAME}`: expected a non-empty "
            "list of [channels, blocks] pairs of positive integers, e.g. [[32, 1], [64, 2]]. "
            f"Received: stages={stages!r}",
            path=path,
        )
    return [(int(c), int(b)) for c, b in stages]


@register("model", _NAME)
class CNN(nn.Module):
    """ResNet-style image classifier: stem, residual stages, global pooling, linear head.

    Args:
        num_classes: classes of the linear head (offered by a classification dataset).
        in_channels: channels of the input images (1 for grey, 3 for RGB).
        stages: ``[[channels, blocks], ...]``; default ``[[32, 1], [64, 1], [128, 1]]``.
            Every stage after the first starts with a stride-2 block.
        stem_channels: width of the stem; default the first stage's width.
        stem_kernel: kernel size of the stem convolution (3 for small images, 7 for large).
        stem_stride: stride of the stem convolution.
        norm: norm spec for every norm slot (default ``"batch"``, built with
            ``dim=C, channels_first=True``); ``"none"``/``None`` for no norm (the
            convolutions then get a bias).
        activation: activation spec for every activation slot (default ``"relu"``); one
            module per call site, so a learnable activation is not shared by accident.
        dropout: dropout before the head.
        zero_init_residual: zero the scale of each block's last norm (Goyal et al. 2017).
        head: head spec over the pooled features (slot ``head``; ``"linear"``). The dropout
            before it is slot ``dropout`` (a `regularization` part).

    Call arguments:
        images: ``[B, in_channels, H, W]`` float images.

    Returns:
        logits ``[B, num_classes]``.

    Raises:
        SpecError: bad sizes or ``stages``, or a bad part in a slot (the registry names the
            slot and the kind it expects).
        ShapeError: (at call) images that are not ``[B, in_channels, H, W]`` floats.

    Example:
        >>> import nnblocks, torch
        >>> model = nnblocks.build({"name": "cnn", "num_classes": 10, "in_channels": 1,
        ...                         "stages": [[8, 1], [16, 1]]})
        >>> model(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        stages: Sequence[Sequence[int]] | None = None,
        stem_channels: int | None = None,
        stem_kernel: int = 3,
        stem_stride: int = 1,
        norm: Any = "batch",
        activation: Any = "relu",
        dropout: float = 0.0,
        zero_init_residual: bool = False,
        head: Any = "linear",
    ):
        super().__init__()
        path = current_path() or _NAME
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("stem_kernel", stem_kernel),
            ("stem_stride", stem_stride),
            ("stem_channels", 1 if stem_channels is None else stem_channels),
        ):
            positive_int(name, value, model=_NAME)
        plan = _check_stages(_DEFAULT_STAGES if stages is None else stages, path)
        self.in_channels, self.num_classes = in_channels, num_classes
        width = stem_channels or plan[0][0]
        with spec_path("stem"):  # nested builds name `stem.norm` in errors
            self.stem = _Stem(in_channels, width, stem_kernel, stem_stride, norm, activation)
        self.stages = nn.ModuleList()
        for i, (channels, blocks) in enumerate(plan):
            stage = nn.Sequential()
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                with spec_path(f"stages.{i}.{j}"):
                    block = _BasicBlock(
                        width, channels, stride, norm, activation, zero_init_residual
                    )
                stage.append(block)
                width = channels
            self.stages.append(stage)
        self.dropout = build({"name": "dropout", "p": dropout}, "regularization", at="dropout")
        self.head = build(head, "head", at="head", dim=width, out_features=num_classes, bias=True)

    def forward(self, images: Tensor) -> Tensor:
        """``images [B, C, H, W]`` -> logits ``[B, num_classes]``."""
        if (
            not isinstance(images, Tensor)
            or images.dim() != 4
            or images.shape[1] != self.in_channels
            or not images.is_floating_point()
        ):
            raise ShapeError(
                f"model `{_NAME}`: expected float images [B, {self.in_channels}, H, W] "
                f"(in_channels={self.in_channels}). Received: {received(images)}"
            )
        x = self.stem(images)  # [B, C0, H, W]
        for stage in self.stages:
            x = stage(x)  # [B, C_i, H / 2^i, W / 2^i]
        x = x.mean(dim=(2, 3))  # [B, C_last]: global average pooling
        return self.head(self.dropout(x))  # [B, num_classes]
