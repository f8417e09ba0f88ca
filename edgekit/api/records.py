"""Typed requests and records of every API verb, each with to_json / from_json.

A request takes paths as str or Path and holds them as str (sequences as lists), so it can be
written to a file, sent to a worker and read back equal; a record's `to_json()` is exactly what the CLI prints
with `--json`. Heavy modules (numpy, onnx) are imported only where a record needs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from edgekit.errors import BadInput

if TYPE_CHECKING:
    from edgekit.backends.base import ExportOptions
    from edgekit.fidelity import FidelityReport
    from edgekit.runner import BenchSettings

GATE_FLAGS = ("min_cosine", "max_accuracy_drop", "min_snr_db")
R = TypeVar("R", bound="Request")
Progress = Callable[[str], None]  # one line per step ("preparing model", ...)
BenchProgress = Callable[[dict[str, Any]], None]  # fleet events: {"stage", "device", "artifact", ...}


def noop(_: str) -> None:
    """The default progress hook: say nothing."""


def _path(value: str | Path | None) -> str | None:
    return None if value is None else str(value)


def _paths(values: Sequence[str | Path]) -> list[str]:
    return [str(v) for v in values]


def _gates(values: Mapping[str, float | None]) -> dict[str, float | None]:
    unknown = sorted(set(values) - set(GATE_FLAGS) - {"min_top1_agreement"})
    if unknown:
        raise BadInput(f"unknown gate '{unknown[0]}'; gates are {', '.join(GATE_FLAGS)}, min_top1_agreement")
    return {k: (None if v is None else float(v)) for k, v in values.items()}


class Request:
    """to_json / from_json for a dataclass of JSON-native fields (nested dataclasses via `_nested`)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise BadInput(f"{cls.__name__}: unknown field '{unknown[0]}'")
        return cls(**cls._nested(dict(data)))

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        return data


def _default_options() -> ExportOptions:
    from edgekit.backends.base import ExportOptions

    return ExportOptions()


