"""Requests and records of bench, targets, inspect, devices and demo."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.records.base import Request, as_path, as_paths, checked_gates, checked_task, task_json

if TYPE_CHECKING:
    from edgekit.runner import BenchSettings


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
    task: str | None = None  # with `val`: None judges each artifact by the task its manifest recorded
    metric: str | Callable[..., Any] | None = None  # None: the "module:function" recorded at export
    # "NAME:D0,D1,.." as `--input-shape`; a name given k times times k shape sets
    input_shapes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return task_json(super().to_json())

    def __post_init__(self) -> None:
        checked_task(self.task, self.metric)
        self.input_shapes = [str(s) for s in self.input_shapes]
        self.artifacts, self.devices = as_paths(self.artifacts), [str(d) for d in self.devices]
        self.devices_file, self.val, self.results = (
            as_path(self.devices_file),
            as_path(self.val),
            str(self.results),
        )
        self.gate_overrides = checked_gates(self.gate_overrides)
        self.targets_dirs = as_paths(self.targets_dirs)

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
        self.targets_dirs = as_paths(self.targets_dirs)


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
        self.model, self.devices_file = str(self.model), as_path(self.devices_file)
        self.input_shapes = {k: [int(d) for d in v] for k, v in self.input_shapes.items()}
        self.results = as_paths(self.results)


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
        self.devices_file, self.names = as_path(self.devices_file), [str(n) for n in self.names]


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
