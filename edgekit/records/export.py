"""Requests and records of export and verify."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.records.base import (
    Request,
    as_path,
    as_paths,
    checked_gates,
    checked_task,
    default_options,
    task_json,
)

if TYPE_CHECKING:
    from edgekit.backends.base import ExportOptions
    from edgekit.fidelity import FidelityReport


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
    options: ExportOptions = field(default_factory=default_options)
    gate_overrides: dict[str, float | None] = field(default_factory=dict)
    targets_dirs: Sequence[str | Path] = field(default_factory=list)
    # what the model is for (edgekit.fidelity.TASKS; None: inferred from the model) and the user's metric
    # (fn(reference, actual, labels) -> number, or "module:function"); both drive the INT8 search too
    task: str | None = None
    metric: str | Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        self.model = str(self.model)
        self.calib, self.val, self.out_dir = as_path(self.calib), as_path(self.val), str(self.out_dir)
        self.input_shapes = {k: [int(d) for d in v] for k, v in self.input_shapes.items()}
        self.gate_overrides = checked_gates(self.gate_overrides)
        self.targets_dirs = as_paths(self.targets_dirs)
        checked_task(self.task, self.metric)

    def to_json(self) -> dict[str, Any]:
        return stated_options(task_json(super().to_json()))

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        from edgekit.backends.base import ExportOptions

        if isinstance(data.get("options"), Mapping):
            data["options"] = ExportOptions(**data["options"])
        return data


# what a request says about options; anything a backend derives from them (parsed, typed) is not
OPTION_FIELDS = (
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


def stated_options(data: dict[str, Any]) -> dict[str, Any]:
    """A request's JSON keeps only the export options a user can state (not what a backend derives)."""
    data["options"] = {k: v for k, v in data["options"].items() if k in OPTION_FIELDS}
    return data


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
        weights = (self.manifest.get("details") or {}).get("weight_only") or {}
        record = weights.get("search") or {}
        if record.get("passed") is False:
            final = record.get("final") or record.get("final_preview") or {}
            failed = "; ".join(final.get("failures", [])) or "gate failed"
            return f"weight-only {weights.get('level')}: {failed} (on {record['scored_on']}); artifact kept in {self.path}"
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
    task: str | None = None  # None: the task the manifest recorded at export
    metric: str | Callable[..., Any] | None = None  # None: the "module:function" recorded at export

    def __post_init__(self) -> None:
        self.artifact_dir, self.val = str(self.artifact_dir), str(self.val)
        self.reference, self.devices_file = as_path(self.reference), as_path(self.devices_file)
        self.gate_overrides = checked_gates(self.gate_overrides)
        self.targets_dirs = as_paths(self.targets_dirs)
        checked_task(self.task, self.metric)

    def to_json(self) -> dict[str, Any]:
        return task_json(super().to_json())


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
