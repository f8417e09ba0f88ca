"""The one small interface every backend implements (after Polygraphy's loader/runner split).

A backend is one file in this package. It turns a *prepared* ONNX model (see `edgekit.ingest`) into
artifact files for one target and precision, and opens a host-side runner for those files so that
`verify` and the local benchmark can run them. Everything shared (ingest, calibration reading,
manifest writing, atomic output, fidelity metrics) lives outside the backends.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import BadInput, MissingDependency

if TYPE_CHECKING:
    from edgekit.calib import CalibrationSet
    from edgekit.ingest import PreparedModel
    from edgekit.targets import Gates, TargetProfile


@dataclass
class TensorSpec:
    """One artifact input or output, as the manifest records it.

    `name` is the name inside the artifact; `source_name` the name in the user's ONNX model (the two
    differ when a backend renamed it). `shape` is in the artifact's own layout; `layout` says which
    (e.g. "NCHW", "NHWC", or "" when not an image tensor). `quant` holds {"scale", "zero_point"} when
    the artifact's tensor is quantized (e.g. full-int8 TFLite I/O).
    """

    name: str
    source_name: str
    shape: list[int | str]
    dtype: str
    layout: str = ""
    quant: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source_name": self.source_name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "quant": self.quant,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(
            name=data["name"],
            source_name=data.get("source_name", data["name"]),
            shape=list(data["shape"]),
            dtype=data["dtype"],
            layout=data.get("layout", ""),
            quant=data.get("quant"),
        )


@dataclass
class ExportOptions:
    """What the user asked for, beyond target and precision. Backends read the fields they know."""

    calib_method: str = "entropy"  # minmax | entropy | percentile
    dynamic_int8: bool = False  # weights-only / dynamic-range int8 instead of static
    io_dtype: str = "auto"  # auto | float | int8 (full-int8 backends: quantized or float I/O)
    ignore: list[str] = field(default_factory=list)  # node-name patterns kept in float
    max_accuracy_drop: float | None = None  # accuracy-controlled quantization, where supported
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific, from --option k=v
    # INT8 search (edgekit.int8): recipe search + sensitive-node fallback to meet the gate
    search: bool = True  # False: the single default recipe (--no-search)
    max_revert: float = 0.25  # share of quantized nodes fallback may keep in float (--max-revert)
    search_budget_s: float = 600.0  # wall-clock bound of the search (--search-budget)
    allow_float_ops: bool = False  # full-integer targets: fallback may leave float ops (--allow-float-ops)


@dataclass
class ExportJob:
    """Everything a backend needs for one export. `out_dir` is a private temp dir: write files there."""

    prepared: PreparedModel
    target: TargetProfile
    precision: str
    out_dir: Path
    calib: CalibrationSet | None
    options: ExportOptions
    val: CalibrationSet | None = None  # only for accuracy-controlled quantization
    gates: Gates | None = None  # the goal of INT8 search (target's gates + overrides); None: target's


@dataclass
class ExportResult:
    """What a backend produced. `entry` is the main file (relative to out_dir)."""

    entry: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    toolchain: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # backend-specific manifest section
    warnings: list[str] = field(default_factory=list)
    # precision actually achieved, when it differs from the request (e.g. fp16 kernels on jetson-nano)
    effective_precision: str | None = None


def name_matches(name: str, pattern: str) -> bool:
    """`--ignore` patterns are shell globs or regular expressions (full match), for every backend."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


class HostRunner(ABC):
    """Runs an artifact on this machine. Feeds and results use the *source model's* names and layout.

    The public `infer` checks the feed and times the call; backends implement `_infer`, which may
    transpose / quantize as their artifact needs, and must hand back outputs keyed by source names in
    the source layout so that every backend is compared like with like.
    """

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.last_ms = 0.0

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [spec.source_name for spec in self.inputs if spec.source_name not in feed]
        if missing:
            raise BadInput(f"missing input(s) for the artifact: {', '.join(missing)}")
        start = time.perf_counter()
        result = self._infer(feed)
        self.last_ms = (time.perf_counter() - start) * 1000.0
        return result

    @abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime session."""

    def __enter__(self) -> HostRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend(ABC):
    """One deployment backend. Subclasses are registered in `edgekit.backends.BACKENDS`."""

    name: str = ""
    extra: str = ""  # the pip extra that installs its dependencies
    modules: tuple[str, ...] = ()  # importable modules it needs (checked without importing them)
    needs_static_shapes: bool = False
    # characters allowed in tensor/node names; None = anything goes. Names outside it are rewritten.
    name_pattern: str | None = None
    min_opset: int = 13

    def missing_modules(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]

    def available(self) -> bool:
        return not self.missing_modules()

    def require(self) -> None:
        """Raise MissingDependency (exit 3) naming the extra when a module is absent."""
        missing = self.missing_modules()
        if missing:
            raise MissingDependency(missing[0], self.extra, f"the {self.name} backend")

    def versions(self) -> dict[str, str]:
        """Versions of the installed modules, for the manifest (imports them; call after require())."""
        out: dict[str, str] = {}
        for mod in self.modules:
            try:
                out[mod] = str(getattr(importlib.import_module(mod), "__version__", "unknown"))
            except Exception:  # noqa: BLE001 - a version is informational
                out[mod] = "unknown"
        return out

    @abstractmethod
    def export(self, job: ExportJob) -> ExportResult:
        """Write the artifact file(s) for `job` into `job.out_dir`."""

    @abstractmethod
    def open_runner(self, artifact_dir: Path, manifest: Mapping[str, Any]) -> HostRunner:
        """A host runner for an exported artifact directory."""
