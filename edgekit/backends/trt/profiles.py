"""TensorRT optimization profiles: min/opt/max shapes for inputs with dynamic dimensions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgekit.errors import BadInput

DEFAULT_MAX_BATCH = 8
Shapes = dict[str, list[int]]


def parse_shape_option(text: str) -> Shapes:
    """`NAME:1x3x224x224[,NAME:...]` (names holding ',' or ':' in single quotes, as trtexec takes them)."""
    shapes: Shapes = {}
    for part in re.split(r"[;,](?![^']*'\s*:)", str(text)):
        if not part.strip():
            continue
        name, sep, dims = part.strip().rpartition(":")
        try:
            shapes[name.strip("'")] = [int(d) for d in dims.split("x")]
        except ValueError as exc:
            raise BadInput(f"shape option '{part}' must look like NAME:1x3x224x224") from exc
        if not sep:
            raise BadInput(f"shape option '{part}' must look like NAME:1x3x224x224")
    return shapes


def optimization_profile(
    inputs: list[Any], calib: Any | None, extra: Mapping[str, Any]
) -> tuple[Shapes, Shapes, Shapes]:
    """min/opt/max shapes for inputs with dynamic dims ({} when every input is static).

    Explicit `--option min_shapes=... opt_shapes=... max_shapes=...` win; otherwise a dynamic axis 0
    (batch) gets 1 / 1 / max_batch (default 8), other dynamic dims take the calibration sample's size.
    """
    dynamic = [i for i in inputs if any(not isinstance(d, int) for d in i.shape)]
    if not dynamic:
        return {}, {}, {}
    given = [
        parse_shape_option(extra[k]) if extra.get(k) else {}
        for k in ("min_shapes", "opt_shapes", "max_shapes")
    ]
    max_batch = int(extra.get("max_batch", DEFAULT_MAX_BATCH))
    sample = next(calib.feeds(1), None) if calib is not None else None
    mins: Shapes = {}
    opts: Shapes = {}
    maxs: Shapes = {}
    for info in dynamic:
        if all(info.name in g for g in given):
            mins[info.name], opts[info.name], maxs[info.name] = (g[info.name] for g in given)
            continue
        lo: list[int] = []
        mid: list[int] = []
        hi: list[int] = []
        for axis, dim in enumerate(info.shape):
            if isinstance(dim, int):
                low = opt = high = dim
            elif axis == 0:
                low, opt, high = 1, 1, max_batch
            elif sample is not None and info.name in sample and np.ndim(sample[info.name]) == len(info.shape):
                low = opt = high = int(np.shape(sample[info.name])[axis])
            else:
                raise BadInput(
                    f"input '{info.name}' has a dynamic dimension {axis} ({dim}); give it with --input-shape "
                    f"or --option min_shapes=/opt_shapes=/max_shapes= (e.g. {info.name}:1x3x224x224)"
                )
            lo.append(low)
            mid.append(opt)
            hi.append(high)
        mins[info.name], opts[info.name], maxs[info.name] = lo, mid, hi
    return mins, opts, maxs
