"""The one small interface every backend implements (after Polygraphy's loader/runner split and
tvmc's frontends: everything about a backend is asked of the backend).

A backend is one file (or package) in this package. It turns a *prepared* ONNX model (see
`edgekit.ingest`) into artifact files for one target and precision, and opens a host-side runner for
those files so that `verify` can run them. Everything else the rest of edgekit needs to know about a
backend is a question asked of its `Backend` object, each with a default here so that a new backend
overrides only what differs:

- what it offers: `precisions`, `needs_calibration(precision, options)`, its typed `Options`
  (`--option KEY=VALUE`), `status()` / `bundle_only()` for `edgekit targets`;
- what it produced: `deployable_files()` / `deployable_bytes()` (the model bytes a device loads),
  `file_records()` for the manifest;
- how it runs on a device: `run_device()` (the runtime's device string, e.g. OpenVINO "GPU", sent to
  the agent), `device_files()` (what is uploaded), `on_device_entry()` (the remote file the agent
  loads; TensorRT builds its engine there), and `times_here()` (whether timing it on this machine
  times the target's own runtime: the demo's question).

Shared machinery (ingest, calibration reading, manifest writing, atomic output, fidelity metrics,
the timing loop) lives outside the backends.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from edgekit.backends.options import BackendOptions
from edgekit.errors import BadInput, MissingDependency

if TYPE_CHECKING:
    from edgekit.calib import CalibrationSet
    from edgekit.fidelity.tasks import TaskSpec
    from edgekit.ingest import PreparedModel
    from edgekit.targets import Gates, TargetProfile
    from edgekit.transport import Transport


def looks_channels_last(shape: Sequence[Any]) -> bool:
    """[N, H, W, C] with C in 1..4 and H, W > 4: an image fed channels-last (TF/Keras, Caffe
    exports), never a channels-first one ([N, C, H, W] has a small dim 1, not a small dim 3)."""
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        return False
    _, h, w, c = shape
    return 1 <= c <= 4 and h > 4 and w > 4


class OnDeviceArtifact(Protocol):
    """The artifact an on-device hook finishes: its local directory, name and manifest (a hook that
    adds to the manifest writes it and sets `manifest`)."""

    dir: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str: ...


class OnDeviceDevice(Protocol):
    name: str


class OnDeviceJob(Protocol):
    """What `Backend.on_device_entry` reads of the run that calls it: the artifact and the device's name
    (edgekit.runner's Job is one; the backends do not import the runner)."""

    artifact: OnDeviceArtifact
    device: OnDeviceDevice


class OnDeviceSettings(Protocol):
    """How long a command on the device may take (edgekit.runner's BenchSettings is one)."""

    timeout_s: float


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
    def build(
        cls,
        name: str,
        shape: Iterable[int | str | None],
        dtype: Any,
        source_name: str | None = None,
        layout: str | None = None,
        quant: dict[str, float] | None = None,
    ) -> TensorSpec:
        """The one way a backend makes a spec: unknown dims become their symbol (or "?"), the dtype its
        numpy name, and a rank-4 float tensor without an explicit layout is NCHW (ONNX's own layout)."""
        dims: list[int | str] = [d if isinstance(d, int) else (str(d) if d else "?") for d in shape]
        np_dtype = np.dtype(dtype)
        if layout is None:
            layout = ""
            if len(dims) == 4 and np.issubdtype(np_dtype, np.floating):
                layout = "NHWC" if looks_channels_last(dims) else "NCHW"
        return cls(name, source_name or name, dims, np_dtype.name, layout, quant)

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


def manifest_specs(manifest: Mapping[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The one manifest -> spec parser: (inputs, outputs) of an artifact's manifest."""
    return (
        [TensorSpec.from_json(s) for s in manifest["inputs"]],
        [TensorSpec.from_json(s) for s in manifest.get("outputs", [])],
    )


@dataclass
class ExportOptions:
    """What the user asked for, beyond target and precision. Backends read the fields they know;
    backend-specific options are the backend's typed `Options` (see `Backend.options_of`)."""

    calib_method: str = "entropy"  # minmax | entropy | percentile
    dynamic_int8: bool = False  # weights-only / dynamic-range int8 instead of static
    io_dtype: str = "auto"  # auto | float | int8 (full-int8 backends: quantized or float I/O)
    ignore: list[str] = field(default_factory=list)  # node-name patterns kept in float
    max_accuracy_drop: float | None = None  # accuracy-controlled quantization, where supported
    threads: int | None = None
    # backend-specific `--option KEY=VALUE`: strings as given (or typed values from the API);
    # `Backend.options_of` parses them once into `backend_options` and leaves `extra` holding the
    # typed values the user set (what backends not yet on typed options read)
    extra: dict[str, Any] = field(default_factory=dict)
    backend_options: BackendOptions | None = None
    # INT8 search (edgekit.int8): recipe search + sensitive-node fallback to meet the gate
    search: bool = True  # False: the single default recipe (--no-search)
    max_revert: float = 0.25  # share of quantized nodes fallback may keep in float (--max-revert)
    search_budget_s: float = 600.0  # wall-clock bound of the search (--search-budget)
    allow_float_ops: bool = False  # full-integer targets: fallback may leave float ops (--allow-float-ops)
    # weight-only quantization (edgekit.int4): --int4, and --int8 --weights-only (INT8 weights, float
    # activations: transformer CPUs where static INT8 does not pay). MatMul/Gemm weights only.
    weights_only: bool = False
    int4_group_size: int = 128  # block of K per scale; clipped to K (power of two >= 16) per layer
    int4_symmetric: bool = False  # False: uint4 with zero points (TensorRT: always symmetric)
    int4_ratio: float = 1.0  # share of MatMul/Gemm weights (by parameters) at INT4, the rest INT8
    int4_method: str = "rtn"  # rtn | hqq | gptq (onnxruntime targets; gptq uses the calibration set)


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
    task: TaskSpec | None = None  # what the gates judge (edgekit.fidelity.infer_task); None: raw outputs
    metric: Callable | None = None  # a user metric (fn(reference, actual, labels)): the search optimises it
    # what `val` holds when the export planned it (edgekit.int8.holdout): the search's selection samples
    scored_on: str | None = None


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

    #: what produces its outputs, for the fidelity record: the runtime ("onnxruntime CPU", "tensorrt
    #: GPU") and the precision it computes in, where that differs from the backend's own or the manifest's
    runtime: str | None = None
    precision: str | None = None

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
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")  # what export can produce
    Options: ClassVar[type[BackendOptions]] = BackendOptions  # its `--option KEY=VALUE` (none here)
    # files of these suffixes are model bytes (role "model" in the manifest); the rest are logs, recipes
    model_suffixes: tuple[str, ...] = (".onnx", ".data")
    # the runner class of edgekit/agent.py that runs its artifacts on a device (default: `name`); a
    # backend whose artifacts an existing runtime runs names that runtime and needs no agent change
    agent_runner: str = ""

    # ---- what it needs and offers ------------------------------------------------------------------
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

    def bundle_only(self) -> str | None:
        """Why an installed backend only writes a bundle that is finished on the device (its runtime is
        not here), e.g. "bundle only: no tensorrt here, engines build on the device"; None otherwise."""
        return None

    def status(self) -> str:
        """One line for `edgekit targets`: installed, installed with the bundle-only note, or what to
        install."""
        missing = self.missing_modules()
        if missing:
            return f"missing {', '.join(missing)} (pip install 'edgekit[{self.extra}]')"
        note = self.bundle_only()
        return f"installed ({note})" if note else "installed"

    def check_precision(self, precision: str, target: TargetProfile) -> None:
        """BadInput unless both this backend and the target offer `precision`."""
        if precision not in self.precisions:
            raise BadInput(f"the {self.name} backend exports {', '.join(self.precisions)}, not '{precision}'")
        if target.precisions and precision not in target.precisions:
            raise BadInput(f"target '{target.name}' supports {', '.join(target.precisions)}, not {precision}")

    def needs_calibration(self, precision: str, options: ExportOptions) -> bool:
        """Whether an export at `precision` with `options` needs a calibration set (checked before any
        work). Static INT8 does; dynamic-range INT8, weight-only INT8/INT4 and float precisions do not
        (weight-only search and GPTQ use a calibration set when one is given)."""
        return precision == "int8" and not options.dynamic_int8 and not options.weights_only

    def parse_options(self, items: Iterable[str] | Mapping[str, Any] | None) -> BackendOptions:
        """`--option KEY=VALUE` strings (or a mapping) -> this backend's typed Options (BadInput on
        unknown keys, with the closest name, and on values of the wrong type)."""
        return self.Options.parse(items, self.name)

    def options_of(self, options: ExportOptions) -> BackendOptions:
        """The typed Options of an export, parsed once from `options.extra` (kept on `options`)."""
        if type(options.backend_options) is not self.Options:
            parsed = self.parse_options(options.extra)
            options.backend_options = parsed
            options.extra = parsed.given()
        assert options.backend_options is not None
        return options.backend_options

    # ---- export and host runner ---------------------------------------------------------------------
    @abstractmethod
    def export(self, job: ExportJob) -> ExportResult:
        """Write the artifact file(s) for `job` into `job.out_dir`."""

    @abstractmethod
    def open_runner(self, artifact_dir: Path, manifest: Mapping[str, Any]) -> HostRunner:
        """A host runner for an exported artifact directory."""

    # ---- what it produced ---------------------------------------------------------------------------
    def deployable_files(self, directory: Path, entry: str) -> list[str]:
        """The files a device loads: the entry and its weight sidecar (ONNX external data)."""
        files = [entry]
        if (Path(directory) / (entry + ".data")).is_file():
            files.append(entry + ".data")
        return files

    def deployable_bytes(self, directory: Path, entry: str) -> int:
        """Bytes of the deployable model (the manifest's artifact size and compression ratio)."""
        return sum((Path(directory) / rel).stat().st_size for rel in self.deployable_files(directory, entry))

    def file_records(self, directory: Path, entry: str) -> list[dict[str, Any]]:
        """Every file of the artifact with sha256, bytes and role (entry / model / aux)."""
        from edgekit.manifest import file_records

        return file_records(directory, entry, lambda rel: Path(rel).suffix in self.model_suffixes)

    # ---- where and how it runs ----------------------------------------------------------------------
    def agent_backend(self) -> str:
        """The `backend` of the agent's job file: which runner class of edgekit/agent.py loads it."""
        return self.agent_runner or self.name

    def run_device(self, target: TargetProfile | None, manifest: Mapping[str, Any]) -> str:
        """The runtime's device string the agent runs the artifact on: the target profile's `device`
        (e.g. "GPU", "NPU", "CUDA"), else "CPU"."""
        device = target.device if target is not None else None
        return str(device or "CPU").upper()

    def times_here(self, target: TargetProfile, manifest: Mapping[str, Any]) -> bool:
        """Whether running the artifact on this machine times the target's own runtime (the demo's
        question): host-built artifacts that run on a CPU."""
        return target.build == "host" and self.run_device(target, manifest) == "CPU"

    def device_files(self, manifest: Mapping[str, Any]) -> list[tuple[str, str | None]]:
        """(relative posix path, sha256 or None) of every file a device needs; the entry included."""
        listed = [(str(f["path"]), f.get("sha256")) for f in manifest.get("files", [])]
        if not any(path == manifest["entry"] for path, _ in listed):
            listed.append((str(manifest["entry"]), None))
        return listed

    async def on_device_entry(
        self,
        transport: Transport,
        job: OnDeviceJob,
        remote_dir: str,
        settings: OnDeviceSettings,
        emit: Callable[[str], None],
    ) -> str:
        """The remote path of the file the agent loads, once the artifact's files are in `remote_dir`.
        Default: the uploaded entry. A backend that finishes its artifact on the device (TensorRT
        builds its engine there) does that here and returns what it built."""
        return f"{remote_dir}/{job.artifact.manifest['entry']}"