# ---- export ------------------------------------------------------------------------------------------
@dataclass
class ExportRequest(Request):
    """One export: MODEL for TARGET at PRECISION (the target's default when None) into OUT_DIR.

    `options.extra` holds backend options (`--option KEY=VALUE`): strings from the CLI, or typed
    values from Python; the backend checks them before any work."""

    model: str | Path
    target: str
    precision: str | None = None
    calib: str | Path | None = None
    val: str | Path | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    out_dir: str | Path = "edgekit-out"
    calib_samples: int | None = None
    val_samples: int | None = None
    simplify: bool = True
    options: ExportOptions = field(default_factory=_default_options)
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    targets_dirs: Sequence[str | Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model = str(self.model)
        self.calib, self.val, self.out_dir = _path(self.calib), _path(self.val), str(self.out_dir)
        self.input_shapes = {k: [int(d) for d in v] for k, v in self.input_shapes.items()}
        self.gate_overrides = _gates(self.gate_overrides)
        self.targets_dirs = _paths(self.targets_dirs)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["options"] = {k: v for k, v in data["options"].items() if k in _OPTION_FIELDS}
        return data

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        from edgekit.backends.base import ExportOptions

        if isinstance(data.get("options"), Mapping):
            data["options"] = ExportOptions(**data["options"])
        return data


# what a request says about options; anything a backend derives from them (parsed, typed) is not
_OPTION_FIELDS = (
    "calib_method",
    "dynamic_int8",
    "io_dtype",
    "ignore",
    "max_accuracy_drop",
    "threads",
    "extra",
    "search",
    "max_revert",
    "search_budget_s",
    "allow_float_ops",
)


@dataclass
class ExportRecord:
    """The artifact directory, its manifest and (with a validation set) the fidelity report; the
    report is also the manifest's `fidelity` entry, so the JSON form needs only the manifest."""

    path: Path
    manifest: dict[str, Any]
    fidelity: FidelityReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {"artifact": str(self.path), "manifest": self.manifest}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExportRecord:
        from edgekit.fidelity import FidelityReport

        manifest = dict(data["manifest"])
        report = manifest.get("fidelity")
        return cls(Path(data["artifact"]), manifest, FidelityReport.from_json(report) if report else None)

    @property
    def int8_search(self) -> dict[str, Any] | None:
        """The INT8 search's record (edgekit.int8): recipes tried, nodes kept in float, the gate."""
        from edgekit.int8 import search_record

        return search_record(self.manifest)

    @property
    def precision_choice(self) -> dict[str, Any] | None:
        """`precision="auto"`: every precision with its fidelity and p50, the one kept and why."""
        return self.manifest.get("precision_choice")

    def gate_failure(self) -> str | None:
        """Why the artifact misses its gate (None: it meets it): the fidelity report on the validation
        set when there was one, else the INT8 search's own check on held-out calibration samples."""
        search = self.int8_search
        if self.fidelity is not None:
            if self.fidelity.passed:
                return None
            text = "fidelity gate failed: " + "; ".join(self.fidelity.failures)
            if search and search.get("would_take"):
                text += f"; INT8 search: {search['would_take']}"
            return text
        if search and not search.get("passed", True):
            return f"INT8 {search['summary']} (on {search['scored_on']}); artifact kept in {self.path}"
        return None


ExportOutcome = ExportRecord  # the name before the typed API


# ---- verify ------------------------------------------------------------------------------------------
@dataclass
class VerifyRequest(Request):
    """Verify ARTIFACT_DIR against its FP32 source on VAL: on this host, or on `device` (from
    `devices_file`, default ./devices.toml) with the outputs compared here. `write` records the
    host result in the manifest."""

    artifact_dir: str | Path
    val: str | Path
    reference: str | Path | None = None
    val_samples: int | None = None
    device: str | None = None
    devices_file: str | Path | None = None
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    targets_dirs: Sequence[str | Path] = field(default_factory=list)
    write: bool = True
    per_layer: bool = False  # also compare every layer of an ONNX artifact with FP32 (verify_layers)

    def __post_init__(self) -> None:
        self.artifact_dir, self.val = str(self.artifact_dir), str(self.val)
        self.reference, self.devices_file = _path(self.reference), _path(self.devices_file)
        self.gate_overrides = _gates(self.gate_overrides)
        self.targets_dirs = _paths(self.targets_dirs)


# verify's record is the fidelity report itself (edgekit.fidelity.FidelityReport: to_json/from_json)


@dataclass
class PerLayerRecord:
    """`verify --per-layer`: the nodes that add the most error against FP32, by the source model's
    names (`layers`, most added error first), and the INT8 search's ranking from the export
    (`sensitivity`: what keeping each node in float recovered) when it wrote one."""

    artifact: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    method: str = ""
    sensitivity: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PerLayerRecord:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass
class VerifyLayersRecord:
    """What `verify --per-layer --json` prints: the fidelity report with a `per_layer` entry."""

    report: FidelityReport
    per_layer: PerLayerRecord

    def to_json(self) -> dict[str, Any]:
        return {**self.report.to_json(), "per_layer": self.per_layer.to_json()}


# ---- bench -------------------------------------------------------------------------------------------
@dataclass
class BenchRequest(Request):
    """Benchmark ARTIFACTS on devices (the named ones, or every device whose target matches) through
    the device agent; with `val`, on-device fidelity per record. Records append to `results`."""

    artifacts: Sequence[str | Path]
    devices: list[str] = field(default_factory=list)
    devices_file: str | Path | None = None
    iterations: int = 100
    warmup: int = 10
    min_duration_s: float = 0.0
    threads: int | None = None
    timeout_s: float = 600.0
    val: str | Path | None = None
    results: str | Path = "results.jsonl"
    resume: bool = False
    concurrency: int = 4
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    targets_dirs: Sequence[str | Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.artifacts, self.devices = _paths(self.artifacts), [str(d) for d in self.devices]
        self.devices_file, self.val, self.results = (
            _path(self.devices_file),
            _path(self.val),
            str(self.results),
        )
        self.gate_overrides = _gates(self.gate_overrides)
        self.targets_dirs = _paths(self.targets_dirs)

    def settings(self) -> BenchSettings:
        from edgekit.runner import BenchSettings

        return BenchSettings(
            iterations=self.iterations,
            warmup=self.warmup,
            min_duration_s=self.min_duration_s,
            threads=self.threads,
            timeout_s=self.timeout_s,
            validation=Path(self.val).expanduser() if self.val else None,
        )


@dataclass
class BenchRecord:
    """This run's results.jsonl records (skipped pairs of a resumed run are not repeated), each with its
    on-device `fidelity` when a validation set was given. `warnings` (artifacts no device matched) are
    reported on stderr and through the progress hook, not in the JSON form."""

    records: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list, compare=False)

    def to_json(self) -> list[dict[str, Any]]:
        return list(self.records)

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> BenchRecord:
        return cls([dict(r) for r in data])

    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("status") == "failed"]

    def fidelity_failed(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("fidelity") and not r["fidelity"].get("passed")]


