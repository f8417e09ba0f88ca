"""Requests and records of split, the export of a split and the bench of a pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import BadInput
from edgekit.records.base import Request, as_path, as_paths, checked_gates, default_options
from edgekit.records.export import ExportRequest, stated_options

if TYPE_CHECKING:
    from edgekit.backends.base import ExportOptions

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
        self.model, self.out_dir = str(self.model), as_path(self.out_dir)
        self.devices_file, self.val, self.calib = (
            as_path(self.devices_file),
            as_path(self.val),
            as_path(self.calib),
        )
        self.devices, self.targets = [str(d) for d in self.devices], [str(t) for t in self.targets]
        self.results = as_paths(self.results)
        self.input_shapes = {k: [int(d) for d in v] for k, v in self.input_shapes.items()}
        self.targets_dirs = as_paths(self.targets_dirs)

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
    options: ExportOptions = field(default_factory=default_options)
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    targets_dirs: Sequence[str | Path] = field(default_factory=list)
    simplify: bool = True

    def __post_init__(self) -> None:
        self.split_dir, self.out_dir = str(self.split_dir), str(self.out_dir)
        self.calib, self.val = as_path(self.calib), as_path(self.val)
        self.targets = [str(t).strip() for t in self.targets if str(t).strip()]
        if not self.targets:
            raise BadInput("name a target for the shards: --target NAME (or one per shard: A,B,...)")
        self.gate_overrides = checked_gates(self.gate_overrides)
        self.targets_dirs = as_paths(self.targets_dirs)

    def to_json(self) -> dict[str, Any]:
        return stated_options(super().to_json())

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
        return [r for r in self.pipelines if r.get("fidelity") and r["fidelity"].get("passed") is False]

    def fidelity_not_measured(self) -> list[dict[str, Any]]:
        """Pipelines whose end-to-end fidelity was never measured (no unsplit model): not a pass."""
        return [r for r in self.pipelines if (r.get("fidelity") or {}).get("passed") is None]
