"""Sources: in-memory tensors and numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources._common import supervised_bundle
from nnblocks.errors import DataError, NNBlocksError

__all__ = ["from_tensors", "from_numpy", "from_tensor_file"]


def from_tensors(
    x: torch.Tensor,
    y: torch.Tensor | Sequence[Any],
    *,
    task: str = "classification",
    split: Any = None,
    normalize: Any = "normalize",
    augment: Any = None,
    classes: Sequence[Any] | None = None,
    target_names: Sequence[str] | None = None,
    normalize_target: bool = True,
) -> DataBundle:
    """A DataBundle from inputs ``x [N, ...]`` and targets ``y``.

    Args:
        x: ``[N, F]`` features, ``[N, C, H, W]`` images, or ``[N, T]`` token ids (long).
        y: ``[N]`` class labels (classification), ``[N]`` or ``[N, K]`` floats
            (regression), ``[N, L]`` 0/1 (multilabel).
        task: ``"classification"``, ``"regression"`` or ``"multilabel"``.
        split: a split spec (see ``nnblocks.data.splits.make_splits``); default: stratified
            (classification) or random, 20% validation, no test.
        normalize: transform spec(s) fitted on the training rows of float ``x`` (per feature,
            per channel for images); None to keep ``x`` as is.
        augment: augmentation spec(s) applied to training batches only.
        classes: class names; label ``i`` of ``y`` is ``classes[i]``.
        target_names: names of the regression targets / multilabel labels.
        normalize_target: normalise regression targets with training statistics (metrics are
            reported in the original units).

    Returns:
        a DataBundle with ``model_args`` ``in_features`` (``[N, F]``) or ``in_channels``
        (images), and ``num_classes`` / ``out_features``.

    Raises:
        DataError: ``x`` and ``y`` of different lengths, an empty split, a label absent
            from training.

    Example:
        >>> bundle = from_tensors(torch.randn(100, 4), torch.arange(100) % 2)
        >>> bundle.task.model_args
        {'num_classes': 2, 'in_features': 4}
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"from_tensors: `x` must be a tensor. Received: {type(x).__name__}")
    if len(x) != len(y):
        raise DataError(f"from_tensors: `x` has {len(x)} rows but `y` has {len(y)}.")
    if x.dtype == torch.float64:
        x = x.float()
    args: dict[str, Any] = {}
    kind = "vector"
    if x.dim() == 2 and x.is_floating_point():
        args["in_features"] = x.shape[1]
    elif x.dim() == 4:
        args["in_channels"] = x.shape[1]
        kind = "image"
    elif x.dim() == 2:
        args["vocab_size"] = int(x.max()) + 1 if x.numel() else 0
        kind = "tokens"
    if classes is not None and task == "classification":
        # labels are ids into `classes`: keep that order
        y = [classes[int(i)] for i in torch.as_tensor(y).tolist()]
    return supervised_bundle(
        x,
        y,
        task=task,
        split=split,
        normalize=normalize,
        augment=augment,
        classes=classes,
        target_names=target_names,
        normalize_target=normalize_target,
        input_kind=kind,
        model_args=args,
        where="from_tensors",
    )


def from_numpy(x: Any, y: Any, **options: Any) -> DataBundle:
    """``from_tensors`` for numpy arrays (float64 becomes float32). Same options.

    Example:
        >>> import numpy as np
        >>> from_numpy(np.random.rand(50, 3), np.arange(50) % 2).sizes()
        {'train': 40, 'valid': 10}
    """
    import numpy as np

    xa = np.asarray(x)
    if xa.dtype == object:
        raise DataError(
            "from_numpy: `x` has dtype object (mixed types); convert it to numbers first."
        )
    xt = torch.from_numpy(np.ascontiguousarray(xa))
    if xt.is_floating_point():
        xt = xt.float()
    ya = np.asarray(y)
    yt: Any = torch.from_numpy(np.ascontiguousarray(ya)) if ya.dtype != object else list(ya)
    return from_tensors(xt, yt, **options)


def _read_npy(path: Path, *, key: str) -> torch.Tensor:
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)  # never unpickle: a .npy may carry code
    except ValueError as exc:
        raise DataError(
            f"`{key}`: `{path}` holds Python objects (a pickled array), which are not loaded. "
            "Save plain numbers (np.save of a numeric array)."
        ) from exc
    except OSError as exc:
        raise DataError(f"`{key}`: `{path}` is not a readable .npy file: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise DataError(
            f"`{key}`: `{path}` must hold one numeric array. Received dtype {getattr(array, 'dtype', '?')}"
        )
    return torch.from_numpy(np.ascontiguousarray(array))


def from_tensor_file(
    path: str | Path,
    *,
    targets: str | Path | None = None,
    x: str = "x",
    y: str = "y",
    **options: Any,
) -> DataBundle:
    """A DataBundle from tensors on disk (``from_tensors``): a safetensors file or .npy files.

    Args:
        path: a ``.safetensors`` file holding the inputs under ``x`` and the targets under
            ``y``, or a ``.npy`` file of inputs.
        targets: with a ``.npy`` input file, the ``.npy`` file of targets.
        x, y: the tensor names in a safetensors file.
        **options: the options of ``from_tensors`` (task, split, normalize, ...).

    Raises:
        DataError: a missing file or tensor name (listing the names the file holds), a
            non-numeric or pickled array, or any error of ``from_tensors``.

    Example:
        >>> bundle = from_tensor_file("digits.safetensors", task="classification")  # doctest: +SKIP
        >>> bundle = from_tensor_file("x.npy", targets="y.npy")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"tensor file `{path}` not found.")
    if path.suffix == ".npy":
        if targets is None:
            raise DataError(
                f"`{path}` is a .npy file of inputs: give the targets' .npy file as `targets`."
            )
        inputs, labels = _read_npy(path, key="path"), _read_npy(Path(targets), key="targets")
    elif path.suffix == ".safetensors":
        from nnblocks.io.safetensors_io import read_tensors

        try:
            tensors = read_tensors(path)
        except NNBlocksError as exc:
            raise DataError(f"tensor file `{path}`: {exc}") from exc
        missing = [k for k in (x, y) if k not in tensors]
        if missing:
            raise DataError(
                f"tensor file `{path}`: no tensor named {missing}. It holds: {sorted(tensors)}"
            )
        inputs, labels = tensors[x], tensors[y]
    else:
        raise DataError(f"`{path}`: expected a .safetensors or .npy file.")
    return from_tensors(inputs, labels, **options)