# ---- targets, inspect, devices, demo -----------------------------------------------------------------
@dataclass
class TargetsRequest(Request):
    targets_dirs: Sequence[str | Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.targets_dirs = _paths(self.targets_dirs)


@dataclass
class TargetRow(Request):
    """One target profile and whether its backend can export here (`status` says what to install)."""

    name: str
    backend: str
    precisions: list[str]
    build: str
    status: str
    installed: bool
    description: str


@dataclass
class Rows:
    """A record that is a list of JSON objects (device listings and checks, demo rows)."""

    rows: list[dict[str, Any]]

    def to_json(self) -> list[dict[str, Any]]:
        return list(self.rows)

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> Rows:
        return cls([dict(r) for r in data])


@dataclass
class TargetsRecord:
    rows: list[TargetRow]

    def to_json(self) -> list[dict[str, Any]]:
        return [row.to_json() for row in self.rows]

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> TargetsRecord:
        return cls([TargetRow.from_json(r) for r in data])


@dataclass
class InspectRequest(Request):
    """MODEL's numbers; with `devices_file`, a fit table per device, in which the runtime memory
    `edgekit bench` measured for this model (bench records in `results`) replaces the estimate."""

    model: str | Path
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    devices_file: str | Path | None = None
    results: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model, self.devices_file = str(self.model), _path(self.devices_file)
        self.input_shapes = {k: [int(d) for d in v] for k, v in self.input_shapes.items()}
        self.results = _paths(self.results)


@dataclass
class InspectRecord:
    """edgekit.analysis.ModelReport as JSON, and the fit table per device when devices were given."""

    report: dict[str, Any]
    fit: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.report, "fit": self.fit} if self.fit is not None else dict(self.report)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InspectRecord:
        report = dict(data)
        return cls(report, report.pop("fit", None))


@dataclass
class DevicesRequest(Request):
    """The inventory (`devices_file`, default ./devices.toml when present) and, for check/trust, the
    devices to act on (all when empty)."""

    devices_file: str | Path | None = None
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.devices_file, self.names = _path(self.devices_file), [str(n) for n in self.names]


@dataclass
class DeviceCheckRecord(Rows):
    def failed(self) -> list[str]:
        return [r["name"] for r in self.rows if r.get("status") != "ok"]


@dataclass
class TrustRecord(Request):
    """A device's host key: its fingerprint, and whether it was added to the device's known_hosts."""

    name: str
    host: str
    key_type: str
    fingerprint: str
    added: bool
    note: str | None = None  # "already trusted" / "declined"
    line: str | None = None  # the known_hosts line written


@dataclass
class DemoRequest(Request):
    out_dir: str | Path = "edgekit-out/demo"
    targets: list[str] = field(default_factory=list)
    iterations: int = 200

    def __post_init__(self) -> None:
        self.out_dir, self.targets = str(self.out_dir), [str(t) for t in self.targets]


@dataclass
class DemoRecord(Rows):
    """One row per (target, precision): status ok / verify failed / export failed (with the failure's
    `exit_code`: 2 bad input, 3 missing extra or hardware, 4 internal)."""

    def exit_code(self) -> int:
        """0 when every row is ok; else the most severe export failure's code, or 1 for a failed gate."""
        codes = [int(r.get("exit_code") or 4) for r in self.rows if r.get("status") == "export failed"]
        if codes:
            return max(codes)
        return 1 if any(r.get("status") == "verify failed" for r in self.rows) else 0


# ---- report, release ---------------------------------------------------------------------------------
@dataclass
class ReportRequest(Request):
    """A report of RESULTS (results.jsonl files, release, artifact or export folders), judged against
    `baseline` (the same kinds of paths) when given, written to every path of `outputs` (the suffix
    picks the format: .html, .md, .json, .txt). The thresholds say when a difference is a regression."""

    results: Sequence[str | Path]
    baseline: Sequence[str | Path] = field(default_factory=list)
    outputs: Sequence[str | Path] = field(default_factory=list)
    max_slowdown_pct: float = 10.0  # the smallest median slowdown counted (its whole interval must clear it)
    confidence: float = 0.95
    max_accuracy_loss: float = 0.5  # percentage points
    max_cosine_loss: float = 0.002
    title: str = "edgekit report"

    def __post_init__(self) -> None:
        self.results, self.baseline, self.outputs = (
            _paths(self.results),
            _paths(self.baseline),
            _paths(self.outputs),
        )
        if not self.results:
            raise BadInput("report: give at least one results.jsonl, release or artifact folder")


@dataclass
class ReportRecord:
    """The report as `report.json` holds it (`document`) and the files written; `report` is the live
    `edgekit.report.Report` (per-iteration samples for plots, text tables), None when read from JSON."""

    document: dict[str, Any]
    written: list[str] = field(default_factory=list)
    report: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {**self.document, "written": list(self.written)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportRecord:
        document = dict(data)
        return cls(document, [str(p) for p in document.pop("written", [])])

    def regressions(self) -> list[str]:
        """'model target precision @ device' of every comparison with the baseline that regressed."""
        baseline = self.document.get("baseline") or {}
        return [
            f"{c['model']} {c['target']} {c['precision']} @ {c['device']}"
            for c in baseline.get("comparisons", [])
            if c.get("regression")
        ]


@dataclass
class ReleaseRequest(Request):
    """Build, verify, benchmark and package the release `config` describes (edgekit.toml) into
    dist/<name>-<version>/. `check_reproducible` None: as the config says."""

    config: str | Path = "edgekit.toml"
    allow_failures: bool = False
    executor: str = "local"  # local | ray
    address: str | None = None  # the Ray cluster (HOST:PORT), with executor "ray"
    use_cache: bool = True
    rebench: bool = False
    check_reproducible: bool | None = None

    def __post_init__(self) -> None:
        self.config = str(self.config)


@dataclass
class ReleaseRecord:
    """The release folder (None when a gate failed and nothing was released), its release.json, the
    gate failures ('artifact: gate: why') and the wall time of each stage. `report` is the live
    `edgekit.report.Report` of the release, None when read from JSON."""

    path: str | None
    release: dict[str, Any]
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    report: Any = field(default=None, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "passed": self.passed,
            "failures": list(self.failures),
            "seconds": dict(self.seconds),
            "release": self.release,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseRecord:
        return cls(data["path"], dict(data["release"]), list(data["failures"]), dict(data["seconds"]))

    def failure_summary(self, limit: int = 5) -> str:
        return "; ".join(self.failures[:limit]) + (" ..." if len(self.failures) > limit else "")


# ---- split, export of a split, bench of a pipeline ---------------------------------------------------
SPLIT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class SplitRequest(Request):
    """Cut MODEL into shards: exactly one of `parts` (balanced by `balance`), `max_shard_mb` (fewest
    shards whose planned runtime memory fits) or `devices` (one shard per device of `devices_file`,
    by `objective`). The shards are checked against the model at once; with `targets`, each is then
    exported like any model (one target for all, or one per shard)."""

    model: str | Path
    parts: int | None = None
    max_shard_mb: float | None = None
    devices: list[str] = field(default_factory=list)
    devices_file: str | Path | None = None
    objective: str = "latency"
    balance: str = "weights"
    precision: str = "fp32"
    #: --parts: allowed excess over the best balance, traded for fewer crossing bytes
    tolerance: float = 0.1
    #: shard memory is planned as estimate x (1 + margin): 0.3 covers estimates down to 0.77x of the
    #: measurement (benchmarks/bench_memory.py: 0.76x at worst, ResNet-18; 0.8x..1.2x for the rest)
    memory_margin: float = 0.3
    #: --max-shard-mb at fp32: measure the planned shards here (onnxruntime CPU, a fresh process each)
    #: and re-plan with the measurements until every shard is measured and fits
    measure_memory: bool = True
    out_dir: str | Path | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    val: str | Path | None = None
    val_samples: int | None = None
    verify_samples: int = 2
    results: list[str] = field(default_factory=list)
    profile: bool = True
    #: shards with more weight bytes than this keep them as external data (None: ingest's threshold)
    external_threshold: int | None = None
    targets: list[str] = field(default_factory=list)
    #: precision of the `targets` exports (None: each target's default)
    export_precision: str | None = None
    calib: str | Path | None = None
    calib_samples: int | None = None
    targets_dirs: Sequence[str | Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.model, self.out_dir = str(self.model), _path(self.out_dir)
        self.devices_file, self.val, self.calib = _path(self.devices_file), _path(self.val), _path(self.calib)
        self.devices, self.targets = [str(d) for d in self.devices], [str(t) for t in self.targets]
        self.results = _paths(self.results)
        self.input_shapes = {k: [int(d) for d in v] for k, v in self.input_shapes.items()}
        self.targets_dirs = _paths(self.targets_dirs)

    def check(self) -> None:
        """Every refusal that needs no file (one line, exit 2); `split` calls it before any work."""
        modes = [self.parts is not None, self.max_shard_mb is not None, bool(self.devices)]
        if sum(modes) != 1:
            raise BadInput("give exactly one of --parts N, --max-shard-mb M or --devices A,B,...")
        choices = {
            "precision": (self.precision, SPLIT_PRECISIONS),
            "balance": (self.balance, ("weights", "macs")),
            "objective": (self.objective, ("latency", "throughput")),
        }
        for what, (value, allowed) in choices.items():
            if value not in allowed:
                raise BadInput(f"unknown {what} '{value}'; choose one of {', '.join(allowed)}")
        if self.parts is not None and self.parts < 1:
            raise BadInput("--parts must be at least 1")
        if self.max_shard_mb is not None and self.max_shard_mb <= 0:
            raise BadInput("--max-shard-mb must be positive")
        if self.tolerance < 0:
            raise BadInput("--tolerance must be >= 0")
        if self.memory_margin < 0:
            raise BadInput("--memory-margin must be >= 0")
        if self.verify_samples < 1:
            raise BadInput("at least one sample is needed to verify the split")
        if len(set(self.devices)) != len(self.devices):
            raise BadInput("--devices names a device twice; a pipeline runs one shard per device")
        if self.calib is not None and not self.targets:
            raise BadInput("--calib is for the shards' export: give --targets too")


@dataclass
class PipelineExportRequest(Request):
    """Export every shard of SPLIT_DIR (an `edgekit split` directory) for its target: one target for
    all shards, or one per shard. A later shard's calibration and validation data are the earlier
    shards' FP32 outputs on `calib` / `val`."""

    split_dir: str | Path
    targets: list[str]
    precision: str | None = None
    calib: str | Path | None = None
    val: str | Path | None = None
    calib_samples: int | None = None
    val_samples: int | None = None
    out_dir: str | Path = "edgekit-out"
    options: ExportOptions = field(default_factory=_default_options)
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    targets_dirs: Sequence[str | Path] = field(default_factory=list)
    simplify: bool = True

    def __post_init__(self) -> None:
        self.split_dir, self.out_dir = str(self.split_dir), str(self.out_dir)
        self.calib, self.val = _path(self.calib), _path(self.val)
        self.targets = [str(t).strip() for t in self.targets if str(t).strip()]
        if not self.targets:
            raise BadInput("name a target for the shards: --target NAME (or one per shard: A,B,...)")
        self.gate_overrides = _gates(self.gate_overrides)
        self.targets_dirs = _paths(self.targets_dirs)

    def to_json(self) -> dict[str, Any]:
        data = super().to_json()
        data["options"] = {k: v for k, v in data["options"].items() if k in _OPTION_FIELDS}
        return data

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        return ExportRequest._nested(data)


@dataclass
class PipelineExportRecord:
    """The exported pipeline directory and its pipeline.json (each shard's artifact, target, precision
    and fidelity against its FP32 shard)."""

    path: Path
    pipeline: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "pipeline": self.pipeline}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PipelineExportRecord:
        return cls(Path(data["path"]), dict(data["pipeline"]))

    def failed_shards(self) -> list[str]:
        return [
            str(s.get("artifact"))
            for s in self.pipeline.get("shards", [])
            if s.get("fidelity") and not s["fidelity"].get("passed", True)
        ]


@dataclass
class SplitRecord:
    """The split directory and its pipeline.json (plan, shards, cuts, predictions, verification);
    `export` when the request named targets."""

    path: Path
    pipeline: dict[str, Any]
    export: PipelineExportRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            **self.pipeline,
            "export": self.export.to_json() if self.export is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SplitRecord:
        pipeline = dict(data)
        path = Path(pipeline.pop("path"))
        exported = pipeline.pop("export", None)
        return cls(path, pipeline, PipelineExportRecord.from_json(exported) if exported else None)


@dataclass
class PipelineBenchRecord:
    """One pipeline record per benchmarked pipeline directory (end-to-end latency, pipelined
    throughput, per-stage compute and relay, per-hop transfer, the plan's predictions, end-to-end
    fidelity); each pipeline's stage records were appended to results.jsonl before it."""

    pipelines: list[dict[str, Any]]

    def to_json(self) -> list[dict[str, Any]]:
        return list(self.pipelines)

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> PipelineBenchRecord:
        return cls([dict(r) for r in data])

    def fidelity_failed(self) -> list[dict[str, Any]]:
        return [r for r in self.pipelines if r.get("fidelity") and not r["fidelity"].get("passed", True)]
